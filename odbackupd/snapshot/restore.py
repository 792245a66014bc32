"""Restore and verify: volumes → (age) → zstd → tar → files, one volume at a time.

Each volume is fetched into a scratch file, its SHA-256 checked against the manifest, and
only then decrypted, decompressed and fed to the extractor, while the next volume is
fetched in the background. Scratch disk is two volumes; the whole snapshot never is.

The extractor never trusts the archive: members that would land outside the target
(absolute paths, ``..``, anything reached through a symlink) are refused and reported.
"""
from __future__ import annotations

import errno
import grp
import hashlib
import io
import logging
import os
import pwd
import shutil
import stat
import tarfile
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Full, Queue
from typing import BinaryIO, Callable, Iterator, Sequence

import zstandard

from ..destinations.base import Destination, DestinationError
from ..hashes import QuickXorHash
from .chain import ChainChecker, ChainError, FirstBytes, kind_problem
from .manifest import Manifest
from .tarstream import parse_ns

log = logging.getLogger("odbackupd.restore")


class RestoreError(Exception):
    pass


class IntegrityError(RestoreError):
    pass


class WrongIdentity(RestoreError):
    """None of the --identity keys opens the snapshot: the caller's mistake, not damage."""


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
            f"recipient fingerprint {', '.join(sorted(wanted))}, the keys given have {', '.join(sorted(given))} "
            "(a fingerprint is the first 16 hex digits of the SHA-256 of the age1... public key)")


@dataclass
class RestoreStats:
    files: int = 0
    dirs: int = 0
    links: int = 0
    others: int = 0
    bytes: int = 0
    refused: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)  # --path arguments no member matched


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
    if size != int(vol["size"]):
        raise IntegrityError(f"{vol['name']}: {size} bytes, the manifest says {vol['size']}")
    if sha256 != vol["sha256"]:
        raise IntegrityError(f"{vol['name']}: SHA-256 {sha256} does not match the manifest's {vol['sha256']}")


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
                    with self.dest.open_read(self.m.location, self.m.snapshot, vol["name"]) as src, open(path, "wb") as out:
                        size, sha, _ = _hash_stream(src, out, stop=stop)
                    check_volume(vol, size, sha)
                    if not put((vol, path)):
                        path.unlink(missing_ok=True)
                        return
                put(None)
            except _Stopped:
                if path is not None:
                    path.unlink(missing_ok=True)
            except BaseException as e:  # handed to the consumer
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
                 on_volume: Callable[[dict], None] | None = None, manifest: Manifest | None = None) -> None:
        """``manifest``: check the volumes against it as they are read (their chain headers
        and end marker, snapshot/chain.py; encrypted exactly when the manifest says so)."""
        self._chain = ChainChecker(manifest) if manifest is not None else None
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
            if self._chain is not None:
                with _chain_errors():
                    self._chain.finish(self.tar_bytes)
            return False
        f: BinaryIO = open(path, "rb")
        self._files.append(f)
        age = vol["name"].endswith(".age")
        if self._encrypted is not None and age != self._encrypted:
            raise IntegrityError(f"{vol['name']}: " + (
                "is not an age file, but the manifest says the snapshot is encrypted (plain volumes "
                "under an encrypted manifest)" if self._encrypted else
                "is an age file, but the manifest says the snapshot is not encrypted"))
        if age:
            if not self._ids:
                raise RestoreError("this snapshot is encrypted: give the identity file with --identity")
            from ..crypto.age import AgeError, AgeNoMatchError, AgeReader

            try:
                f = AgeReader(f, list(self._ids))  # type: ignore[assignment]
            except AgeNoMatchError as e:
                raise WrongIdentity(f"{vol['name']}: none of the --identity keys opens it ({e})") from e
            except AgeError as e:
                raise IntegrityError(f"{vol['name']}: not a readable age file, though the manifest says the "
                                     f"snapshot is encrypted: {e}") from e
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


