"""A directory on this machine (a mounted USB disk, NFS, another filesystem).

Files are written under a temporary name, fsynced and renamed, so a crash never leaves a
file that looks complete but is not. A volume on the same filesystem as the spool is
hard-linked instead of copied.
"""
from __future__ import annotations

import errno
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from .base import (
    MANIFEST_NAME,
    Destination,
    DestinationError,
    Expected,
    ObjectNotFound,
    ProgressFn,
    StoredObject,
    check_range,
    read_exact,
)
from .kinds.local import CAPABILITIES

_TMP_SUFFIX = ".partial"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _safe_component(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise DestinationError(f"invalid name {name!r}")
    return name


class LocalDestination(Destination):
    kind = "local"
    capabilities = CAPABILITIES

    def __init__(self, name: str, path: Path, create: bool = False) -> None:
        super().__init__(name)
        self.root = Path(path)
        self.create = create

    def describe(self) -> str:
        return f"local destination {self.name!r} ({self.root})"

    def prepare(self, needed_bytes: int | None = None) -> None:
        if not self.root.is_dir():
            if self.create and self.root.parent.is_dir():
                self.root.mkdir(mode=0o700, exist_ok=True)
            else:
                raise self._missing()
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise DestinationError(f"{self.describe()}: {self.root} is not writable by this user")
        if needed_bytes:
            free = shutil.disk_usage(self.root).free
            if free < needed_bytes:
                raise DestinationError(
                    f"{self.describe()}: {free} bytes free, about {needed_bytes} needed"
                )

    def space(self) -> dict[str, int] | None:
        try:
            u = shutil.disk_usage(self.root)
        except OSError:
            return None
        return {"total": u.total, "used": u.used, "remaining": u.free}

    def _missing(self) -> DestinationError:
        return DestinationError(
            f"{self.describe()}: {self.root} does not exist or is not a directory: "
            "is the disk mounted? (a plain directory, not a mount point? create it: "
            f"install -d -m 0700 {self.root})"
        )

    def _dir(self, job: str, snapshot: str | None = None) -> Path:
        """``job`` is a series folder: ``HOST/SERIES`` (or ``SERIES``, the old layout)."""
        p = self.root.joinpath(*(_safe_component(c) for c in job.split("/")))
        return p / _safe_component(snapshot) if snapshot is not None else p

    def list_snapshot_dirs(self, job: str) -> list[str]:
        try:
            with os.scandir(self._dir(job)) as it:
                return sorted(e.name for e in it
                              if e.is_dir(follow_symlinks=False) and not e.name.startswith("."))
        except FileNotFoundError:
            # no folder for the job yet is an empty listing; a missing root is an unmounted
            # disk, and "no snapshots" would be a lie (the built-in destination is made on use)
            if not self.root.is_dir() and not self.create:
                raise self._missing() from None
            return []
        except OSError as e:
            raise DestinationError(
                f"{self.describe()}: cannot list {self._dir(job)}: {e.strerror}"
            ) from e

    def list_objects(self, job: str, snapshot: str) -> dict[str, StoredObject]:
        out: dict[str, StoredObject] = {}
        try:
            with os.scandir(self._dir(job, snapshot)) as it:
                for e in it:
                    if e.name.endswith(_TMP_SUFFIX) or not e.is_file(follow_symlinks=False):
                        continue
                    out[e.name] = StoredObject(e.name, e.stat(follow_symlinks=False).st_size)
        except FileNotFoundError:
            return {}
        return out

    def _target(self, job: str, snapshot: str, name: str) -> Path:
        d = self._dir(job, snapshot)
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        return d / _safe_component(name)

    @contextmanager
    def _atomic(self, job: str, snapshot: str, name: str) -> Iterator[Path]:
        """A temporary path to fill; on success it is renamed over the final name, durably.

        On failure the temporary file goes and a DestinationError says what failed.
        """
        final = self._target(job, snapshot, name)
        tmp = final.with_name(final.name + _TMP_SUFFIX)
        tmp.unlink(missing_ok=True)
        try:
            yield tmp
            os.replace(tmp, final)
            _fsync_dir(final.parent)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise DestinationError(f"{self.describe()}: writing {final}: {e.strerror or e}") from e

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
        with self._atomic(job, snapshot, name) as tmp:
            try:
                os.link(src, tmp)  # same filesystem: no copy at all
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
                shutil.copyfile(src, tmp)  # sendfile(2) underneath; keeps the 0600 file
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
            size = tmp.stat().st_size  # the same inode is renamed into place
        if progress:
            progress(size)
        return StoredObject(name, size)

    def put_bytes(self, job: str, snapshot: str, name: str, data: bytes) -> StoredObject:
        with self._atomic(job, snapshot, name) as tmp:
            with os.fdopen(
                os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600), "wb"
            ) as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        return StoredObject(name, len(data))

    def open_read(self, job: str, snapshot: str, name: str) -> BinaryIO:
        path = self._dir(job, snapshot) / _safe_component(name)
        try:
            return open(path, "rb")
        except FileNotFoundError as e:
            raise ObjectNotFound(f"{self.describe()}: {path} is missing") from e

    def read_range(self, job: str, snapshot: str, name: str, start: int, length: int) -> bytes:
        """One open, then pread(2): nothing before ``start`` is read."""
        if not check_range(start, length):
            return b""
        path = self._dir(job, snapshot) / _safe_component(name)
        try:
            with self.open_read(job, snapshot, name) as f:
                fd = f.fileno()
                data = read_exact(lambda at, n: os.pread(fd, n, at), start, length)
                size = os.fstat(fd).st_size if len(data) < length else None
        except OSError as e:
            raise DestinationError(f"{self.describe()}: reading {path}: {e.strerror or e}") from e
        return self.whole_range(data, str(path), start, length, size)

    def delete_snapshot(self, job: str, snapshot: str) -> None:
        d = self._dir(job, snapshot)
        # the manifest goes first: from then on the snapshot is incomplete, never half-listed
        try:
            (d / MANIFEST_NAME).unlink(missing_ok=True)
            _fsync_dir(d)
        except FileNotFoundError:
            return
        shutil.rmtree(d, ignore_errors=True)

    def list_root(self) -> list[str]:
        try:
            with os.scandir(self.root) as it:
                return sorted(e.name for e in it
                              if e.is_dir(follow_symlinks=False) and not e.name.startswith("."))
        except FileNotFoundError:
            raise self._missing() from None
        except OSError as e:
            raise DestinationError(
                f"{self.describe()}: cannot list {self.root}: {e.strerror}"
            ) from e

    def last_space(self) -> dict[str, int] | None:
        return self.space()  # a statvfs: as cheap as remembering
