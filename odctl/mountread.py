"""Member data for ``odctl mount``, read on from where an earlier read stopped.

``SnapshotView.open_member`` decodes from the start of the volume holding a member (a zstd
frame boundary) and skips to it: right for one file, but reading a directory of small
files in a 64 MiB volume decodes half the volume per file (bench/bench_mount.py measured
about 55 ms a file). Here a decoder is kept where its reader stopped (a few per mount,
:class:`Decoders`), and the next open at a later offset of the same volume, the usual case
(``cp -r``, ``tar``, ``rsync``, ``diff -r`` read in directory order, which is the archive's),
goes on from it: each byte of a volume is decoded about once for the whole run. A read at
an offset inside a file opens a decoder at the volume holding that byte (one volume
decoded at most, as ``view.read_member``), once the file's header has been read.

The checks are the view's (snapshot/view.py): volumes through its ``VolumeSource``
(verified), chain headers by ``PlainStream``, the member at the offset the index gives
must be the one it names and a regular file (or a hard link to one in the same archive).
Headers are parsed with tarfile's own ``TarInfo.fromtarfile`` on a cursor that knows
its exact position, so nothing past a header is consumed.
"""
from __future__ import annotations

import io
import tarfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from odbackupd.snapshot.restore import PlainStream
from odbackupd.snapshot.restore_errors import IntegrityError, RestoreError
from odbackupd.snapshot.view import Location, Node, SnapshotView, norm_path

KEEP = 4  # idle decoders kept per mount: each holds one volume in the cache


class _Cursor:
    """A snapshot's tar stream decoded from the start of one volume, now at offset ``pos``."""

    def __init__(self, view: SnapshotView, m, first: int) -> None:  # noqa: ANN001
        self.view, self.m = view, m
        src = view.source

        def volumes() -> Iterator[tuple[dict, Path]]:
            for vol in m.volumes[first:]:
                path = src.get(m, vol)
                try:
                    yield vol, path
                finally:
                    src.release(m, vol, path)

        self._raw = PlainStream(volumes(), view.identities, manifest=m, first=first)
        self._f = io.BufferedReader(self._raw, 1 << 16)  # type: ignore[arg-type]
        self.pos = int(m.volumes[first].get("tar_start", 0))
        self.broken = False  # an error was met: never read on from here

    # what tarfile.TarInfo.fromtarfile asks of a TarFile
    encoding = "utf-8"
    errors = "surrogateescape"

    @property
    def fileobj(self) -> _Cursor:
        return self

    def tell(self) -> int:
        return self.pos

    def read(self, n: int) -> bytes:
        try:
            b = self._f.read(n)
        except BaseException:
            self.broken = True
            raise
        self.pos += len(b)
        return b

    def skip(self, n: int) -> None:
        while n > 0:
            b = self.read(min(n, 1 << 20))
            if not b:
                self.broken = True
                raise IntegrityError(f"the archive of snapshot {self.m.snapshot} ends at offset "
                                     f"{self.pos}, "
                                     "before the member its index names")
            n -= len(b)

    def header(self) -> tarfile.TarInfo:
        self.pax_headers: dict = {}
        self.offset = self.pos
        try:
            return tarfile.TarInfo.fromtarfile(self)  # type: ignore[arg-type]
        except (tarfile.HeaderError, ValueError, OverflowError) as e:
            self.broken = True
            raise IntegrityError(f"snapshot {self.m.snapshot}: bad tar header at archive offset "
                                 f"{self.offset}: {e or type(e).__name__}") from None

    def close(self) -> None:
        self._raw.close()


