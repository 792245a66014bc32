"""Resumable uploads: tus 1.0.0 core with creation, expiration, checksum and termination.

Write-only by design (tusd serves uploads back unless told not to; this serves nothing):
``HEAD`` tells only the uploader its offset and length, ``DELETE`` ends only an unfinished
upload, and a finished upload leaves the tus store at once — its ID is then unknown like
any other. Every chunk is fsynced and its offset recorded before it is acknowledged, so a
restart of the service resumes at the acknowledged offset; a chunk cut off by a dropped
connection keeps what arrived (core protocol), unless it carried an ``Upload-Checksum``,
which cannot be verified then, so the chunk is discarded.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
from email.utils import formatdate
from typing import Any
from urllib.parse import quote

from aiohttp import web

from .app import text
from .body import BodyCut, BodyTooLarge, DiskFull, Sink, stream_body
from .landing import sanitize_name
from .store import Upload

log = logging.getLogger("odbackupd.intake")

__all__ = ["Tus"]

VERSION = "1.0.0"
EXTENSIONS = "creation,expiration,checksum,termination"
CHECKSUMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "md5": hashlib.md5}
OFFSET_TYPE = "application/offset+octet-stream"


def parse_metadata(header: str) -> dict[str, str]:
    """``Upload-Metadata: filename ZGF0YS5iaW4=,type YXBw`` -> {"filename": "data.bin", …}."""
    out = {}
    for pair in header.split(","):
        key, _, value = pair.strip().partition(" ")
        if not key:
            continue
        try:
            out[key] = base64.b64decode(value.strip(), validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            raise ValueError(f"Upload-Metadata: the value of '{key}' is not base64") from None
    return out


class Tus:
    def __init__(self, intake: Any) -> None:
        self.intake = intake
        self.store = intake.store
        self.max_size = intake.intake.max_file_size
        self.hashers: dict[str, tuple[Any, int]] = {}  # upload id -> (SHA-256 so far, offset)

    def _headers(self, **extra: str) -> dict[str, str]:
        return {"Tus-Resumable": VERSION, **extra}

    def _reply(self, status: int, message: str = "", **extra: str) -> web.Response:
        if message:
            return text(status, message, **self._headers(**extra))
        return web.Response(status=status, headers=self._headers(**extra))

    def _expires(self, up: Upload) -> str:
        return formatdate(self.store.expires(up), usegmt=True)

    def _begin(self, request: web.Request) -> tuple[str | None, web.Response | None]:
        """Authenticate and check Tus-Resumable: (user, None) or (None, refusal)."""
        user = self.intake.user(request)
        if user is None:
            return None, self.intake.unauthorized(request)
        if request.headers.get("Tus-Resumable") != VERSION:
            return None, self._reply(412, "Tus-Resumable: 1.0.0 is required",
                                     **{"Tus-Version": VERSION})
        return user, None

    async def options(self, request: web.Request, _arg: str) -> web.StreamResponse:
        return self._reply(204, **{
            "Tus-Version": VERSION, "Tus-Extension": EXTENSIONS, "Tus-Max-Size": str(self.max_size),
            "Tus-Checksum-Algorithm": ",".join(CHECKSUMS)})

    async def create(self, request: web.Request, path: str) -> web.StreamResponse:
        user, refused = self._begin(request)
        if refused is not None:
            return refused
        if "Upload-Defer-Length" in request.headers:
            return self._reply(400, "Upload-Defer-Length is not supported: send Upload-Length")
        try:
            length = int(request.headers.get("Upload-Length", ""))
            if length < 0:
                raise ValueError
            meta = parse_metadata(request.headers.get("Upload-Metadata", ""))
        except ValueError as e:
            return self._reply(400, str(e) if "Metadata" in str(e) else
                               "Upload-Length must be a number of bytes")
        if request.content_length:
            return self._reply(400, "send the data with PATCH after creating the upload")
        if length > self.max_size:
            return self._reply(413, f"larger than max_file_size ({self.max_size} bytes)")
        room = self.store.room(user)
        if room is not None and length > room:
            return self._reply(507, f"the quota of '{user}' is used up: wait until the files "
                               "sent are backed up")
        name = sanitize_name(meta.get("filename") or meta.get("name") or "upload")
        up = self.store.create(user, name, length, request.remote or "local socket",
                               {"filename": meta.get("filename", "")[:300]})
        location = up.id if path.endswith("/") else f"files/{up.id}"
        log.info("intake: %s started a resumable upload %s of %s (%d bytes)", user, up.id, name,
                 length, extra={"journal_fields": {"INTAKE_USER": user, "INTAKE_NAME": name,
                                                   "INTAKE_BYTES": length}})
        if length == 0:
            return await self._finish(request, up, hashlib.sha256(), location=location)
        return self._reply(201, Location=location, **{"Upload-Expires": self._expires(up)})

    async def head(self, request: web.Request, upload_id: str) -> web.StreamResponse:
        user, refused = self._begin(request)
        if refused is not None:
            return refused
        up = self.store.find(user, upload_id)
        if up is None:
            return self._reply(404, "no such upload")
        return self._reply(200, **{"Upload-Offset": str(up.offset),
                                   "Upload-Length": str(up.length),
                                   "Upload-Expires": self._expires(up),
                                   "Cache-Control": "no-store"})

    async def delete(self, request: web.Request, upload_id: str) -> web.StreamResponse:
        user, refused = self._begin(request)
        if refused is not None:
            return refused
        up = self.store.find(user, upload_id)
        if up is None:
            return self._reply(404, "no such upload")
        if up.id in self.store.busy:
            return self._reply(409, "a PATCH of this upload is in progress")
        self.store.forget(up, remove_partial=True)
        self.hashers.pop(up.id, None)
        return self._reply(204)

    def _checksum(self, request: web.Request) -> tuple[Any, bytes] | None:
        header = request.headers.get("Upload-Checksum")
        if header is None:
            return None
        algo, _, value = header.strip().partition(" ")
        if algo.lower() not in CHECKSUMS:
            raise ValueError(f"checksum algorithm '{algo}' is not supported "
                             f"(Tus-Checksum-Algorithm: {','.join(CHECKSUMS)})")
        try:
            return CHECKSUMS[algo.lower()](), base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("Upload-Checksum: the value is not base64") from None

    async def _whole_hash(self, up: Upload) -> Any:
        """SHA-256 of the first ``up.offset`` bytes: kept in memory, re-read after a restart."""
        h, at = self.hashers.get(up.id, (None, -1))
        if h is not None and at == up.offset:
            return h

        def rehash() -> Any:
            h = hashlib.sha256()
            with open(self.store.partial(up), "rb") as f:
                left = up.offset
                while left:
                    block = f.read(min(left, 1 << 20))
                    if not block:
                        raise OSError(f"{self.store.partial(up)} is shorter than its offset")
                    h.update(block)
                    left -= len(block)
            return h

        return await asyncio.get_running_loop().run_in_executor(None, rehash)

    async def patch(self, request: web.Request, upload_id: str) -> web.StreamResponse:
        user, refused = self._begin(request)
        if refused is not None:
            return refused
        up = self.store.find(user, upload_id)
        if up is None:
            return self._reply(404, "no such upload")
        if request.content_type != OFFSET_TYPE:
            return self._reply(415, f"Content-Type must be {OFFSET_TYPE}")
        try:
            offset = int(request.headers.get("Upload-Offset", ""))
            checksum = self._checksum(request)
        except ValueError as e:
            return self._reply(400, str(e) if "checksum" in str(e).lower() else
                               "Upload-Offset must be a number of bytes")
        if up.id in self.store.busy:
            return self._reply(409, "another PATCH of this upload is in progress")
        if offset != up.offset:
            return self._reply(409, f"the upload is at offset {up.offset}",
                               **{"Upload-Offset": str(up.offset)})
        left = up.length - up.offset
        if request.content_length is not None and request.content_length > left:
            return self._reply(413, f"the upload has {left} bytes left")
        self.store.busy.add(up.id)
        try:
            return await self._append(request, up, checksum, left)
        finally:
            self.store.busy.discard(up.id)

    async def _append(self, request: web.Request, up: Upload, checksum: Any,
                      left: int) -> web.StreamResponse:
        whole = (await self._whole_hash(up)).copy()
        hashers = [whole] + ([checksum[0]] if checksum else [])
        sink = Sink(self.store.partial(up), up.offset, hashers, create=False)
        pending: list[bytes] = []
        settled = False  # answered (or failed) on purpose; otherwise the request was cut

        def check(received: int) -> None:
            if received > left:
                raise BodyTooLarge("size")

        try:
            try:
                await stream_body(request, sink, check, pending)
                await sink.sync_async()
            except (BodyTooLarge, DiskFull):
                settled = True
                pending.clear()
                sink.truncate(up.offset)
                raise
            settled = True
            if checksum and checksum[0].digest() != checksum[1]:
                sink.truncate(up.offset)
                return self._reply(460, "Upload-Checksum does not match: the chunk was discarded",
                                   **{"Upload-Offset": str(up.offset)})
        except BodyTooLarge:
            return self._reply(413, f"the upload has {left} bytes left")
        except BodyCut:  # kept what arrived (below); nobody is there to read this
            return self._reply(400, "the body ended early")
        except DiskFull:
            return self._reply(507, "the server's disk is full; send this chunk again later",
                               **{"Upload-Offset": str(up.offset)})
        finally:
            if not settled:
                self._keep_what_arrived(up, sink, pending, bool(checksum))
            sink.close()
        self.hashers[up.id] = (whole, sink.offset)
        if sink.offset == up.length:
            return await self._finish(request, up, whole)
        self.store.acknowledge(up, sink.offset)
        return self._reply(204, **{"Upload-Offset": str(up.offset),
                                   "Upload-Expires": self._expires(up)})

    def _keep_what_arrived(self, up: Upload, sink: Sink, pending: list[bytes],
                           checksummed: bool) -> None:
        """A PATCH that ended early (dropped connection, service stopping): keep and record
        the bytes that arrived, so the client resumes after them; not an unverified chunk."""
        try:
            sink.wait_now()  # the writer thread may still be on the last block
            if checksummed or sink.offset == up.offset and not pending:
                sink.truncate(up.offset)
                return
            if pending:
                sink.write_now(pending)
            sink.sync()
        except OSError:
            sink.truncate(up.offset)
            return
        self.hashers.pop(up.id, None)
        # all bytes arrived but nobody is left to answer: the resumed PATCH of the last byte
        # lands the file
        self.store.acknowledge(up, min(sink.offset, up.length - 1))
        log.info("intake: a PATCH of upload %s (%s, %s) ended early; kept what arrived, it "
                 "resumes at %d of %d bytes", up.id, up.name, up.user,
                 min(sink.offset, up.length - 1), up.length)

    async def _finish(self, request: web.Request, up: Upload, whole: Any,
                      location: str | None = None) -> web.StreamResponse:
        try:
            name = self.store.land(up.user, self.store.partial(up), up.name)
        except OSError as e:
            log.error("intake: cannot land upload %s of %s: %s", up.id, up.user, e)
            return self._reply(500, "the upload could not be stored; send the last chunk again",
                               **{"Upload-Offset": str(up.offset)})
        self.store.forget(up, remove_partial=False)
        self.hashers.pop(up.id, None)
        self.intake.stored(request, up.user, up.metadata.get("filename", ""), name, up.length,
                           whole.hexdigest(), "tus")
        # percent-encoded: a header is Latin-1 at best, a file name need not be
        extra = {"Upload-Offset": str(up.length), "Intake-Name": quote(name, safe=" "),
                 "Intake-SHA256": whole.hexdigest()}
        if location is not None:
            return self._reply(201, Location=location, **extra)
        return self._reply(204, **extra)
