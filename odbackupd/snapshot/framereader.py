"""A stretch of a snapshot's tar stream read frame by frame: only the frames that hold it.

A volume built with a frame table (frames.py) is a sequence of independent zstd frames, so
the members from tar offset ``start`` to ``end`` are in the frames from the one holding
``start`` to the one holding ``end - 1``: those are fetched as byte ranges of the stored
volumes (``FrameSource.frames``: checked against the index, which the manifest pins),
decompressed one by one and cut to the stretch. What a one-file ``odctl restore --path``
downloads is then about one frame's compressed bytes (a few MiB), not a 64 MiB volume.
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Sequence
from typing import Protocol

import zstandard

from .frames import FrameTable
from .manifest import Manifest
from .restore_errors import IntegrityError
from .volumes import volume_number

# compressed bytes per ranged read at most: a long stretch (a directory's files) is read in
# a few requests, in memory one batch at a time
BATCH = 8 << 20


class FrameSource(Protocol):
    def frames(self, m: Manifest, vol: dict, table: FrameTable, first: int, last: int,
               identities: Sequence[object] | None) -> list[bytes]:
        """The compressed bytes of frames ``first``..``last`` of volume ``vol``, one item
        per frame, each checked (its SHA-256, or the volume's pinned age header)."""


def tables(m: Manifest, header: dict) -> dict[str, FrameTable] | None:
    """Every volume's frame table from an index header (None: the snapshot's volumes were
    built as one frame each, or the header's table is incomplete). ValueError for a table
    that does not read."""
    raw = header.get("frames")
    if not isinstance(raw, dict):
        return None
    out: dict[str, FrameTable] = {}  # by volume name
    for i, v in enumerate(m.volumes):
        number = volume_number(str(v.get("name"))) or i + 1
        d = raw.get(str(number))
        if not isinstance(d, dict):
            return None
        t = FrameTable.from_json(d, int(v.get("tar_start", 0)))
        if t.tar_end != int(v.get("tar_end", t.tar_end)):
            raise ValueError(f"the frames of volume {number} do not end where the volume does")
        out[v["name"]] = t
    return out


class FrameStream(io.RawIOBase):
    """The tar stream of ``m`` from offset ``start`` to ``end`` (None: the archive's end)."""

    def __init__(self, m: Manifest, volumes: Sequence[dict], tables: dict[str, FrameTable],
                 source: FrameSource, identities: Sequence[object] | None, start: int,
                 end: int | None) -> None:
        self.m, self.source, self.tables, self.identities = m, source, tables, identities
        self.end = end
        self._vols = [v for v in volumes if int(v["tar_end"]) > start]
        self._vi = 0  # the volume being read (in _vols)
        t = self._table(0)
        self._next_frame = t.first_at(start) if t is not None else 0
        self._skip = start - t.frames[self._next_frame].tar_start if t is not None else 0
        self._batch: deque[tuple[bytes, int]] = deque()  # (frame bytes, tar_len)
        self._out = b""
        self._pos = 0
        self._dctx = zstandard.ZstdDecompressor()

    def readable(self) -> bool:
        return True

    def _table(self, vi: int) -> FrameTable | None:
        if vi >= len(self._vols):
            return None
        v = self._vols[vi]
        return self.tables[v["name"]]

    def _fetch(self) -> bool:
        """The next batch of frames this stretch needs; False when none is left."""
        while True:
            t = self._table(self._vi)
            if t is None:
                return False
            if self._next_frame < len(t.frames):
                break
            self._vi, self._next_frame = self._vi + 1, 0
        if self.end is not None and t.frames[self._next_frame].tar_start >= self.end:
            return False
        last = self._next_frame
        size = t.frames[last].z_len
        while last + 1 < len(t.frames):
            f = t.frames[last + 1]
            if (self.end is not None and f.tar_start >= self.end) or size + f.z_len > BATCH:
                break
            last += 1
            size += f.z_len
        vol = self._vols[self._vi]
        got = self.source.frames(self.m, vol, t, self._next_frame, last, self.identities)
        for k, z in zip(range(self._next_frame, last + 1), got, strict=True):
            self._batch.append((z, t.frames[k].tar_len))
        self._next_frame = last + 1
        return True

    def _next(self) -> bool:
        if not self._batch and not self._fetch():
            return False
        z, tar_len = self._batch.popleft()
        vol = self._vols[self._vi]["name"]
        try:
            out = self._dctx.decompress(z, max_output_size=tar_len)
        except zstandard.ZstdError as e:
            raise IntegrityError(f"{self.m.snapshot}/{vol}: a frame does not decompress ({e})"
                                 ) from e
        if len(out) != tar_len:
            raise IntegrityError(f"{self.m.snapshot}/{vol}: a frame holds {len(out)} tar bytes, "
                                 f"the index says {tar_len}")
        self._out, self._pos = out, self._skip
        self._skip = 0
        return True

    def readinto(self, b) -> int:  # noqa: ANN001 - a writable buffer
        while self._pos >= len(self._out):
            if not self._next():
                return 0
        n = min(len(b), len(self._out) - self._pos)
        b[:n] = self._out[self._pos : self._pos + n]
        self._pos += n
        return n
