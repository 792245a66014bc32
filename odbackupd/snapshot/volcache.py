"""A bounded on-disk cache of fetched, verified volumes (what ``odctl mount`` reads through).

Each volume is fetched once into the cache directory (a file 0600 in a directory 0700),
its size and SHA-256 checked against the manifest while it streams in; a volume that does
not match is deleted and the read fails (:class:`IntegrityError`), it is never served. The
cache holds volumes as stored (still compressed, and still encrypted for an encrypted job):
no plaintext reaches the disk. When the volumes held exceed ``limit`` bytes, the least
recently used ones that no reader holds are deleted; a volume being read is never deleted
under its reader, so the cache may briefly exceed ``limit`` by the volumes in use.

The directory is removed by :meth:`VolumeCache.close`. A cache left behind by a killed
process is removed by the next one made under the same parent: each cache holds an
``flock`` on its ``lock`` file for its lifetime (:func:`remove_stale`).
"""
from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..destinations.base import Destination, ObjectNotFound
from .chainrestore import fetch_index
from .manifest import Manifest
from .restore import _hash_stream, check_volume
from .restore_errors import IntegrityError

LOCK_NAME = "lock"


@dataclass
class CacheStats:
    fetched: int = 0  # volumes downloaded
    fetched_bytes: int = 0
    hits: int = 0  # served from the cache
    indexes: int = 0  # indexes downloaded
    evicted: int = 0


class _Slot:
    def __init__(self) -> None:
        self.ready = threading.Event()
        self.path: Path | None = None
        self.size = 0
        self.error: BaseException | None = None
        self.users = 0


def remove_stale(parent: Path) -> list[Path]:
    """Delete the caches under ``parent`` whose process has gone (their lock is free)."""
    removed = []
    try:
        entries = list(parent.iterdir())
    except FileNotFoundError:
        return removed
    for d in entries:
        lock = d / LOCK_NAME
        try:
            fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue  # not a cache of ours (or being created right now): left alone
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # held: a live mount
        finally:
            os.close(fd)
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


class VolumeCache:
    """A :class:`~.view.VolumeSource`: ``get(manifest, vol)`` the verified local copy of
    ``vol``, ``release(...)`` when read; ``index(manifest, identities)``."""

    def __init__(self, dest: Destination, parent: Path, limit: int) -> None:
        self.dest = dest
        self.limit = limit
        parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        remove_stale(parent)
        self.dir = Path(tempfile.mkdtemp(prefix="cache-", dir=parent))  # 0700
        # locked before it has its name: another process's remove_stale never sees it free
        self._lock_fd = os.open(self.dir / "lock.new", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        os.rename(self.dir / "lock.new", self.dir / LOCK_NAME)
        self._mu = threading.Lock()
        # least recently used first
        self._slots: OrderedDict[tuple[str, str], _Slot] = OrderedDict()
        self.stats = CacheStats()
        self._index_mu = threading.Lock()
        self._indexes: dict[str, Path] = {}
        self._closed = False

    @property
    def held_bytes(self) -> int:
        with self._mu:
            return sum(s.size for s in self._slots.values() if s.path is not None)

    def get(self, m: Manifest, vol: dict) -> Path:
        """The verified local copy of ``vol`` (fetched if the cache lacks it); held, never
        evicted, until :meth:`release`."""
        key = (m.snapshot, vol["name"])
        with self._mu:
            if self._closed:
                raise IntegrityError("the volume cache is closed (unmounting)")
            slot = self._slots.get(key)
            mine = slot is None
            if mine:
                slot = self._slots[key] = _Slot()
            else:
                self._slots.move_to_end(key)
            slot.users += 1
        try:
            if mine:
                self._fetch(m, vol, slot)
            else:
                slot.ready.wait()
                if slot.error is None:
                    with self._mu:
                        self.stats.hits += 1
            if slot.error is not None:
                raise slot.error
        except BaseException:
            self._unpin(key, slot)
            raise
        assert slot.path is not None
        return slot.path

    def release(self, m: Manifest, vol: dict, path: Path) -> None:
        key = (m.snapshot, vol["name"])
        with self._mu:
            slot = self._slots.get(key)
        if slot is not None and slot.path == path:
            self._unpin(key, slot)

    def _unpin(self, key: tuple[str, str], slot: _Slot) -> None:
        with self._mu:
            slot.users -= 1
            if slot.error is not None and slot.users == 0 and self._slots.get(key) is slot:
                del self._slots[key]  # the next reader tries again
            self._evict()

    @property
    def in_use(self) -> int:
        """Volumes a reader holds now."""
        with self._mu:
            return sum(1 for s in self._slots.values() if s.users)

    def index(self, m: Manifest, identities: Sequence[object] | None) -> Path:
        """``m``'s index as compressed plain text (fetched once, checked against the manifest;
        small, so never evicted)."""
        with self._index_mu:
            p = self._indexes.get(m.snapshot)
            if p is None:
                p = fetch_index(self.dest, m, identities, self.dir, plain=f"{m.snapshot}.plain.zst")
                for f in self.dir.glob(f"{m.snapshot}.*"):  # the raw object too; names are private
                    f.chmod(0o600)
                self._indexes[m.snapshot] = p
                self.stats.indexes += 1
            return p

    def _fetch(self, m: Manifest, vol: dict, slot: _Slot) -> None:
        path = self.dir / f"{m.snapshot}.{vol['name']}"
        try:
            try:
                src = self.dest.open_read(m.location, m.snapshot, vol["name"])
            except ObjectNotFound as e:  # the manifest lists it: the snapshot is damaged
                raise IntegrityError(f"{m.snapshot}/{vol['name']} is missing ({e})") from e
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with src, open(fd, "wb") as out:
                size, sha, _ = _hash_stream(src, out)
            try:
                check_volume(vol, size, sha)
            except IntegrityError as e:
                raise IntegrityError(f"{m.snapshot}/{e}") from None
            slot.path, slot.size = path, size
            with self._mu:
                self.stats.fetched += 1
                self.stats.fetched_bytes += size
                self._evict()  # room for it: the least recently used that no one reads go
        except BaseException as e:
            path.unlink(missing_ok=True)
            slot.error = e
            raise
        finally:
            slot.ready.set()

    def _evict(self) -> None:
        """Least recently used first, never a volume in use; with ``self._mu`` held."""
        total = sum(s.size for s in self._slots.values() if s.path is not None)
        for key in list(self._slots):
            if total <= self.limit:
                break
            s = self._slots[key]
            if s.users or s.path is None:
                continue
            s.path.unlink(missing_ok=True)
            total -= s.size
            del self._slots[key]
            self.stats.evicted += 1

    def close(self) -> None:
        with self._mu:
            self._closed = True
        shutil.rmtree(self.dir, ignore_errors=True)
        os.close(self._lock_fd)
