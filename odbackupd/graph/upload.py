"""Resumable uploads to OneDrive (GRAPH-NOTES 1.8, 1.10).

A file that fits in one chunk (including an empty one) goes up with one simple ``PUT
…:/content``, which replaces atomically. Anything larger goes through an upload session:

* ``createUploadSession`` with ``conflictBehavior: replace``; the file appears only when
  its last byte is committed, so a half-sent volume is never visible;
* fragments of ``chunk_size`` (a multiple of 320 KiB), each ending on a chunk boundary,
  ``Content-Range: bytes a-b/TOTAL`` with the real total and a real ``Content-Length``,
  and *no* Authorization header (the uploadUrl is pre-authenticated);
* after every fragment ``{uploadUrl, expiry, offset, size, sha256}`` goes to the state
  database, so a restart, a reboot or a cancelled run resumes the same session;
* the service is the authority on what it holds: after any failure (lost response,
  reset, 5xx, 416) the session status is asked and ``nextExpectedRanges`` trusted —
  open ``"N-"`` (personal) or closed ``"N-M"`` (business), and N need not be aligned
  after a partial commit: the next fragment then runs up to the next chunk boundary.
  A fragment is never resent just because its answer went missing;
* a session that is gone (404, expired, tempauth cap) restarts the file — unless the
  file is already there with our size and quickXorHash (the final answer was lost).

Why ~400 lines: each rule above is one branch of a single resumable state machine, tested
against the emulator's faults as a whole; splitting it would spread one protocol.
"""
from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import requests

from .client import RETRY_STATUSES, TRANSPORT_ERRORS, GraphClient, error_from
from .errors import GraphError, ItemNotFound
from .throttle import Cancelled, TokenBucket

log = logging.getLogger("odbackupd.graph.upload")

FRAGMENT_UNIT = 320 * 1024
SIMPLE_UPLOAD_MAX = 4 * 1024 * 1024  # the limit peers use (GRAPH-NOTES 1.8)
HASH_RETRIES = 5  # the item may report its hashes only a moment after the commit


class FileRange:
    """``length`` bytes of an open file from ``offset``, read as they are sent: requests
    sends an iterable body of known ``len`` as it comes, with that Content-Length. So a
    fragment is never held in memory whole: reading a whole fragment per upload worker
    (4 × 10 MiB) was most of the memory an upload to OneDrive took (measured: 141 MB
    peak RSS, 100 MB streaming)."""

    BLOCK = 256 << 10  # bytes read and sent at a time

    def __init__(self, f: BinaryIO, offset: int, length: int) -> None:
        self._fd = f.fileno()
        self._name = getattr(f, "name", "?")
        self._offset = offset
        self._length = length

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        pos, end = self._offset, self._offset + self._length
        while pos < end:
            data = os.pread(self._fd, min(self.BLOCK, end - pos), pos)
            if not data:  # the file shrank under us: the request must fail, not send less
                raise OSError(f"{self._name} ended at byte {pos}, inside the fragment being sent")
            pos += len(data)
            yield data


class _SessionGone(Exception):
    """The upload session no longer exists (404, expired, refused tempauth)."""


def _expired(iso: str | None) -> bool:
    if not iso:
        return False
    try:
        when = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return False
    return when.timestamp() <= time.time() + 5


def _range_start(ranges: object) -> int | None:
    """Start of the first ``nextExpectedRanges`` entry (``"N-"`` or ``"N-M"``)."""
    if not isinstance(ranges, list) or not ranges:
        return None
    try:
        return int(str(ranges[0]).split("-", 1)[0])
    except ValueError:
        return None


