"""Restore and verify: volumes → (age) → zstd → tar → files, one volume at a time.

Each volume is fetched into a scratch file, its SHA-256 checked against the manifest, and
only then decrypted, decompressed and fed to the extractor, while the next volume is
fetched in the background. Scratch disk is two volumes; the whole snapshot never is.

The extractor never trusts the archive: members that would land outside the target
(absolute paths, ``..``, anything reached through a symlink) are refused and reported.

Why ~440 lines: restore and ``verify --download`` share the volume stream (background
fetch, per-volume checks against the manifest, the chain frames) and its error mapping;
what they do with the members is already elsewhere (``extract``, ``partial``,
``chainrestore``, ``restore_result``).
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Full, Queue
from typing import BinaryIO

import zstandard

from ..destinations.base import Destination, DestinationError, ObjectNotFound, StoredObject
from ..destinations.compare import expected_of, mismatches
from ..hashes import QuickXorHash
from .chain import ChainChecker, ChainError, FirstBytes, kind_problem
from .extract import Extractor
from .manifest import Manifest
from .restore_errors import BadTarget, IntegrityError, RestoreError, RestoreStopped, WrongIdentity
from .restore_result import RestoreStats, compare_with_manifest, special_policy
from .target import open_target, parse_paths
from .tarread import open_tar, read_members

__all__ = [
    "BadTarget", "IntegrityError", "RestoreError", "RestoreStats", "RestoreStopped",
    "WrongIdentity", "restore_snapshot", "verify_snapshot", "check_identities", "VolumeFetcher",
    "PlainStream",
]

log = logging.getLogger("odbackupd.restore")


def check_identities(manifest: Manifest, identities: Sequence[object] | None) -> None:
    """Refuse keys the snapshot was not encrypted to before anything is fetched or written.

    The manifest lists the recipients' fingerprints, so a wrong key is a clear usage error
    up front instead of an age failure mid-restore (or a "damaged" verdict from verify).
    """
    if not manifest.encrypted or not identities:
        return
    wanted = set((manifest.encryption or {}).get("recipients") or [])
    if not wanted:
        return  # a manifest without fingerprints: age decides when the volume is opened
    from ..crypto.age import recipient_fingerprint

    given = {recipient_fingerprint(i) for i in identities}  # type: ignore[arg-type]
    if not given & wanted:
        raise WrongIdentity(
            f"none of the --identity keys opens snapshot {manifest.snapshot}: it is encrypted to "
            f"recipient fingerprint {', '.join(sorted(wanted))}, "
            f"the keys given have {', '.join(sorted(given))} "
            "(a fingerprint is the first 16 hex digits of the SHA-256 of the age1... public key)")


# -- fetching volumes ---------------------------------------------------------------------------
class _Stopped(Exception):
    """The consumer went away (an error, Ctrl-C): the fetch ends at the next read."""


def _hash_stream(f: BinaryIO, sink: BinaryIO | None = None, quickxor: bool = False,
                 stop: threading.Event | None = None) -> tuple[int, str, str | None]:
    """Size, SHA-256 and (when asked) quickXorHash of a stream, copying it to ``sink``."""
    sha = hashlib.sha256()
    qx = QuickXorHash() if quickxor else None
    size = 0
    while True:
        if stop is not None and stop.is_set():
            raise _Stopped()
        b = f.read(1 << 20)
        if not b:
            break
        sha.update(b)
        if qx is not None:
            qx.update(b)
        size += len(b)
        if sink is not None:
            sink.write(b)
    return size, sha.hexdigest(), qx.b64digest() if qx is not None else None


def check_volume(vol: dict, size: int, sha256: str) -> None:
    """A fetched volume (its size and SHA-256 as read) against its manifest entry."""
    problems = mismatches(StoredObject(vol["name"], size, sha256), expected_of(vol))
    if problems:
        raise IntegrityError(f"{vol['name']}: " + "; ".join(map(str, problems)))


# How long a closing fetch waits for its worker to notice (it checks between 1 MiB reads).
STOP_GRACE = 2.0


class VolumeFetcher:
    """Yields verified local copies of a snapshot's volumes, fetching one ahead."""

    def __init__(self, dest: Destination, manifest: Manifest, scratch: Path | None = None) -> None:
        self.dest = dest
        self.m = manifest
        self.scratch = scratch

    def __iter__(self) -> Iterator[tuple[dict, Path]]:
        tmpdir = Path(tempfile.mkdtemp(prefix="odbackupd-restore-", dir=self.scratch))
        q: Queue = Queue(maxsize=1)
        stop = threading.Event()

        def put(item: object) -> bool:
            while not stop.is_set():  # never blocked on a consumer that has gone
                try:
                    q.put(item, timeout=0.2)
                    return True
                except Full:
                    pass
            return False

        def worker() -> None:
            path: Path | None = None
            try:
                for vol in self.m.volumes:
                    if stop.is_set():
                        return
                    path = tmpdir / vol["name"]
                    try:
                        src = self.dest.open_read(self.m.location, self.m.snapshot, vol["name"])
                    except ObjectNotFound as e:  # the manifest lists it: the snapshot is damaged
                        raise IntegrityError(f"{vol['name']} is missing ({e})") from e
                    with src, open(path, "wb") as out:
                        size, sha, _ = _hash_stream(src, out, stop=stop)
                    check_volume(vol, size, sha)
                    if not put((vol, path)):
                        path.unlink(missing_ok=True)
                        return
                put(None)
            except _Stopped:
                if path is not None:
                    path.unlink(missing_ok=True)
            except BaseException as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
                put(e)

        t = threading.Thread(target=worker, name="restore-fetch", daemon=True)
        t.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    if isinstance(item, (DestinationError, IntegrityError)):
                        raise item
                    raise RestoreError(f"fetching volumes: {item}") from item
                vol, path = item
                try:
                    yield vol, path
                finally:
                    path.unlink(missing_ok=True)
        finally:
            # The worker stops at its next read. A download stalled inside a read is left to
            # its socket timeout in the (daemon) thread: Ctrl-C does not wait for it.
            stop.set()
            t.join(STOP_GRACE)
            while True:
                try:
                    item = q.get_nowait()
                except Empty:
                    break
                if isinstance(item, tuple):
                    item[1].unlink(missing_ok=True)
            shutil.rmtree(tmpdir, ignore_errors=True)


