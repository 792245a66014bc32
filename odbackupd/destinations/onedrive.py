"""A OneDrive or SharePoint drive, through Microsoft Graph.

Layout: ``<folder>/<host>/<series>/<snapshot>/<file>`` in the drive the ``[account.NAME]`` names.
Volumes go up in resumable upload sessions (graph/upload.py) and appear only once
complete; the manifest goes last with one simple PUT, so a snapshot folder without a
manifest is, as everywhere, incomplete. OneDrive reports each file's quickXorHash, which
is what ``odctl verify`` without ``--download`` checks (``capabilities.hashes``).
Downloads follow the 302 to the pre-authenticated URL (kept a minute per file, so that
several ranges of one volume cost one redirect) and resume with ``Range`` after a reset.
Deletes go to the recycle bin, as a user deleting by hand would, or with ``hard_delete``
on work or school drives for good (``permanentDelete``).

Why ~500 lines: it is the whole ``Destination`` contract for one service (list, upload
with resumable sessions, download and ranged reads, delete, space), each method a thin
layer over ``graph``; the HTTP, sessions and throttling themselves live in ``graph/``.
"""
from __future__ import annotations

import io
import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import requests
import urllib3

from ..config.units import human_size
from ..graph import errors as gerr
from ..graph.client import (
    RETRY_STATUSES,
    TRANSPORT_ERRORS,
    Drive,
    GraphClient,
    encode_path,
    error_from,
    resolve_drive,
)
from ..graph.http import make_session
from ..graph.throttle import Cancelled, bandwidth_limiter, gate_for, upload_slots
from ..graph.upload import SIMPLE_UPLOAD_MAX, Uploader
from .base import (
    MANIFEST_NAME,
    Destination,
    DestinationError,
    Expected,
    NotLoggedIn,
    ObjectNotFound,
    ProgressFn,
    StoredObject,
    check_range,
    read_exact,
)
from .kinds.onedrive import CAPABILITIES, OneDriveSettings

if TYPE_CHECKING:
    from ..config import AccountConfig, DaemonConfig
    from ..state import StateStore

log = logging.getLogger("odbackupd.onedrive")

_GONE_URL = (401, 403, 410)  # an expired pre-authenticated download URL
# A download URL is "valid a few minutes" (GRAPH-NOTES 1.7); reused for one minute at most,
# it is not used expired in practice (and when it is, the 401/403/410 gets a fresh one).
_URL_REUSE = 60.0
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
_READ_ERRORS = TRANSPORT_ERRORS + (urllib3.exceptions.HTTPError, OSError)