# -- extraction -----------------------------------------------------------------------------------
class Unsafe(Exception):
    pass


def _member_parts(name: str) -> list[bytes]:
    raw = os.fsencode(name)
    parts = [p for p in raw.split(b"/") if p not in (b"", b".")]
    if b".." in parts:
        raise Unsafe("contains '..'")
    if not parts:
        raise Unsafe("empty name")
    return parts


class Extractor:
    def __init__(
        self,
        target: Path,
        *,
        paths: Sequence[str] = (),
        same_owner: bool | None = None,
        numeric_owner: bool = False,
    ) -> None:
        self.root = os.fsencode(str(Path(target).resolve()))
        self.paths = [p for p in paths if p.strip("/")]
        self.filters = [tuple(_member_parts(p.strip("/"))) for p in self.paths]
        self._matched: set[int] = set()
        self.same_owner = os.geteuid() == 0 if same_owner is None else same_owner
        self.numeric_owner = numeric_owner
        self.stats = RestoreStats()
        self._verified: set[bytes] = {self.root}
        self._dirs: list[tuple[bytes, tarfile.TarInfo]] = []
        self._warned: set[str] = set()

    def _warn(self, msg: str, once_key: str | None = None) -> None:
        if once_key is not None:
            if once_key in self._warned:
                return
            self._warned.add(once_key)
        self.stats.warnings.append(msg)
        log.warning("%s", msg)

    def _wanted(self, parts: list[bytes]) -> bool:
        if not self.filters:
            return True
        t = tuple(parts)
        hits = {i for i, f in enumerate(self.filters) if t[: len(f)] == f}
        self._matched |= hits
        return bool(hits)

    def _parent(self, parts: list[bytes]) -> bytes:
        """The member's parent directory, created if missing; refuses any symlink on the way."""
        cur = self.root
        for comp in parts[:-1]:
            cur = cur + b"/" + comp
            if cur in self._verified:
                continue
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                os.mkdir(cur)
                self._verified.add(cur)
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise Unsafe(f"its parent {os.fsdecode(cur)} is not a directory (a symlink?)")
            self._verified.add(cur)
        return cur

    def extract(self, stream: BinaryIO) -> RestoreStats:
        try:
            tf = tarfile.open(fileobj=stream, mode="r|", encoding="utf-8", errors="surrogateescape")
        except tarfile.TarError as e:
            raise IntegrityError(f"not a tar stream: {e}") from e
        with tf:
            while True:
                try:
                    ti = tf.next()
                except tarfile.TarError as e:
                    raise IntegrityError(f"corrupt tar stream: {e}") from e
                if ti is None:
                    break
                tf.members.clear()  # stream mode: keep memory flat
                try:
                    parts = _member_parts(ti.name)
                    if not self._wanted(parts):
                        continue
                    self._member(tf, ti, parts)
                except Unsafe as e:
                    msg = f"refused {ti.name!r}: {e}"
                    self.stats.refused.append(ti.name)
                    self._warn(msg)
                except OSError as e:
                    self._warn(f"{ti.name}: {e.strerror or e}")
        for path, ti in reversed(self._dirs):
            self._attrs(path, ti, is_dir=True)
        # a mistyped --path restores nothing: say so rather than report a restore of 0 files
        self.stats.unmatched = [p for i, p in enumerate(self.paths) if i not in self._matched]
        return self.stats

    def _member(self, tf: tarfile.TarFile, ti: tarfile.TarInfo, parts: list[bytes]) -> None:
        parent = self._parent(parts)
        path = parent + b"/" + parts[-1]
        if ti.isdir():
            try:
                st = os.lstat(path)
                if not stat.S_ISDIR(st.st_mode):
                    os.unlink(path)
                    self._verified.discard(path)
                    os.mkdir(path, 0o700)
            except FileNotFoundError:
                os.mkdir(path, 0o700)
            self._verified.add(path)
            self._dirs.append((path, ti))
            self.stats.dirs += 1
            return
        self._clear(path)
        if ti.isreg():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                src = tf.extractfile(ti)
                assert src is not None
                remaining = ti.size
                while remaining:
                    b = src.read(min(remaining, 1 << 20))
                    if not b:
                        raise IntegrityError(f"{ti.name}: archive ends inside the file")
                    _write_all(fd, b)
                    remaining -= len(b)
                self.stats.bytes += ti.size
            finally:
                os.close(fd)
            self.stats.files += 1
        elif ti.islnk():
            lparts = _member_parts(ti.linkname)
            source = self._parent(lparts) + b"/" + lparts[-1]
            os.link(source, path, follow_symlinks=False)
            self.stats.links += 1
            return  # a hard link shares the attributes of what it links to
        elif ti.issym():
            os.symlink(os.fsencode(ti.linkname), path)
            self.stats.others += 1
        elif ti.ischr() or ti.isblk():
            if os.geteuid() != 0:
                self._warn(f"{ti.name}: device files are restored only as root; skipped")
                return
            kind = stat.S_IFCHR if ti.ischr() else stat.S_IFBLK
            os.mknod(path, kind | 0o600, os.makedev(ti.devmajor, ti.devminor))
            self.stats.others += 1
        elif ti.isfifo():
            os.mkfifo(path, 0o600)
            self.stats.others += 1
        else:
            self._warn(f"{ti.name}: unsupported member type {ti.type!r}; skipped")
            return
        self._attrs(path, ti, is_dir=False)

    def _clear(self, path: bytes) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise Unsafe("a directory of that name is already there")
        os.unlink(path)  # a file or a symlink: replaced, never followed

    def _attrs(self, path: bytes, ti: tarfile.TarInfo, is_dir: bool) -> None:
        link = ti.issym()
        if self.same_owner:
            uid, gid = ti.uid, ti.gid
            if not self.numeric_owner:
                try:
                    uid = pwd.getpwnam(ti.uname).pw_uid if ti.uname else uid
                except KeyError:
                    pass
                try:
                    gid = grp.getgrnam(ti.gname).gr_gid if ti.gname else gid
                except KeyError:
                    pass
            try:
                os.lchown(path, uid, gid)
            except OSError as e:
                self._warn(f"{ti.name}: cannot set owner: {e.strerror}")
        if not link:
            os.chmod(path, ti.mode & 0o7777 if self.same_owner else ti.mode & 0o1777)
        for key, value in ti.pax_headers.items():
            if key.startswith("SCHILY.xattr."):
                name = key[len("SCHILY.xattr."):]
                try:
                    os.setxattr(path, name, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
                except OSError as e:
                    if e.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                        self._warn(
                            f"extended attribute {name} not restored ({e.strerror}); further such warnings suppressed",
                            once_key="xattr:" + name.split(".")[0],
                        )
                    else:
                        self._warn(f"{ti.name}: extended attribute {name}: {e.strerror}")
        mt = ti.pax_headers.get("mtime")
        ns = parse_ns(mt) if mt else int(ti.mtime) * 1_000_000_000
        try:
            os.utime(path, ns=(ns, ns), follow_symlinks=False)
        except OSError as e:
            self._warn(f"{ti.name}: cannot set mtime: {e.strerror}")


def _write_all(fd: int, b: bytes) -> None:
    mv = memoryview(b)
    while mv:
        n = os.write(fd, mv)
        mv = mv[n:]


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
) -> RestoreStats:
    """``authentic``: the manifest's signature was verified against a trusted key
    (snapshot/trust.py)."""
    if manifest.encrypted and not identities:
        raise RestoreError(
            f"snapshot {manifest.snapshot} is encrypted: give the age identity file with --identity"
        )
    check_identities(manifest, identities)
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    total = manifest.tar_bytes
    stream = PlainStream(iter(VolumeFetcher(dest, manifest, scratch)), identities, manifest=manifest)
    reader: BinaryIO = io.BufferedReader(stream, 1 << 20)  # type: ignore[arg-type]
    if on_progress is not None:
        reader = _ProgressReader(reader, lambda n: on_progress(n, total))  # type: ignore[assignment]
    try:
        stats = Extractor(target, paths=paths, same_owner=same_owner).extract(reader)
        while reader.read(1 << 20):  # on to the snapshot's end, where its end marker is checked
            pass
    finally:
        stream.close()
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
    volumes: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)
    method: str = ""

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

    Without ``download``: sizes and the hashes the destination reports (OneDrive's
    quickXorHash, ``dest.reports_hashes``); a destination that reports none (a local
    directory) is read instead, which costs no transfer.
    With ``download``: everything is read back and hashed, and with the identity (or for
    an unencrypted snapshot) decrypted, decompressed and read through to the tar end.
    """
    rep = VerifyReport(manifest.snapshot)
    objs = dest.list_objects(manifest.location, manifest.snapshot)
    read_back = download or not dest.reports_hashes
    rep.method = "read back" if read_back else "destination hashes"
    for vol in manifest.volumes:
        rep.volumes += 1
        obj = objs.get(vol["name"])
        if obj is None:
            rep.problems.append(f"{vol['name']}: missing")
            continue
        if obj.size != vol["size"]:
            rep.problems.append(f"{vol['name']}: {obj.size} bytes stored, manifest says {vol['size']}")
            continue
        if read_back:
            try:
                with dest.open_read(manifest.location, manifest.snapshot, vol["name"]) as f:
                    f = FirstBytes(f)  # type: ignore[assignment]
                    size, sha, qx = _hash_stream(f, quickxor=bool(vol.get("quickxor")))  # type: ignore[arg-type]
            except DestinationError as e:
                rep.problems.append(f"{vol['name']}: {e}")
                continue
            rep.bytes += size
            if sha != vol["sha256"]:
                rep.problems.append(f"{vol['name']}: SHA-256 mismatch (stored data is damaged)")
            elif vol.get("quickxor") and qx != vol["quickxor"]:
                rep.problems.append(f"{vol['name']}: quickXorHash mismatch")
            elif (kind := kind_problem(vol["name"], f.head, manifest.encrypted)) is not None:
                rep.problems.append(kind)
        else:
            if obj.quickxor is None and obj.sha256 is None:
                rep.problems.append(f"{vol['name']}: the destination reports no hash; use --download")
            elif obj.quickxor is not None and obj.quickxor != vol.get("quickxor"):
                rep.problems.append(f"{vol['name']}: quickXorHash {obj.quickxor} != manifest {vol.get('quickxor')}")
            elif obj.sha256 is not None and obj.sha256.lower() != vol["sha256"]:
                rep.problems.append(f"{vol['name']}: SHA-256 mismatch")
            rep.bytes += obj.size
    if download and manifest.encrypted and not identities:
        rep.method = "read back and hashed; not decrypted (encrypted, no identity given)"
    if download and not rep.problems and (identities or not manifest.encrypted):
        check_identities(manifest, identities)
        rep.method = "read back, decrypted and decompressed"
        stream = PlainStream(iter(VolumeFetcher(dest, manifest)), identities, manifest=manifest)
        try:
            with tarfile.open(fileobj=io.BufferedReader(stream, 1 << 20), mode="r|",  # type: ignore[arg-type]
                              encoding="utf-8", errors="surrogateescape") as tf:
                while tf.next() is not None:
                    tf.members.clear()
            while stream.read(1 << 20):
                pass
        except WrongIdentity:
            raise
        except (RestoreError, tarfile.TarError, zstandard.ZstdError, ValueError) as e:
            rep.problems.append(f"archive does not read back: {e}")
        finally:
            stream.close()
        if not rep.problems and stream.tar_bytes != manifest.tar_bytes:
            rep.problems.append(f"archive has {stream.tar_bytes} bytes, the manifest says {manifest.tar_bytes}")
    return rep
