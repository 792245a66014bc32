"""Volumes: the tar stream cut into files of about ``volume_size`` bytes.

Each volume is a complete file on its own: its plaintext is whole, independent zstd frames
of about ``FRAME_SIZE`` tar bytes each (frames.py: a reader can start at any of them) and,
for an encrypted job, it is one age file. So the volumes of a snapshot restore with
standard tools, in name order: ``for v in vol.*; do age -d -i key "$v"; done | zstd -d |
tar -x``.

Why ~410 lines: the stages of one volume (compressed frames → hand-off thread → age →
hashed file) and the record they produce (``VolumeInfo``) are one contract, measured
together (bench/bench_snapshot.py); the compressor's pool is compressor.py.
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..destinations.base import Expected, StoredObject
from ..destinations.compare import matches
from ..hashes import QuickXorHash
from .compressor import Collect, FrameCompressor
from .frames import FRAME_SIZE, Frame, FrameTable

VOLUME_DIGITS = 6


def volume_name(index: int, encrypted: bool) -> str:
    """``vol.000001.zst`` or ``vol.000001.zst.age``: zero-padded so ``vol.*`` sorts right."""
    return f"vol.{index:0{VOLUME_DIGITS}d}.zst" + (".age" if encrypted else "")


_VOLUME_NAME = re.compile(r"vol\.(\d+)\.zst(?:\.age)?")


def volume_number(name: str) -> int | None:
    """The number a :func:`volume_name` names (``vol.000012.zst.age`` → 12); None for any
    other name."""
    m = _VOLUME_NAME.fullmatch(name)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class VolumeInfo:
    index: int
    name: str
    size: int
    sha256: str
    quickxor: str
    tar_start: int  # offset of the volume's first plaintext byte in the tar stream
    tar_end: int
    # where its zstd frames are (frames.FrameTable.to_json); None: built by a version that
    # wrote one frame per volume. Goes to the index, not to the manifest (frames.py).
    frames: dict | None = None

    def to_json(self) -> dict:
        d = {
            "index": self.index, "name": self.name, "size": self.size, "sha256": self.sha256,
            "quickxor": self.quickxor, "tar_start": self.tar_start, "tar_end": self.tar_end,
        }
        if self.frames is not None:
            d["frames"] = self.frames
        return d

    @classmethod
    def from_json(cls, d: dict) -> VolumeInfo:
        return cls(**{k: d[k] for k in ("index", "name", "size", "sha256", "quickxor",
                                        "tar_start", "tar_end")}, frames=d.get("frames"))

    def expected(self) -> Expected:
        """What a destination's copy of this volume must be (``destinations.compare``)."""
        return Expected(self.size, self.sha256, self.quickxor)

    def stored_as(self, obj: StoredObject | None) -> bool:
        """A destination's object (None: it has none) is this volume."""
        return matches(obj, self.expected())


class HashedFile:
    """The last stage: the bytes as stored, written to the spool file while their SHA-256,
    quickXorHash (if asked) and size are taken."""

    def __init__(self, f: BinaryIO, quickxor: bool) -> None:
        self.f = f
        self.sha = hashlib.sha256()
        self.qx = QuickXorHash() if quickxor else None
        self.size = 0

    def write(self, b) -> int:  # noqa: ANN001 - bytes-like
        self.f.write(b)
        self.sha.update(b)
        if self.qx is not None:
            self.qx.update(b)
        self.size += len(b)
        return len(b)

    @property
    def quickxor(self) -> str:
        """Base64 quickXorHash of the file ("" when not asked for)."""
        return self.qx.b64digest() if self.qx is not None else ""

    def flush(self) -> None:
        pass


class Encryptor:
    """The middle stage of an encrypted volume: age-encrypts the compressed bytes to the
    recipients, hashes them as they are before encryption (the next volume's chain header
    names that digest) and hands the ciphertext on in one piece per write.

    age seals 64 KiB chunks; writing, hashing and quickXor-folding each on its own cost
    more than encrypting it, so the chunks of one write are joined first (measured: the
    writer thread's CPU time for 320 MiB fell from 1.23 to 1.10 s).
    """

    def __init__(self, out: HashedFile, recipients: Sequence[object]) -> None:
        from ..crypto.age import AgeWriter

        self._out = out
        self._parts: list[bytes] = []
        self._age = AgeWriter(Collect(self._parts), list(recipients))
        self.prefix = self._age.prefix  # the age header and payload nonce (frames.py pins it)
        self.plain = hashlib.sha256()

    def write(self, b) -> int:  # noqa: ANN001 - bytes-like
        self.plain.update(b)
        self._age.write(b)
        self._pass_on()
        return len(b)

    def _pass_on(self) -> None:
        parts = self._parts
        if parts:
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            parts.clear()
            self._out.write(data)

    def close(self) -> None:
        """The final STREAM chunk: the age file is complete."""
        self._age.close()
        self._pass_on()


