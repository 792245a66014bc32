"""Volumes: the tar stream cut into files of about ``volume_size`` bytes.

Each volume is a complete file on its own: its plaintext is whole zstd frames (a frame
ends at every volume boundary) and, for an encrypted job, it is one age file. So the
volumes of a snapshot restore with standard tools, in name order:
``for v in vol.*; do age -d -i key "$v"; done | zstd -d | tar -x``.
"""
from __future__ import annotations

import hashlib
import os
import threading
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

import zstandard

from ..hashes import QuickXorHash

VOLUME_DIGITS = 6
WRITE_SIZE = 1 << 20  # compressed bytes per hand-over to the writer thread (zstd's default: 128 KiB)


def volume_name(index: int, encrypted: bool) -> str:
    """``vol.000001.zst`` or ``vol.000001.zst.age``: zero-padded so ``vol.*`` sorts right."""
    return f"vol.{index:0{VOLUME_DIGITS}d}.zst" + (".age" if encrypted else "")


@dataclass(frozen=True)
class VolumeInfo:
    index: int
    name: str
    size: int
    sha256: str
    quickxor: str
    tar_start: int  # offset of the volume's first plaintext byte in the tar stream
    tar_end: int

    def to_json(self) -> dict:
        return {
            "index": self.index, "name": self.name, "size": self.size, "sha256": self.sha256,
            "quickxor": self.quickxor, "tar_start": self.tar_start, "tar_end": self.tar_end,
        }

    @classmethod
    def from_json(cls, d: dict) -> "VolumeInfo":
        return cls(**{k: d[k] for k in ("index", "name", "size", "sha256", "quickxor", "tar_start", "tar_end")})


class _FileHasher:
    """Writes to a file while computing SHA-256, quickXorHash (if asked) and the size."""

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

    def flush(self) -> None:
        pass


class HashingSink:
    """Takes compressed bytes; a thread of its own encrypts, hashes and writes them.

    Encryption (when there are recipients), SHA-256, quickXorHash and the write run in the
    "volume-writer" thread, so they overlap with reading and compressing instead of adding
    to them. The hand-over is bounded in bytes, not buffers: zstd releases a whole job's
    output (``JOB_SIZE``) at once, and a short queue would stall the thread that feeds the
    compressor, leaving its workers idle. (Splitting hashing and writing into two threads
    was measured too: no gain.)
    """

    LIMIT = 8 << 20  # compressed bytes in flight at most: bounded memory

    def __init__(self, f: BinaryIO, recipients: Sequence[object] = (), quickxor: bool = True) -> None:
        self._out = _FileHasher(f, quickxor)
        self._enc = None
        self._plain = None  # SHA-256 of the plaintext, when it is not the file's (encrypted)
        if recipients:
            from ..crypto.age import AgeWriter

            self._enc = AgeWriter(self._out, list(recipients))
            self._plain = hashlib.sha256()
        self.size = 0  # compressed bytes taken (the volume's size before encryption)
        self._items: deque = deque()
        self._inflight = 0
        self._cond = threading.Condition(threading.Lock())
        self._err: BaseException | None = None
        self._t = threading.Thread(target=self._run, name="volume-writer", daemon=True)
        self._t.start()

    @property
    def sha(self):  # noqa: ANN201 - hashlib object
        return self._out.sha

    @property
    def quickxor(self) -> str:
        """Base64 quickXorHash of the file ("" when not asked for): valid after :meth:`close`."""
        return self._out.qx.b64digest() if self._out.qx is not None else ""

    @property
    def stored_size(self) -> int:
        """Bytes in the file: valid after :meth:`close`."""
        return self._out.size

    def _run(self) -> None:
        target = self._enc or self._out
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
                    if self._plain is not None:
                        self._plain.update(b)
                    target.write(b)
            except BaseException as e:  # noqa: BLE001 - re-raised in the builder thread
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

    def plain_digest(self) -> str:
        """SHA-256 of the plaintext taken so far (what age encrypts), once the writer
        thread has caught up: the next volume's chain header names it."""
        with self._cond:
            while self._inflight > 0 and self._err is None:
                self._cond.wait()
            if self._err is not None:
                raise self._err
            return (self._plain or self._out.sha).copy().hexdigest()

    def close(self) -> None:
        """Wait until everything written so far is encrypted (final chunk too), hashed
        and in the file."""
        self._put(None)
        self._t.join()
        if self._err is not None:
            raise self._err
        if self._enc is not None:
            self._enc.close()

    def abort(self) -> None:
        """Stop the thread; what was written is incomplete."""
        self._err = self._err or RuntimeError("volume aborted")
        self._put(None)
        self._t.join()