class PlainStream(io.RawIOBase):
    """The snapshot's tar stream: each volume decrypted and decompressed, concatenated."""

    def __init__(self, volumes: Iterator[tuple[dict, Path]], identities: Sequence[object] | None,
                 on_volume: Callable[[dict], None] | None = None, manifest: Manifest | None = None,
                 first: int | None = None) -> None:
        """``manifest``: check the volumes against it as they are read (their chain headers
        and end marker, snapshot/chain.py; encrypted exactly when the manifest says so).
        ``first``: the volumes are a part of the snapshot, starting after ``first`` others
        (the end marker is then not required: the read may stop before the last volume)."""
        self._chain = ChainChecker(manifest, first or 0) if manifest is not None else None
        self._partial = first is not None
        self._encrypted = manifest.encrypted if manifest is not None else None
        self._vols = iter(volumes)
        self._ids = identities
        self._cur: BinaryIO | None = None
        self._files: list[BinaryIO] = []
        self._dctx = zstandard.ZstdDecompressor()
        self._on_volume = on_volume
        self.tar_bytes = 0

    def readable(self) -> bool:
        return True

    def _next_volume(self) -> bool:
        self._close_current()
        try:
            vol, path = next(self._vols)
        except StopIteration:
            if self._chain is not None and not self._partial:
                with _chain_errors():
                    self._chain.finish(self.tar_bytes)
            return False
        f: BinaryIO = open(path, "rb")
        self._files.append(f)
        age = vol["name"].endswith(".age")
        if self._encrypted is not None and age != self._encrypted:
            raise IntegrityError(f"{vol['name']}: " + (
                "is not an age file, but the manifest says the snapshot is encrypted "
                "(plain volumes under an encrypted manifest)" if self._encrypted else
                "is an age file, but the manifest says the snapshot is not encrypted"))
        if age:
            if not self._ids:
                raise RestoreError(
                    "this snapshot is encrypted: give the identity file with --identity"
                )
            from ..crypto.age import AgeError, AgeNoMatchError, AgeReader

            try:
                f = AgeReader(f, list(self._ids))  # type: ignore[assignment]
            except AgeNoMatchError as e:
                raise WrongIdentity(
                    f"{vol['name']}: none of the --identity keys opens it ({e})"
                ) from e
            except AgeError as e:
                raise IntegrityError(f"{vol['name']}: not a readable age file, though the "
                                     f"manifest says the snapshot is encrypted: {e}") from e
            self._files.append(f)
        if self._chain is not None:
            with _chain_errors():
                f = self._chain.open(vol, f)
        self._cur = self._dctx.stream_reader(f, read_across_frames=True, closefd=False)
        if self._on_volume:
            self._on_volume(vol)
        return True

    def _close_current(self) -> None:
        if self._cur is not None:
            self._cur.close()
            self._cur = None
        for f in reversed(self._files):
            f.close()
        self._files.clear()

    def readinto(self, b) -> int:  # noqa: ANN001
        while True:
            if self._cur is None and not self._next_volume():
                return 0
            try:
                data = self._cur.read(len(b))  # type: ignore[union-attr]
            except zstandard.ZstdError as e:
                raise IntegrityError(f"corrupt compressed data: {e}") from e
            except ValueError as e:  # AgeError: authentication failed, truncated, wrong key
                raise IntegrityError(f"decryption failed: {e}") from e
            if data:
                n = len(data)
                b[:n] = data
                self.tar_bytes += n
                return n
            if self._chain is not None:
                with _chain_errors():
                    self._chain.close_volume()
            self._cur = None

    def close(self) -> None:
        self._close_current()
        close = getattr(self._vols, "close", None)
        if close is not None:  # a VolumeFetcher generator: stop its fetch and clean its scratch
            close()
        super().close()