class OneDriveDestination(Destination):
    kind = "onedrive"
    capabilities = CAPABILITIES

    def __init__(
        self,
        name: str,
        dest: OneDriveSettings,
        account: AccountConfig,
        state: StateStore | None = None,
        daemon: DaemonConfig | None = None,
        *,
        tokens: Any = None,
        session: requests.Session | None = None,
    ) -> None:
        super().__init__(name)
        self.account = account
        self.folder = "/".join(p for p in str(dest.folder).split("/") if p)
        self.chunk_size = int(dest.chunk_size)
        self.hard_delete = bool(getattr(dest, "hard_delete", False))
        self._warned_soft = False
        self.state = state
        parallel = int(getattr(daemon, "max_parallel_uploads", 4) or 4)
        self.session = session or make_session(getattr(account, "ca_bundle", None),
                                               pool_size=parallel + 4)
        if tokens is None:
            from ..graph.auth import Authenticator

            state_dir = Path(getattr(daemon, "state_dir", "/var/lib/odbackupd"))
            tokens = Authenticator(account.name, account, state_dir, session=self.session)
        self.tokens = tokens
        self.client = GraphClient(
            tokens, account.graph_url, self.session,
            gate_for(f"{account.authority_url}|{account.client_id}",
                     getattr(daemon, "state_dir", None)),
            account=account.name,
        )
        self.slots = upload_slots(parallel)
        self.limiter = bandwidth_limiter(getattr(daemon, "bandwidth_limit", None))
        self._drive: Drive | None = None
        self._uploader: Uploader | None = None
        self._folders: set[str] = set()
        self._urls: dict[str, tuple[str, float]] = {}  # rel -> (download URL, when fetched)
        self._lock = threading.Lock()

    def describe(self) -> str:
        return (f"OneDrive destination {self.name!r} (account {self.account.name!r}, "
                f"folder {self.folder!r})")

    # -- plumbing ---------------------------------------------------------------------------------
    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Graph's errors as destination errors a sysadmin can act on."""
        try:
            yield
        except gerr.NotLoggedIn as e:
            msg = str(e)
            if "odctl login" not in msg:
                msg += f"; run: odctl login {self.account.name}"
            raise NotLoggedIn(f"{self.describe()}: {msg}", account=self.account.name) from None
        except gerr.QuotaExceeded as e:
            raise DestinationError(
                f"{self.describe()}: {doing}: the drive of account {self.account.name!r} is full "
                f"({e}). Free space (empty the recycle bin) or lower the job's max_size.") from None
        except gerr.GraphError as e:
            raise DestinationError(f"{self.describe()}: {doing}: {e}") from None
        except Cancelled:
            raise DestinationError(
                f"{self.describe()}: {doing}: cancelled; the next run resumes it") from None
        except requests.RequestException as e:
            raise DestinationError(
                f"{self.describe()}: {doing}: {type(e).__name__} (network problem)") from None

    def _app_only(self) -> bool:
        return bool(getattr(self.tokens, "app_only", False))

    def drive(self, refresh: bool = False) -> Drive:
        with self._lock:
            if self._drive is None or refresh:
                self._drive = resolve_drive(self.client, self.account, self._app_only())
                self._uploader = Uploader(
                    self.client, self.state, self.name, self.chunk_size, self.limiter,
                    send_file_size=self._drive.drive_type == "personal",
                )
            return self._drive

    def uploader(self) -> Uploader:
        self.drive()
        assert self._uploader is not None
        return self._uploader

    def _rel(self, folder: str, *parts: str) -> str:
        """``folder`` is a series folder: ``HOST/SERIES`` (or ``SERIES``, the old layout)."""
        parts = (*folder.split("/"), *parts)
        for p in parts:
            if not p or p in (".", "..") or "/" in p:
                raise DestinationError(f"{self.describe()}: invalid name {p!r}")
        return "/".join((self.folder, *parts)) if self.folder else "/".join(parts)

    def _item(self, rel: str) -> str:
        return f"{self.drive().base}/root:/{encode_path(rel)}"

    def _url_for(self, rel: str) -> str | None:
        """The pre-authenticated download URL of ``rel`` fetched less than ``_URL_REUSE``
        seconds ago, if any (_Download keeps them here), so that several ranges of one
        volume cost one ``:/content`` redirect."""
        url, fetched = self._urls.get(rel, (None, 0.0))
        return url if time.monotonic() - fetched < _URL_REUSE else None

    def _keep_url(self, rel: str, url: str) -> None:
        self._keep_urls({rel: url})

    def _forget_urls(self, rel: str) -> None:
        """Drop the kept URL of ``rel`` and of everything under it: a file replaced or
        gone, a snapshot folder deleted."""
        for old in list(self._urls):
            if old == rel or old.startswith(rel + "/"):
                self._urls.pop(old, None)

    def _keep_urls(self, urls: dict[str, str]) -> None:
        """Many at once (a listing's): one pass over the kept ones, not one per URL."""
        now = time.monotonic()
        for old, (_, fetched) in list(self._urls.items()):  # a copy: other threads add too
            if now - fetched >= _URL_REUSE:
                self._urls.pop(old, None)
        self._urls.update({rel: (url, now) for rel, url in urls.items()})

    def _children(self, rel: str, urls: bool = False) -> Iterator[dict]:
        """``urls``: with each file's pre-authenticated download URL (GRAPH-NOTES 1.1)."""
        url = self._item(rel) + ":/children?$top=1000&$select=id,name,size,file,folder"
        if urls:
            url += ",@microsoft.graph.downloadUrl"
        try:
            yield from self.client.paged(url, what=f"listing {rel}")
        except gerr.ItemNotFound:
            return

    def _ensure_folder(self, rel: str) -> None:
        """Create ``rel`` and its parents explicitly (GRAPH-NOTES 1.3: do not rely on the
        service creating parents of an upload session)."""
        if not rel or rel in self._folders:
            return
        parent, _, name = rel.rpartition("/")
        try:
            self.client.get_json(self._item(rel) + "?$select=id,folder", what=f"looking up {rel}")
        except gerr.ItemNotFound:
            self._ensure_folder(parent)
            where = (self._item(parent) + ":/children" if parent
                     else f"{self.drive().base}/root/children")
            self.client.request(
                "POST", where, what=f"creating folder {rel}", ok=(200, 201, 409),
                json={"name": name, "folder": {}, "@microsoft.graph.conflictBehavior": "fail"},
            )
        self._folders.add(rel)

    @staticmethod
    def _stored(item: dict) -> StoredObject:
        hashes = (item.get("file") or {}).get("hashes") or {}
        sha = hashes.get("sha256Hash")
        return StoredObject(item["name"], int(item.get("size", 0)), sha.lower() if sha else None,
                            hashes.get("quickXorHash"))

    # -- the interface ----------------------------------------------------------------------------
    def prepare(self, needed_bytes: int | None = None) -> None:
        """Log in, find the drive and check its quota before a run, so a full drive is a
        clear error up front rather than a 507 after an hour of uploading."""
        with self._errors("checking the drive"):
            q = self.drive(refresh=True).quota
        total, remaining = int(q.get("total") or 0), int(q.get("remaining") or 0)
        if total == 0:
            return  # SharePoint libraries report all-zero quota: unknown, not full
        deleted = int(q.get("deleted") or 0)
        log.info("%s: %s free of %s, %s of it used by the recycle bin%s", self.describe(),
                 human_size(remaining), human_size(total), human_size(deleted),
                 "" if not deleted or self._permanent() else
                 " (pruned snapshots wait there; hard_delete = true frees them at once on work "
                 "or school drives)")
        need = needed_bytes or 1
        if q.get("state") == "exceeded" or remaining < need:
            raise DestinationError(
                f"{self.describe()}: the drive of account {self.account.name!r}"
                f"{' (' + self._drive.owner + ')' if self._drive and self._drive.owner else ''}"
                f" is full: {human_size(remaining)} free of {human_size(total)} "
                f"({human_size(int(q.get('used') or 0))} used, "
                f"{human_size(int(q.get('deleted') or 0))} in the recycle bin)"
                + (f", about {human_size(needed_bytes)} needed" if needed_bytes else "")
                + ". Free space (empty the recycle bin) or lower the job's max_size."
            )

    def space(self) -> dict[str, int] | None:
        with self._errors("reading the drive's quota"):
            q = self.drive(refresh=True).quota
        if not int(q.get("total") or 0):
            return None  # SharePoint libraries may report all-zero quota: unknown
        return {k: int(q.get(k) or 0) for k in ("total", "used", "remaining", "deleted")}

    def list_snapshot_dirs(self, job: str) -> list[str]:
        with self._errors(f"listing the snapshots of {job}"):
            return sorted(i["name"] for i in self._children(self._rel(job)) if "folder" in i)

    def list_objects(self, job: str, snapshot: str) -> dict[str, StoredObject]:
        """The snapshot folder's files; their download URLs are kept (``_URL_REUSE``), so a
        read that follows (restore --path: the index, a volume's frames) needs no
        ``:/content`` redirect."""
        rel = self._rel(job, snapshot)
        out: dict[str, StoredObject] = {}
        urls: dict[str, str] = {}
        with self._errors(f"listing {job}/{snapshot}"):
            for i in self._children(rel, urls=True):
                if "folder" in i:
                    continue
                out[i["name"]] = self._stored(i)
                if isinstance(i.get("@microsoft.graph.downloadUrl"), str):
                    urls[f"{rel}/{i['name']}"] = i["@microsoft.graph.downloadUrl"]
        self._keep_urls(urls)
        return out

    def read_manifest(self, job: str, snapshot: str) -> bytes | None:
        """``job/snapshot``'s manifest, None when it has none (or the folder is gone): read
        by its path, two requests, where listing the folder first would be a third
        (snapshot/catalog.py reads every snapshot's this way)."""
        try:
            return self.read_bytes(job, snapshot, MANIFEST_NAME)
        except ObjectNotFound:
            return None

    def put_file(
        self,
        job: str,
        snapshot: str,
        name: str,
        src: Path,
        expected: Expected,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> StoredObject:
        rel = self._rel(job, snapshot, name)
        self._forget_urls(rel)
        with self._errors(f"uploading {job}/{snapshot}/{name}"):
            self.slots.acquire(cancel)
            try:
                self._ensure_folder(self._rel(job, snapshot))
                item = self.uploader().upload(self._item(rel), rel, Path(src), expected.sha256,
                                              expected.quickxor, progress, cancel)
            finally:
                self.slots.release()
            return self._stored(item)

    def put_bytes(self, job: str, snapshot: str, name: str, data: bytes) -> StoredObject:
        rel = self._rel(job, snapshot, name)
        if len(data) > SIMPLE_UPLOAD_MAX:
            raise DestinationError(
                f"{self.describe()}: {name} is {len(data)} bytes; small files only")
        self._forget_urls(rel)
        with self._errors(f"writing {job}/{snapshot}/{name}"):
            self._ensure_folder(self._rel(job, snapshot))
            return self._stored(self.uploader().put_small(self._item(rel), rel, data))

    def open_read(self, job: str, snapshot: str, name: str) -> BinaryIO:
        rel = self._rel(job, snapshot, name)
        with self._errors(f"reading {rel}"):
            reader = _Download(self, rel)
            reader.open()
        return io.BufferedReader(reader, 1 << 20)  # type: ignore[return-value]

    def read_range(self, job: str, snapshot: str, name: str, start: int, length: int) -> bytes:
        """``Range: bytes=a-b`` on the file's download URL (the one kept from the last read
        of it, while fresh), resumed from the first missing byte after a reset."""
        if not check_range(start, length):
            return b""
        rel = self._rel(job, snapshot, name)
        with self._errors(f"reading {rel}"), _Download(self, rel, start, start + length) as r:
            data = read_exact(lambda _at, n: r.read(n), start, length)
        return self.whole_range(data, rel, start, length, r.size)

    def _permanent(self) -> bool:
        """Whether deletes bypass the recycle bin: hard_delete on a work or school drive
        (personal OneDrive has no permanentDelete; said once per destination)."""
        if not self.hard_delete:
            return False
        if self.drive().drive_type == "personal":
            if not self._warned_soft:
                self._warned_soft = True
                log.warning("%s: hard_delete = true, but personal OneDrive has no permanent "
                            "delete: pruned snapshots go to the recycle bin and count against the "
                            "quota until it is emptied", self.describe())
            return False
        return True

    def delete_snapshot(self, job: str, snapshot: str) -> None:
        """The manifest goes first: from then on the snapshot is incomplete, never half-listed.
        With ``hard_delete`` (work or school drives) both go for good, freeing the quota at
        once; otherwise to the recycle bin, as a user deleting by hand."""
        folder = self._rel(job, snapshot)
        with self._errors(f"deleting {job}/{snapshot}"):
            permanent = self._permanent()
            for rel in (self._rel(job, snapshot, MANIFEST_NAME), folder):
                if permanent:
                    self.client.request("POST", self._item(rel) + ":/permanentDelete",
                                        what=f"deleting {rel} permanently", ok=(204, 404))
                else:
                    self.client.request("DELETE", self._item(rel), what=f"deleting {rel}",
                                        ok=(204, 404))
            if self.state is not None:  # upload sessions of an abandoned snapshot: cancel them
                for path, rec in list(self.state.sessions(self.name)):
                    if path.startswith(folder + "/"):
                        self.uploader().discard(path, rec)
        self._folders.discard(folder)
        self._forget_urls(folder)

    def list_root(self) -> list[str]:
        with self._errors(f"listing {self.folder}"):
            return sorted(i["name"] for i in self._children(self.folder) if "folder" in i)

    def last_space(self) -> dict[str, int] | None:
        """The quota as prepare() (or space()) last read it."""
        q = self._drive.quota if self._drive is not None else {}
        if not int(q.get("total") or 0):
            return None
        return {k: int(q.get(k) or 0) for k in ("total", "used", "remaining", "deleted")}

    def close(self) -> None:
        self.session.close()


class _Download(io.RawIOBase):
    """A stored file, or bytes ``[start, stop)`` of it, as a stream: GET ``:/content`` →
    302 → the pre-authenticated URL (no Authorization; kept per file by the destination for
    the next read, and replaced when it has expired), with ``Range`` from the first byte
    still wanted: resumed that way after a reset or truncation. A 200 answered to a Range
    request (the whole file) is read forward past what comes before ``start``, in pieces,
    and closed at ``stop``."""

    def __init__(self, dest: OneDriveDestination, rel: str, start: int = 0,
                 stop: int | None = None) -> None:
        super().__init__()
        self.dest = dest
        self.client: GraphClient = dest.client
        self.rel = rel
        self.pos = start
        self.stop = stop
        self.skip = 0  # bytes still to drop of a 200 answered to a Range request
        self.size: int | None = None
        self.url: str | None = dest._url_for(rel)
        self.cached = self.url is not None  # a 404 then may mean only that the URL is stale
        self.resp: requests.Response | None = None

    def readable(self) -> bool:
        return True

    def _fresh_url(self) -> str:
        try:
            resp = self.client.request("GET", self.dest._item(self.rel) + ":/content",
                                       what=f"reading {self.rel}", ok=(302,),
                                       allow_redirects=False)
        except gerr.ItemNotFound:
            raise ObjectNotFound(f"{self.dest.describe()}: {self.rel} is missing") from None
        resp.close()
        url = resp.headers["Location"]
        self.dest._keep_url(self.rel, url)
        return url

    def _range(self) -> dict[str, str]:
        if self.stop is not None:
            return {"Range": f"bytes={self.pos}-{self.stop - 1}"}
        return {"Range": f"bytes={self.pos}-"} if self.pos else {}

    def open(self) -> None:
        failures = 0
        while True:
            if self.url is None:
                self.url, self.cached = self._fresh_url(), False
            try:
                resp = self.client.send("GET", self.url, auth=False, headers=self._range(),
                                        stream=True)
            except TRANSPORT_ERRORS:
                failures += 1
                self._give_up_after(failures, "network problem")
                continue
            if resp.status_code in (200, 206):
                break
            resp.close()
            if resp.status_code in _GONE_URL or (resp.status_code == 404 and self.cached):
                self.dest._forget_urls(self.rel)
                self.url = None
                if resp.status_code == 404:
                    continue  # the file was replaced since; its fresh URL says what is there
            elif resp.status_code == 416:
                total = resp.headers.get("Content-Range", "").rpartition("/")[2]
                self.size = int(total) if total.isdigit() else self.size
                if self.size is not None and self.pos >= self.size:
                    self.resp = None  # nothing there from pos: the reader sees the end
                    return
                raise error_from(resp, f"reading {self.rel}")
            elif resp.status_code in RETRY_STATUSES:
                self.client.pause_after(resp, failures + 1)
            else:
                raise error_from(resp, f"reading {self.rel}")
            failures += 1
            self._give_up_after(failures, f"HTTP {resp.status_code}")
        if resp.status_code == 206:
            m = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
            if m is None or int(m.group(1)) != self.pos:
                resp.close()
                raise gerr.GraphError(
                    f"reading {self.rel}: asked for bytes from {self.pos}, answered "
                    f"{resp.headers.get('Content-Range')!r}")
            self.size = int(m.group(3))
        else:
            self.size = int(resp.headers.get("Content-Length", 0)) or self.size
            self.skip = self.pos  # the whole file again: readinto drops what we already have
        self.resp = resp

    def _give_up_after(self, failures: int, problem: str) -> None:
        if failures >= self.client.retry.attempts:
            raise gerr.GraphError(
                f"reading {self.rel}: giving up after {failures} attempts ({problem})")
        if failures > 1:
            time.sleep(self.client.retry.delay(failures))

    def readinto(self, b: Any) -> int:
        want = len(b) if self.stop is None else min(len(b), self.stop - self.pos)
        failures = 0
        while want > 0:
            if self.resp is None:
                if self.size is not None and self.pos >= self.size:
                    return 0
                with self.dest._errors(f"reading {self.rel}"):
                    self.open()
                if self.resp is None:
                    return 0
            try:
                while self.skip and (got := self.resp.raw.read(min(self.skip, 1 << 20))):
                    self.skip -= len(got)
                data = b"" if self.skip else self.resp.raw.read(want)
            except _READ_ERRORS:
                data = None
            if data:
                n = len(data)
                b[:n] = data
                self.pos += n
                return n
            self.resp.close()
            self.resp, self.skip = None, 0
            if data is not None and (self.size is None or self.pos >= self.size):
                return 0
            failures += 1  # reset or truncated: go on from self.pos
            if failures >= self.client.retry.attempts:
                raise DestinationError(f"{self.dest.describe()}: reading {self.rel}: "
                                       "the download keeps breaking off")
            log.debug("reading %s: connection lost at byte %d; resuming", self.rel, self.pos)
        return 0

    def close(self) -> None:
        if self.resp is not None:
            self.resp.close()
            self.resp = None
        super().close()