# zstd's multi-threaded jobs: its default for level 3 is 8 MiB. Measured on the 2 GB bench
# tree (2 CPUs, each setting against the same round's tar | zstd -T0 baseline): 2 MiB jobs
# 0.85 of the baseline's speed at 64 MB peak RSS, 4 MiB 0.96 at 81 MB, 8 MiB 0.95 at 117 MB
# (137 MB encrypted). Smaller jobs hand the workers work more often than the feeding
# thread can keep up with; bigger ones only cost memory.
JOB_SIZE = 4 << 20


def make_compressor(level: int, threads: int) -> zstandard.ZstdCompressor:
    threads = threads if threads > 0 else -1  # -1: one worker per CPU, like zstd -T0
    params = zstandard.ZstdCompressionParameters.from_level(
        level, threads=threads, job_size=JOB_SIZE, write_checksum=1,
    )
    return zstandard.ZstdCompressor(compression_params=params)


class VolumeWriter:
    """Builds one volume in the spool: tar bytes in, a finished file out."""

    def __init__(
        self,
        spool: Path,
        index: int,
        tar_start: int,
        cctx: zstandard.ZstdCompressor,
        recipients: Sequence[object] = (),
        quickxor: bool = True,
        header: bytes = b"",
    ) -> None:
        """``header``: bytes put before the compressed data (a skippable frame, chain.py).
        ``quickxor``: compute the volume's quickXorHash, which only OneDrive reports
        (``Destination.reports_hashes``); in pure Python it costs about as much CPU as
        SHA-256, so a job whose destinations cannot compare it skips it."""
        self.index = index
        self.name = volume_name(index, bool(recipients))
        self.path = spool / self.name
        self.tmp = spool / (self.name + ".part")
        self.tar_start = tar_start
        self.tar_bytes = 0
        self._cctx = cctx
        # 0600: an unencrypted volume holds whatever the sources hold (/etc/shadow, keys)
        self._f = os.fdopen(os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600), "wb")
        self._sink = HashingSink(self._f, recipients, quickxor)
        if header:
            with self._naming_errors():
                self._sink.write(header)
        self._zw = cctx.stream_writer(self._sink, closefd=False, write_return_read=True, write_size=WRITE_SIZE)

    def write(self, data: bytes) -> None:
        with self._naming_errors():
            self._zw.write(data)
        self.tar_bytes += len(data)

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
        """Bytes this volume would have if it ended now (compressor backlog included)."""
        ingested, consumed, produced = self._cctx.frame_progression()
        backlog = ingested - consumed
        ratio = produced / consumed if consumed else 1.0
        return self._sink.size + int(backlog * ratio)

    def end_frame(self) -> None:
        """End the zstd frame: after this the compressor is free for the next volume,
        while :meth:`finish` (waiting for the writer thread, fsync) may run elsewhere."""
        if not self._zw.closed:
            with self._naming_errors():
                self._zw.close()  # closefd=False keeps the sink open

    def append(self, frame: bytes) -> None:
        """Bytes after the compressed data (the end marker); call after :meth:`end_frame`."""
        with self._naming_errors():
            self._sink.write(frame)

    def plain_digest(self) -> str:
        with self._naming_errors():
            return self._sink.plain_digest()

    def finish(self) -> VolumeInfo:
        with self._naming_errors():
            self.end_frame()
            self._sink.close()
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
        os.replace(self.tmp, self.path)
        return VolumeInfo(
            self.index, self.name, self._sink.stored_size, self._sink.sha.hexdigest(),
            self._sink.quickxor, self.tar_start, self.tar_start + self.tar_bytes,
        )

    def abort(self) -> None:
        """Discard the half-built volume. Closing flushes what is buffered, which fails on
        a full disk: that error is not the one to report (the write error before it is)."""
        self._sink.abort()
        try:
            self._f.close()
        except OSError:
            pass
        finally:
            self.tmp.unlink(missing_ok=True)