class Decoders:
    """The idle decoders of a mount, least recently used first out (shared by its snapshots:
    each one holds a volume in the cache, so their number is bounded for the whole mount)."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._idle: OrderedDict[int, _Cursor] = OrderedDict()
        self._mu = threading.Lock()
        self.started = 0  # decoders started at a volume's start: what reading on saves

    def take(self, view: SnapshotView, m, first: int, target: int) -> _Cursor:  # noqa: ANN001
        """A decoder of ``m`` at ``target``: an idle one at or before it in the same volume
        (on from it costs no more than from the volume's start), else a new one."""
        start = int(m.volumes[first].get("tar_start", 0))
        cur = None
        with self._mu:
            for key, c in self._idle.items():
                if c.view is view and c.m.snapshot == m.snapshot and start <= c.pos <= target:
                    cur = self._idle.pop(key)
                    break
        if cur is None:
            cur = _Cursor(view, m, first)
            with self._mu:
                self.started += 1
        try:
            cur.skip(target - cur.pos)
        except BaseException:
            cur.close()
            raise
        return cur

    def put(self, cur: _Cursor) -> None:
        if cur.broken:
            cur.close()
            return
        with self._mu:
            self._idle[id(cur)] = cur
            extra = max(0, len(self._idle) - self.keep)
            old = [self._idle.popitem(last=False)[1] for _ in range(extra)]
        for c in old:
            c.close()

    def close(self) -> None:
        with self._mu:
            idle, self._idle = list(self._idle.values()), OrderedDict()
        for c in idle:
            c.close()


class _Data(io.RawIOBase):
    """A member's data from ``left`` bytes before its end; closing it hands the decoder back."""

    def __init__(self, pool: Decoders, cur: _Cursor, left: int) -> None:
        self._pool, self._cur, self.left = pool, cur, left

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # noqa: ANN001
        if self._cur is None or self.left <= 0:
            return 0
        data = self._cur.read(min(len(b), self.left))
        if not data:
            self._cur.broken = True
            raise IntegrityError(f"the archive of snapshot {self._cur.m.snapshot} ends inside a "
                                 "member")
        n = len(data)
        b[:n] = data
        self.left -= n
        return n

    def close(self) -> None:
        cur, self._cur = self._cur, None
        if cur is not None:
            self._pool.put(cur)  # where it stopped: the next open at or after it reads on
        super().close()


class MemberReader:
    """``open(node, offset)``: a regular file's data from ``offset``, for one snapshot's view."""

    def __init__(self, view: SnapshotView, pool: Decoders) -> None:
        self.view, self.pool = view, pool
        self._by_id = {m.snapshot: m for m in view.chain}
        self._spans: dict[str, tuple[str, int, int]] = {}  # path -> (snapshot, data offset, size)
        self._mu = threading.Lock()

    def _at(self, loc: Location, target: int) -> _Cursor:
        m = self._by_id[loc.snapshot]
        first = next(i for i, v in enumerate(m.volumes) if int(v.get("index", i + 1)) == loc.volume)
        return self.pool.take(self.view, m, first, target)

    def _member(self, path: str, loc: Location) -> tuple[_Cursor, tarfile.TarInfo]:
        cur = self._at(loc, loc.offset)
        try:
            ti = cur.header()
            if ti.name.strip("/") != path:
                raise IntegrityError(
                    f"the index of snapshot {loc.snapshot} puts {path} at archive offset "
                    f"{loc.offset}, where member {ti.name!r} is: refused (the index is damaged or "
                    "was written by someone else)")
        except BaseException:
            cur.close()
            raise
        return cur, ti

    def _open_header(self, node: Node) -> tuple[_Cursor, int]:
        """A decoder at the start of ``node``'s data (its header read and checked), its size."""
        target = self.view.lookup(node.hardlink) if node.hardlink is not None else node
        if target is None:
            raise IntegrityError(f"{node.path} is a hard link to {node.hardlink}, which the "
                                 "snapshot lacks")
        loc = self.view.location(target)
        cur, ti = self._member(target.path, loc)
        if ti.islnk():  # the data is under the name the archive met first
            self.pool.put(cur)
            name = norm_path(ti.linkname)
            first = self.view.lookup(name)
            floc = self.view.location(first) if first is not None and first.type == "f" else None
            if floc is None or floc.snapshot != loc.snapshot:
                raise IntegrityError(f"{node.path} is a hard link to {ti.linkname}, which is not "
                                     "in the same archive")
            cur, ti = self._member(name, floc)
            loc = floc
        if not ti.isreg():
            cur.close()
            raise IntegrityError(f"{node.path}: the archive holds a {ti.type!r} member where the "
                                 "index has a file")
        with self._mu:
            self._spans[node.path] = (loc.snapshot, cur.pos, ti.size)
        return cur, ti.size

    def open(self, node: Node, offset: int = 0) -> BinaryIO:
        if node.type != "f":
            raise RestoreError(f"{node.path} is not a regular file")
        span = self._spans.get(node.path)
        if span is None or offset == 0:
            cur, size = self._open_header(node)
            if offset:
                try:
                    cur.skip(min(offset, size))
                except BaseException:
                    cur.close()
                    raise
        else:  # the header was read before: straight to the volume holding the byte
            snapshot, data, size = span
            offset = min(offset, size)
            cur = self._at(self.view.location_at(snapshot, data + offset), data + offset)
        return io.BufferedReader(_Data(self.pool, cur, size - min(offset, size)), 1 << 16)  # type: ignore[return-value]
