"""Member data for ``odctl mount``, read on from where the last member ended.

``SnapshotView.open_member`` decodes from the start of the volume holding a member (a zstd
frame boundary) and skips to it: right for one file, but reading a directory of small
files in a 64 MiB volume decodes half the volume per file (bench/bench_mount.py measured
about 55 ms a file). Here a decoder left at the end of the member just read is kept (a few
per snapshot), and the next open at a later offset of the same volume, the usual case
(``cp -r``, ``tar``, ``rsync``, ``diff -r`` read in directory order, which is the archive's),
goes on from it: each byte of a volume is decoded once for the whole run.

The checks are the view's (snapshot/view.py): volumes through its ``VolumeSource``
(verified), chain headers by ``PlainStream``, the member at the offset the index gives
must be the one it names and a regular file (or a hard link to one in the same archive).
Headers are parsed with tarfile's own ``TarInfo.fromtarfile`` on a cursor that knows
its exact position, so nothing past a member's data is consumed.
"""
from __future__ import annotations

import io
import tarfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO, Iterator

from odbackupd.snapshot.restore import PlainStream
from odbackupd.snapshot.restore_errors import IntegrityError, RestoreError
from odbackupd.snapshot.view import Location, Node, SnapshotView, norm_path

KEEP = 4  # idle decoders kept per snapshot
SKIP_ON_CLOSE = 4 << 20  # a member closed early: read on to its end if at most this is left


class _Cursor:
    """A snapshot's tar stream decoded from the start of one volume, at offset ``pos``."""

    def __init__(self, view: SnapshotView, m, first: int) -> None:  # noqa: ANN001
        self.m = m
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
        self.start = int(m.volumes[first].get("tar_start", 0))
        self.pos = self.start

    # what tarfile.TarInfo.fromtarfile asks of a TarFile
    encoding = "utf-8"
    errors = "surrogateescape"

    @property
    def fileobj(self) -> "_Cursor":
        return self

    def tell(self) -> int:
        return self.pos

    def read(self, n: int) -> bytes:
        b = self._f.read(n)
        self.pos += len(b)
        return b

    def skip(self, n: int) -> None:
        while n > 0:
            b = self.read(min(n, 1 << 20))
            if not b:
                raise IntegrityError(f"the archive of snapshot {self.m.snapshot} ends at offset {self.pos}, "
                                     "before the member its index names")
            n -= len(b)

    def header(self) -> tarfile.TarInfo:
        self.pax_headers: dict = {}
        self.offset = self.pos
        try:
            return tarfile.TarInfo.fromtarfile(self)  # type: ignore[arg-type]
        except (tarfile.HeaderError, ValueError, OverflowError) as e:
            raise IntegrityError(f"snapshot {self.m.snapshot}: bad tar header at archive offset "
                                 f"{self.offset}: {e or type(e).__name__}") from None

    def close(self) -> None:
        self._raw.close()


class _Data(io.RawIOBase):
    """One member's data; closing it hands the cursor back (at the next member)."""

    def __init__(self, pool: "MemberReader", cur: _Cursor, size: int) -> None:
        self._pool, self._cur, self.left, self.pad = pool, cur, size, -size % tarfile.BLOCKSIZE

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # noqa: ANN001
        if self._cur is None or self.left <= 0:
            return 0
        data = self._cur.read(min(len(b), self.left))
        if not data:
            raise IntegrityError(f"the archive of snapshot {self._cur.m.snapshot} ends inside a member")
        n = len(data)
        b[:n] = data
        self.left -= n
        return n

    def close(self) -> None:
        cur, self._cur = self._cur, None
        if cur is not None:
            try:
                if self.left <= SKIP_ON_CLOSE:
                    cur.skip(self.left + self.pad)
                    self._pool.put(cur)
                    cur = None
            except Exception:  # noqa: BLE001 - damage or a lost volume: this decoder is done
                pass
            finally:
                if cur is not None:
                    cur.close()
        super().close()


class MemberReader:
    """``open(node)``: a regular file's data, from a kept decoder when one is at or before it."""

    def __init__(self, view: SnapshotView) -> None:
        self.view = view
        self._by_id = {m.snapshot: m for m in view.chain}
        self._idle: OrderedDict[int, _Cursor] = OrderedDict()  # id(cursor): least recently used first
        self._mu = threading.Lock()
        self._loc_mu = threading.Lock()  # the view loads an older index's locations on first use
        self.decoders = 0  # decoders started (at a volume's start): what reading on saves

    def location(self, node: Node) -> Location:
        with self._loc_mu:
            return self.view.location(node)

    def _cursor(self, loc: Location) -> _Cursor:
        m = self._by_id[loc.snapshot]
        first = next(i for i, v in enumerate(m.volumes) if int(v.get("index", i + 1)) == loc.volume)
        start = int(m.volumes[first].get("tar_start", 0))
        with self._mu:
            for key, cur in self._idle.items():  # on from it costs no more than from the volume's start
                if cur.m.snapshot == loc.snapshot and start <= cur.pos <= loc.offset:
                    del self._idle[key]
                    break
            else:
                cur = None
        if cur is None:
            cur = _Cursor(self.view, m, first)
            self.decoders += 1
        try:
            cur.skip(loc.offset - cur.pos)
        except BaseException:
            cur.close()
            raise
        return cur

    def put(self, cur: _Cursor) -> None:
        with self._mu:
            self._idle[id(cur)] = cur
            mine = [k for k, c in self._idle.items() if c.m.snapshot == cur.m.snapshot]
            old = [self._idle.pop(k) for k in mine[: max(0, len(mine) - KEEP)]]
        for c in old:
            c.close()

    def _member(self, node: Node) -> tuple[_Cursor, tarfile.TarInfo]:
        loc = self.location(node)
        cur = self._cursor(loc)
        try:
            ti = cur.header()
            if ti.name.rstrip("/") != node.path:
                raise IntegrityError(
                    f"the index of snapshot {loc.snapshot} puts {node.path} at archive offset {loc.offset}, "
                    f"where member {ti.name!r} is: refused (the index is damaged or was written by someone else)")
        except BaseException:
            cur.close()
            raise
        return cur, ti

    def open(self, node: Node) -> BinaryIO:
        if node.type != "f":
            raise RestoreError(f"{node.path} is not a regular file")
        if node.hardlink is not None:  # a streamed view knows the name the data is under
            target = self.view.lookup(node.hardlink)
            if target is None:
                raise IntegrityError(f"{node.path} is a hard link to {node.hardlink}, which the snapshot lacks")
            node = target
        cur, ti = self._member(node)
        if ti.islnk():
            cur.close()
            target = self.view.lookup(norm_path(ti.linkname))
            if target is None or target.type != "f" or self.location(target).snapshot != self.location(node).snapshot:
                raise IntegrityError(f"{node.path} is a hard link to {ti.linkname}, which is not in the same archive")
            cur, ti = self._member(target)
        if not ti.isreg():
            cur.close()
            raise IntegrityError(f"{node.path}: the archive holds a {ti.type!r} member where the index has a file")
        return io.BufferedReader(_Data(self, cur, ti.size), 1 << 16)  # type: ignore[return-value]

    def close(self) -> None:
        with self._mu:
            idle, self._idle = list(self._idle.values()), OrderedDict()
        for c in idle:
            c.close()