class HandOff:
    """Runs a stage (``Encryptor`` or ``HashedFile``) in a thread of its own, the
    "volume-writer", so encryption, hashing and writing overlap with reading and
    compressing instead of adding to them.

    The hand-over is bounded in bytes, not buffers: a whole frame's output comes at once,
    and a short queue would stall the thread that feeds the compressor, leaving its
    workers idle. (Splitting hashing and writing into two threads
    was measured too: no gain.) An error of the stage is raised in the caller's thread at
    its next call.
    """

    # bytes in flight at most: bounded memory. One frame's output still fits: the
    # limit is checked before a piece is queued. 4 MiB instead of 8: 7 MB less peak RSS
    # (94 → 87 MB on the 1.1 GB bench tree), no slower within the noise of a loaded machine.
    LIMIT = 4 << 20

    def __init__(self, stage: HashedFile | Encryptor) -> None:
        self._stage = stage
        self.size = 0  # bytes taken (for a volume: compressed, before encryption)
        self._items: deque = deque()
        self._inflight = 0
        self._cond = threading.Condition(threading.Lock())
        self._err: BaseException | None = None
        self._t = threading.Thread(target=self._run, name="volume-writer", daemon=True)
        self._t.start()

    def _run(self) -> None:
        write = self._stage.write
        cond, items = self._cond, self._items
        while True:
            with cond:
                while not items:
                    cond.wait()
                b = items.popleft()
            if b is None:
                return
            try:
                if self._err is None:
                    write(b)
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                self._err = e
            with cond:
                self._inflight -= len(b)
                cond.notify_all()

    def _put(self, b: bytes | None) -> None:
        with self._cond:
            while self._inflight > self.LIMIT and self._err is None:
                self._cond.wait()
            self._items.append(b)
            if b is not None:
                self._inflight += len(b)
            self._cond.notify_all()

    def write(self, b) -> int:  # noqa: ANN001 - bytes-like
        if self._err is not None:
            raise self._err
        if type(b) is not bytes:
            b = bytes(b)  # the caller may reuse its buffer
        self._put(b)
        self.size += len(b)
        return len(b)

    def flush(self) -> None:
        pass

    def drain(self) -> None:
        """Wait until the stage has taken everything written so far."""
        with self._cond:
            while self._inflight > 0 and self._err is None:
                self._cond.wait()
            if self._err is not None:
                raise self._err

    def close(self) -> None:
        """Wait until the stage has taken everything, then stop the thread."""
        self._put(None)
        self._t.join()
        if self._err is not None:
            raise self._err

    def abort(self) -> None:
        """Stop the thread; what was written is incomplete."""
        self._err = self._err or RuntimeError("volume aborted")
        self._put(None)
        self._t.join()