@contextmanager
def _chain_errors() -> Iterator[None]:
    try:
        yield
    except ChainError as e:
        raise IntegrityError(str(e)) from None


# -- entry points --------------------------------------------------------------------------------
def restore_snapshot(
    dest: Destination,
    manifest: Manifest,
    target: Path,
    *,
    identities: Sequence[object] | None = None,
    paths: Sequence[str] = (),
    scratch: Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    same_owner: bool | None = None,
    authentic: bool = False,
    special_files: bool | None = None,
) -> RestoreStats:
    """Restore ``manifest``'s snapshot below ``target``.

    ``authentic``: the manifest's signature was verified against a trusted key
    (snapshot/trust.py), so the snapshot is what that host's daemon wrote. Unless it is,
    or ``special_files`` says otherwise, a root restore leaves out setuid/setgid bits,
    capabilities and device nodes (counted in the stats, which then are not ``complete``).
    Damage raises IntegrityError, a full or read-only target RestoreStopped; either carries
    ``.stats`` of what was written.
    """
    if manifest.encrypted and not identities:
        raise RestoreError(
            f"snapshot {manifest.snapshot} is encrypted: give the age identity file with --identity"
        )
    check_identities(manifest, identities)
    restore_special, why = special_policy(authentic, special_files)
    parse_paths(paths)  # a bad --path is refused before the target is created
    tgt = open_target(target)
    total = manifest.tar_bytes
    stream = PlainStream(
        iter(VolumeFetcher(dest, manifest, scratch)), identities, manifest=manifest
    )
    reader: BinaryIO = io.BufferedReader(stream, 1 << 20)  # type: ignore[arg-type]
    if on_progress is not None:
        reader = _ProgressReader(  # type: ignore[assignment]
            reader, lambda n: on_progress(n, total))
    try:
        ex = Extractor(tgt.fd, tgt.path, paths=paths, same_owner=same_owner,
                       special_files=restore_special, special_reason=why)
        ex.stats.warnings[:0] = tgt.warnings
        stats = ex.extract(reader)
        while reader.read(1 << 20):  # on to the snapshot's end, where its end marker is checked
            pass
    finally:
        stream.close()
        os.close(tgt.fd)
    compare_with_manifest(stats, manifest, stream.tar_bytes, selective=bool(paths))
    return stats