class Uploader:
    """Uploads files of one destination (``state_key`` names it in the state database)."""

    def __init__(
        self,
        client: GraphClient,
        state: object | None,
        state_key: str,
        chunk_size: int,
        limiter: TokenBucket,
        *,
        send_file_size: bool = True,
    ) -> None:
        if chunk_size <= 0 or chunk_size % FRAGMENT_UNIT:
            raise ValueError(f"chunk_size {chunk_size} is not a multiple of 320 KiB")
        self.client = client
        self.state = state
        self.key = state_key
        self.chunk = chunk_size
        self.limiter = limiter
        self.send_file_size = send_file_size  # fileSize pre-check: personal drives only

    # -- persistence ---------------------------------------------------------------------------
    def _load(self, remote: str) -> dict | None:
        return self.state.session_get(self.key, remote) if self.state is not None else None  # type: ignore[attr-defined]

    def _save(self, remote: str, rec: dict) -> None:
        if self.state is not None:
            self.state.session_put(self.key, remote, rec)  # type: ignore[attr-defined]

    def _forget(self, remote: str) -> None:
        if self.state is not None:
            self.state.session_delete(self.key, remote)  # type: ignore[attr-defined]

    # -- entry point ---------------------------------------------------------------------------
    def upload(
        self,
        item_path: str,
        remote: str,
        src: Path,
        sha256: str,
        quickxor: str,
        progress: Callable[[int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> dict:
        """Store ``src`` at ``item_path`` (``/drives/{id}/root:/a/b``); returns the driveItem
        whose size and quickXorHash match ours, or raises GraphError."""
        size = src.stat().st_size
        if size <= min(self.chunk, SIMPLE_UPLOAD_MAX):
            item = self.put_small(item_path, remote, src.read_bytes(), cancel)
            if progress and size:
                progress(size)
        else:
            item = self._session_upload(item_path, remote, src, size, sha256, quickxor, progress,
                                        cancel)
        return self.confirmed(item_path, remote, item, size, quickxor)

    def put_small(self, item_path: str, remote: str, data: bytes,
                  cancel: threading.Event | None = None) -> dict:
        """One simple PUT (replaces whatever is there, atomically)."""
        self.limiter.consume(len(data), cancel)
        resp = self.client.request(
            "PUT", item_path + ":/content", what=f"uploading {remote}", ok=(200, 201), data=data,
            headers={"Content-Type": "application/octet-stream"}, cancel=cancel,
        )
        return resp.json()

    # -- sessions ------------------------------------------------------------------------------
    def _session_upload(
        self, item_path: str, remote: str, src: Path, size: int, sha256: str, quickxor: str,
        progress: Callable[[int], None] | None, cancel: threading.Event | None,
    ) -> dict:
        rec = self._load(remote)
        if rec is not None and (rec.get("size") != size or rec.get("sha256") != sha256):
            self.discard(remote, rec)  # another file was being sent under this name
            rec = None
        offset: int | None = None
        if rec is not None:
            offset = self._resume(item_path, remote, rec, size, quickxor, cancel)
            if isinstance(offset, dict):  # it was complete already (renamed, if it had to be)
                item = self._finish(rec, item_path, remote, offset, cancel)
                self._forget(remote)
                return item
            if offset is None:
                rec = None
        reported = offset or 0
        if progress and reported:
            progress(reported)
        failures = 0
        with open(src, "rb") as f:
            while True:
                if rec is None:
                    rec = self._create(item_path, remote, size, sha256, cancel)
                    offset = 0
                assert offset is not None
                if offset >= size:
                    # every byte is there but no answer said the file was made: look at it;
                    # a session stuck holding everything uncommitted is started over
                    item = self._item_if_matches(self._where(rec, item_path), size, quickxor)
                    if item is not None:
                        item = self._finish(rec, item_path, remote, item, cancel)
                        self._forget(remote)
                        return item
                    failures += 1
                    if failures >= self.client.retry.attempts:
                        raise GraphError(f"uploading {remote}: the session holds every byte but "
                                         "the file does not appear")
                    log.info("uploading %s: the session holds every byte but no file; "
                             "starting again", remote)
                    self.discard(remote, rec)
                    rec = None
                    continue
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                sent_from = offset
                end = min(size, (offset // self.chunk + 1) * self.chunk)
                self.limiter.consume(end - offset, cancel)
                try:
                    resp = self.client.send(
                        "PUT", rec["uploadUrl"], auth=False,
                        data=FileRange(f, offset, end - offset), cancel=cancel,
                        headers={"Content-Range": f"bytes {offset}-{end - 1}/{size}",
                                 "Content-Type": "application/octet-stream"},
                    )
                except TRANSPORT_ERRORS as e:
                    resp, problem = None, type(e).__name__
                else:
                    problem = f"HTTP {resp.status_code}"
                done = None
                try:
                    if resp is not None and resp.status_code == 202:
                        body = resp.json()
                        nxt = _range_start(body.get("nextExpectedRanges"))
                        rec["expiry"] = body.get("expirationDateTime") or rec.get("expiry")
                        offset = nxt if nxt is not None else self._status(rec, cancel)
                    elif resp is not None and resp.status_code in (200, 201):
                        done = resp.json()
                    elif resp is not None and resp.status_code in (401, 403, 404):
                        raise _SessionGone()
                    elif (resp is None or resp.status_code == 416
                          or resp.status_code in RETRY_STATUSES):
                        failures += 1
                        if failures >= self.client.retry.attempts:
                            raise GraphError(f"uploading {remote}: giving up after {failures} "
                                             f"failed fragments (last: {problem})")
                        log.debug("uploading %s: fragment at %d: %s; asking the session",
                                  remote, offset, problem)
                        if resp is not None and resp.status_code != 416:
                            self.client.pause_after(resp, failures)
                        elif resp is None:
                            time.sleep(self.client.retry.delay(failures))
                        offset = self._status(rec, cancel)
                    else:
                        raise error_from(resp, f"uploading {remote}")
                except _SessionGone:
                    item = self._item_if_matches(self._where(rec, item_path), size, quickxor)
                    if item is not None:
                        done = item
                    else:
                        log.info("uploading %s: the upload session is gone; "
                                 "starting the file again", remote)
                        self._forget(remote)
                        rec = None
                        failures += 1
                        if failures >= self.client.retry.attempts:
                            raise GraphError(
                                f"uploading {remote}: upload sessions keep disappearing"
                            ) from None
                        continue
                finally:
                    if resp is not None:
                        resp.close()
                if done is not None:
                    done = self._finish(rec, item_path, remote, done, cancel)
                    self._forget(remote)
                    if progress and size > reported:
                        progress(size - reported)
                    return done
                if offset > sent_from:
                    failures = 0  # back-off and give-up count failures in a row without progress
                rec["offset"] = offset
                self._save(remote, rec)
                if progress and offset > reported:
                    progress(offset - reported)
                    reported = offset

    def _create(self, item_path: str, remote: str, size: int, sha256: str,
                cancel: threading.Event | None) -> dict:
        item: dict = {"@microsoft.graph.conflictBehavior": "replace"}
        if self.send_file_size:
            item["fileSize"] = size

        def create(path: str) -> dict:
            return self.client.request(
                "POST", path + ":/createUploadSession", what=f"starting the upload of {remote}",
                ok=(200,), json={"item": item}, cancel=cancel,
            ).json()

        alt = None
        try:
            body = create(item_path)
        except GraphError as e:
            if e.status != 409:
                raise
            # A session for this name is pending that no one knows the URL of (a process
            # killed between createUploadSession and saving it, or its answer lost): it
            # cannot be cancelled and blocks the name until it expires. Upload under a
            # name of our own and rename the file when it is complete.
            alt = f"{item_path}.{secrets.token_hex(4)}.upload"
            log.info("uploading %s: OneDrive holds an upload session for it that was lost; "
                     "uploading as %s and renaming it when complete",
                     remote, alt.rsplit("/", 1)[-1])
            body = create(alt)
        rec = {"uploadUrl": body["uploadUrl"], "expiry": body.get("expirationDateTime"),
               "offset": 0, "size": size, "sha256": sha256}
        if alt is not None:
            rec["as"] = alt
        self._save(remote, rec)
        return rec

    @staticmethod
    def _where(rec: dict | None, item_path: str) -> str:
        """Where a session's file appears: its own name when it had to take another one."""
        return (rec or {}).get("as") or item_path

    def _finish(self, rec: dict | None, item_path: str, remote: str, item: dict,
                cancel: threading.Event | None = None) -> dict:
        """The complete file, renamed to its name when it was uploaded under another."""
        alt = (rec or {}).get("as")
        if not alt:
            return item
        return self.client.request(
            "PATCH", alt, what=f"renaming the upload of {remote}", ok=(200,), cancel=cancel,
            json={"name": item_path.rsplit("/", 1)[-1],
                  "@microsoft.graph.conflictBehavior": "replace"},
        ).json()

    def _resume(self, item_path: str, remote: str, rec: dict, size: int, quickxor: str,
                cancel: threading.Event | None) -> int | dict | None:
        """Where a persisted session stands: the offset to go on from, the finished item,
        or None (gone: start again)."""
        try:
            if _expired(rec.get("expiry")):
                raise _SessionGone()
            offset = self._status(rec, cancel)
        except _SessionGone:
            item = self._item_if_matches(self._where(rec, item_path), size, quickxor)
            if item is None:
                self._forget(remote)
            return item
        log.info("uploading %s: resuming the upload session at byte %d of %d", remote, offset, size)
        return offset

    def _status(self, rec: dict, cancel: threading.Event | None) -> int:
        """The session's next expected byte (``size`` when it holds everything)."""
        for attempt in range(1, self.client.retry.attempts + 1):
            try:
                resp = self.client.send("GET", rec["uploadUrl"], auth=False, cancel=cancel)
            except TRANSPORT_ERRORS:
                time.sleep(self.client.retry.delay(attempt))
                continue
            with resp:
                if resp.status_code == 200:
                    body = resp.json()
                    rec["expiry"] = body.get("expirationDateTime") or rec.get("expiry")
                    ranges = body.get("nextExpectedRanges")
                    start = _range_start(ranges)
                    return int(rec["size"]) if start is None and ranges == [] else (start or 0)
                if resp.status_code in (401, 403, 404, 410):
                    raise _SessionGone()
                if resp.status_code in RETRY_STATUSES:
                    self.client.pause_after(resp, attempt)
                    continue
                raise error_from(resp, "asking an upload session where it stands")
        raise GraphError("an upload session does not answer its status requests")

    def discard(self, remote: str, rec: dict) -> None:
        """Cancel a stale session (best effort: it also expires on its own)."""
        try:
            self.client.send("DELETE", rec["uploadUrl"], auth=False).close()
        except (requests.RequestException, Cancelled):
            pass
        self._forget(remote)

    # -- checking the result ---------------------------------------------------------------------
    def _item_if_matches(self, item_path: str, size: int, quickxor: str) -> dict | None:
        try:
            item = self.client.get_json(item_path, what="checking an uploaded file")
        except ItemNotFound:
            return None
        if item.get("size") != size:
            return None
        got = ((item.get("file") or {}).get("hashes") or {}).get("quickXorHash")
        if got is not None and got != quickxor:
            return None
        return item

    def confirmed(self, item_path: str, remote: str, item: dict, size: int, quickxor: str) -> dict:
        """The item once it reports its hashes (a GET later when the commit answer had none)."""
        for attempt in range(HASH_RETRIES):
            hashes = (item.get("file") or {}).get("hashes") or {}
            if hashes.get("quickXorHash") or size == 0:
                return item
            time.sleep(self.client.retry.delay(attempt) if attempt else 0)
            item = self.client.get_json(item_path, what=f"reading back {remote}")
        log.warning("uploading %s: OneDrive reports no quickXorHash yet; size checked only", remote)
        return item