class VolumeWriter:
    """Builds one volume in the spool: tar bytes in, a finished file out."""

    def __init__(
        self,
        spool: Path,
        index: int,
        tar_start: int,
        comp: FrameCompressor,
        recipients: Sequence[object] = (),
        quickxor: bool = True,
        header: bytes = b"",
    ) -> None:
        """``header``: bytes put before the compressed data (a skippable frame, chain.py).
        ``quickxor``: compute the volume's quickXorHash, which only OneDrive reports
        (``Destination.reports_hashes``)."""
        self.index = index
        self.name = volume_name(index, bool(recipients))
        self.path = spool / self.name
        self.tmp = spool / (self.name + ".part")
        self.tar_start = tar_start
        self.tar_bytes = 0
        self._comp = comp
        self._buf: bytearray | None = None  # the frame being gathered (a ring buffer)
        self._fill = 0
        self._pending: deque[tuple[Future, bool]] = deque()  # frames being compressed, in order
        self._pending_tar = 0
        self._frames: list[Frame] = []
        self._z = len(header)  # where the next frame starts in the plaintext
        self._t = tar_start  # and in the tar stream
        self._ended = False
        # 0600: an unencrypted volume holds whatever the sources hold (/etc/shadow, keys)
        self._f = os.fdopen(
            os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600), "wb"
        )
        # compress (the frame workers) → hand off → [encrypt →] write and hash the stored bytes
        self._file = HashedFile(self._f, quickxor)
        self._enc = Encryptor(self._file, recipients) if recipients else None
        self._handoff = HandOff(self._enc or self._file)
        if header:
            with self._naming_errors():
                self._handoff.write(header)

    def write(self, data: bytes) -> None:
        n = len(data)
        if self._buf is not None and self._fill + n > len(self._buf):
            self._submit()
            with self._naming_errors():
                self._collect(self._comp.workers)  # a ring buffer is free again
        if self._buf is None:
            self._buf = self._comp.buffer()
        if n > len(self._buf):  # bigger than a frame buffer: a frame of its own
            self._comp.done(self._buf)
            self._buf = bytearray(data)
            self._fill = n
            self._submit(own=True)
        else:
            self._buf[self._fill : self._fill + n] = data
            self._fill += n
            if self._fill >= FRAME_SIZE:
                self._submit()
        self.tar_bytes += n
        with self._naming_errors():
            self._collect(self._comp.workers)

    def _submit(self, own: bool = False) -> None:
        """Hand the gathered frame to a worker (``own``: a buffer not of the ring)."""
        buf, n = self._buf, self._fill
        self._buf, self._fill = None, 0
        self._pending.append((self._comp.submit(buf, n, self._enc is None), own))
        self._pending_tar += n

    def _collect(self, keep: int) -> None:
        """Hand the frames done, in order, to the writer thread; wait for the oldest while
        more than ``keep`` are being compressed (memory: a few frames at most)."""
        pending = self._pending
        while pending and (len(pending) > keep or pending[0][0].done()):
            fut, own = pending.popleft()
            buf, tar_len, pieces, sha = fut.result()
            if not own:
                self._comp.done(buf)
            z_len = 0
            for p in pieces:
                self._handoff.write(p)
                z_len += len(p)
            self._pending_tar -= tar_len
            self._comp.tar_in += tar_len
            self._comp.z_out += z_len
            self._frames.append(Frame(self._t, tar_len, self._z, z_len, sha))
            self._t += tar_len
            self._z += z_len

    @contextmanager
    def _naming_errors(self) -> Iterator[None]:
        """A write error of the writer thread names the spool file it was writing."""
        try:
            yield
        except OSError as e:
            if e.filename is None:
                e.filename = str(self.tmp)
            raise

    def estimated_size(self) -> int:
        """Bytes this volume would have if it ended now (frames not compressed yet
        estimated at the ratio so far)."""
        return self._handoff.size + int((self._fill + self._pending_tar) * self._comp.ratio())

    def end_frame(self) -> None:
        """Compress what is gathered and hand every frame over: after this the compressor
        is free for the next volume, while :meth:`finish` (waiting for the writer thread,
        fsync) may run elsewhere."""
        if self._ended:
            return
        if self._fill:
            self._submit()
        elif self._buf is not None:
            self._comp.done(self._buf)
            self._buf = None
        with self._naming_errors():
            self._collect(0)
        self._ended = True

    def append(self, frame: bytes) -> None:
        """Bytes after the compressed data (the end marker); call after :meth:`end_frame`."""
        with self._naming_errors():
            self._handoff.write(frame)

    def plain_digest(self) -> str:
        """SHA-256 of the plaintext written so far (what age encrypts), once the writer
        thread has caught up: the next volume's chain header names it."""
        with self._naming_errors():
            self._handoff.drain()
        return (self._enc.plain if self._enc is not None else self._file.sha).copy().hexdigest()

    def frame_table(self) -> FrameTable:
        """Where this volume's frames are (frames.py); after :meth:`finish`."""
        if self._enc is None:
            return FrameTable(tuple(self._frames))
        prefix = self._enc.prefix
        return FrameTable(tuple(self._frames), hashlib.sha256(prefix).hexdigest(), len(prefix))

    def finish(self) -> VolumeInfo:
        with self._naming_errors():
            self.end_frame()
            self._handoff.close()
            if self._enc is not None:
                self._enc.close()
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
        os.replace(self.tmp, self.path)
        return VolumeInfo(
            self.index, self.name, self._file.size, self._file.sha.hexdigest(),
            self._file.quickxor, self.tar_start, self.tar_start + self.tar_bytes,
            self.frame_table().to_json(),
        )

    def abort(self) -> None:
        """Discard the half-built volume. Closing flushes what is buffered, which fails on
        a full disk: that error is not the one to report (the write error before it is)."""
        while self._pending:  # every ring buffer back before the next volume takes one
            fut, own = self._pending.popleft()
            try:
                buf = fut.result()[0]
            except BaseException:  # noqa: BLE001 - the error that stopped the run is reported
                continue
            if not own:
                self._comp.done(buf)
        if self._buf is not None:
            self._comp.done(self._buf)
            self._buf = None
        self._handoff.abort()
        try:
            self._f.close()
        except OSError:
            pass
        finally:
            self.tmp.unlink(missing_ok=True)
