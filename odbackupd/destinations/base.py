"""The small interface every destination meets.

A destination stores snapshot folders: ``<host>/<series>/<snapshot-id>/`` holding volume
files (``vol.000001.zst[.age]`` …) and ``manifest.json``, which is always written last. A
folder without a manifest is an incomplete snapshot and is never listed as one. The
methods' ``job`` argument is the series folder, ``HOST/SERIES`` (snapshot/catalog.py's
``series_folder``), or ``SERIES`` for snapshots of the layout before 0.2.

Destinations are used from worker threads; every method may block.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..config.destkinds import Capabilities

MANIFEST_NAME = "manifest.json"


class DestinationError(Exception):
    """A destination could not do what was asked; the message is meant for a sysadmin."""


class ObjectNotFound(DestinationError):
    pass


class NotLoggedIn(DestinationError):
    """The destination's account needs ``odctl login`` (logged as MESSAGE_ID login-needed).
    ``account``: the name of its ``[account.NAME]``."""

    def __init__(self, message: str, *, account: str | None = None) -> None:
        super().__init__(message)
        self.account = account


@dataclass(frozen=True)
class StoredObject:
    """What a destination says it holds for one file."""

    name: str
    size: int
    sha256: str | None = None  # lower-case hex, when the destination knows it
    quickxor: str | None = None  # base64 quickXorHash, when the destination reports one


@dataclass(frozen=True)
class Expected:
    """What the uploader knows about a file it hands over (for verification)."""

    size: int
    sha256: str
    quickxor: str | None  # None: a manifest entry without one (destinations/compare.py)


ProgressFn = Callable[[int], None]  # called with bytes newly stored


def check_range(start: int, length: int) -> bool:
    """Whether ``read_range`` has anything to read (``length`` > 0); ValueError for a negative
    ``start`` or ``length`` (a caller's mistake, not bad data)."""
    if start < 0 or length < 0:
        raise ValueError(f"invalid byte range: start {start}, length {length}")
    return length > 0


def read_exact(read_at: Callable[[int, int], bytes], start: int, length: int) -> bytes:
    """``length`` bytes from ``start`` through ``read_at(offset, n)``, which may return fewer
    than ``n`` (``b""`` at the end): fewer only when the data ends first."""
    parts: list[bytes] = []
    have = 0
    while have < length:
        data = read_at(start + have, length - have)
        if not data:
            break
        parts.append(data)
        have += len(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)


class Destination(ABC):
    """One configured place snapshots go to."""

    kind: str = "?"
    #: What this kind can do: its registry entry's (config/destkinds.py).
    capabilities: Capabilities = Capabilities()

    @property
    def reports_hashes(self) -> bool:
        """Whether list_objects reports hashes of what is stored (OneDrive's quickXorHash), so
        verify can trust them without reading anything back; False: verify reads the data."""
        return bool(self.capabilities.hashes)

    def __init__(self, name: str) -> None:
        self.name = name

    def prepare(self, needed_bytes: int | None = None) -> None:
        """Check the destination is usable before a run (reachable, writable, quota)."""
        return None  # optional, not abstract: a kind with nothing to check keeps this no-op

    @abstractmethod
    def list_snapshot_dirs(self, job: str) -> list[str]:
        """Names of every snapshot folder of ``job``, complete or not."""

    @abstractmethod
    def list_objects(self, job: str, snapshot: str) -> dict[str, StoredObject]:
        """The files inside one snapshot folder ({} when the folder does not exist)."""

    @abstractmethod
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
        """Store ``src`` as ``job/snapshot/name``; return what the destination then holds.

        Must be idempotent: calling it again after an interruption resumes or replaces.
        """

    @abstractmethod
    def put_bytes(self, job: str, snapshot: str, name: str, data: bytes) -> StoredObject:
        """Store a small file atomically (the manifest)."""

    @abstractmethod
    def open_read(self, job: str, snapshot: str, name: str) -> BinaryIO:
        """A readable binary stream of one stored file."""

    @abstractmethod
    def delete_snapshot(self, job: str, snapshot: str) -> None:
        """Remove a snapshot folder and everything in it."""

    def space(self) -> dict[str, int] | None:
        """What the destination holds and has left, in bytes: ``total``, ``used``,
        ``remaining`` and, where deleted data still counts (OneDrive's recycle bin),
        ``deleted``; None when unknown."""
        return None

    def read_bytes(self, job: str, snapshot: str, name: str) -> bytes:
        with self.open_read(job, snapshot, name) as f:
            return f.read()

    def read_range(self, job: str, snapshot: str, name: str, start: int, length: int) -> bytes:
        """Exactly ``length`` bytes of a stored file from byte ``start`` (one frame of a
        volume, issue 11), or a DestinationError naming the file when the range goes past its
        end; ``length`` 0 is ``b""`` without asking the destination. This default reads
        through ``open_read`` (seeking where the stream can, else reading past what comes
        first); kinds override it to transfer the range only."""
        if not check_range(start, length):
            return b""
        with self.open_read(job, snapshot, name) as f:
            if f.seekable():
                f.seek(start)
            else:
                left = start
                while left and (got := f.read(min(left, 1 << 20))):
                    left -= len(got)
            data = read_exact(lambda _at, n: f.read(n), start, length)
        return self.whole_range(data, f"{job}/{snapshot}/{name}", start, length)

    def whole_range(self, data: bytes, what: str, start: int, length: int,
                    size: int | None = None) -> bytes:
        """``data`` if it is the ``length`` bytes asked for; else the error ``read_range``
        raises for a range past the end of ``what`` (holding ``size`` bytes, when known)."""
        if len(data) == length:
            return data
        held = (f"it holds {size} bytes" if size is not None
                else f"only {len(data)} of them are there")
        raise DestinationError(
            f"{self.describe()}: {what}: bytes {start}-{start + length - 1} asked for, but "
            f"{held}: the range is beyond its end (is the index out of step with the volume?)")

    def list_root(self) -> list[str]:
        """Folders at the destination's top: one per host (and the series folders of the
        layout before 0.2). For ``odctl fleet-status``, which reads every host's snapshots."""
        raise DestinationError(f"{self.describe()}: cannot list its hosts")

    def last_space(self) -> dict[str, int] | None:
        """``space()`` as last seen, without a request (for the metrics after a run)."""
        return None

    def close(self) -> None:
        """Release sessions and connections."""
        return None  # optional, not abstract: a kind that holds no connections keeps this no-op

    def describe(self) -> str:
        return f"{self.kind} destination {self.name!r}"