class _ProgressReader:
    def __init__(self, f: BinaryIO, cb: Callable[[int], None]) -> None:
        self.f, self.cb, self.n = f, cb, 0

    def read(self, n: int = -1) -> bytes:
        b = self.f.read(n)
        self.n += len(b)
        self.cb(self.n)
        return b


@dataclass
class VerifyReport:
    snapshot: str
    volumes: int = 0  # the manifest's volumes checked
    bytes: int = 0
    problems: list[str] = field(default_factory=list)
    method: str = ""
    index: bool = False  # the snapshot's index was checked too

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_snapshot(
    dest: Destination,
    manifest: Manifest,
    *,
    download: bool = False,
    identities: Sequence[object] | None = None,
) -> VerifyReport:
    """Check every volume against the manifest.

    First the listing: each object's size and the hashes the destination reports, by the
    rules of ``destinations.compare``. Without ``download`` that is all, and at least one
    hash must agree (OneDrive's quickXorHash, ``dest.capabilities.hashes``); a destination
    that reports none (a local directory) is read instead, which costs no transfer.
    With ``download``: everything is read back and hashed, and with the identity (or for
    an unencrypted snapshot) decrypted, decompressed and read through to the tar end.
    """
    rep = VerifyReport(manifest.snapshot)
    objs = dest.list_objects(manifest.location, manifest.snapshot)
    read_back = download or not dest.reports_hashes
    rep.method = "read back" if read_back else "destination hashes"
    for vol in [*manifest.volumes, *([manifest.index] if manifest.index else [])]:  # the index too
        if vol is manifest.index:
            rep.index = True
        else:
            rep.volumes += 1
        name, expected = vol["name"], expected_of(vol)
        obj = objs.get(name)
        # the listing first: what it reports is checked in both modes, and without a
        # download a hash must have been compared
        problems = mismatches(obj, expected, need_hash=not read_back)
        if not read_back and obj is not None and not any(p.what == "size" for p in problems):
            rep.bytes += obj.size  # checked by its hashes, good or bad
        if problems:
            hint = {"unverifiable": "; use --download"}
            rep.problems += [f"{name}: {p}{hint.get(p.what, '')}" for p in problems]
            continue
        if read_back:
            try:
                with dest.open_read(manifest.location, manifest.snapshot, name) as f:
                    f = FirstBytes(f)  # type: ignore[assignment]
                    size, sha, qx = _hash_stream(  # type: ignore[arg-type]
                        f, quickxor=bool(expected.quickxor))
            except DestinationError as e:
                rep.problems.append(f"{name}: {e}")
                continue
            rep.bytes += size
            read = mismatches(StoredObject(name, size, sha, qx), expected)
            if read:
                rep.problems += [f"{name}: {p} (stored data is damaged)" for p in read]
            elif (kind := kind_problem(name, f.head, manifest.encrypted)) is not None:
                rep.problems.append(kind)
    if download and manifest.encrypted and not identities:
        rep.method = "read back and hashed; not decrypted (encrypted, no identity given)"
    if download and not rep.problems and (identities or not manifest.encrypted):
        check_identities(manifest, identities)
        rep.method = "read back, decrypted and decompressed"
        stream = PlainStream(iter(VolumeFetcher(dest, manifest)), identities, manifest=manifest)
        files = data = 0
        try:
            with open_tar(io.BufferedReader(stream, 1 << 20)) as tf:  # type: ignore[arg-type]
                for ti in read_members(tf):
                    files += ti.isreg() or ti.islnk()
                    data += ti.size if ti.isreg() else 0
        except WrongIdentity:
            raise
        except (RestoreError, tarfile.TarError, zstandard.ZstdError, ValueError) as e:
            rep.problems.append(f"archive does not read back: {e}")
        finally:
            stream.close()
        if not rep.problems and stream.tar_bytes != manifest.tar_bytes:
            rep.problems.append(f"archive has {stream.tar_bytes} bytes, "
                                f"the manifest says {manifest.tar_bytes}")
        elif not rep.problems and (files, data) != (manifest.files, manifest.data_bytes):
            rep.problems.append(f"archive holds {files} files with {data} bytes, the manifest says "
                                f"{manifest.files} files with {manifest.data_bytes} bytes")
    return rep
