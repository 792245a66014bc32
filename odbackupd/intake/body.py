"""Streaming a request body into a partial file, within limits.

Bytes are buffered up to :data:`BLOCK`, then written and hashed by a writer thread; memory
per upload stays at a few blocks whatever the file size, and fsync runs off the event loop.
``limit`` is checked as bytes arrive, so a chunked body (no Content-Length) that grows past
``max_file_size`` or the quota stops there. A full disk or quota surfaces as :class:`DiskFull`.
"""
from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from typing import Any

from aiohttp import ClientPayloadError

BLOCK = 1 << 20
IN_FLIGHT = 4  # blocks queued for the writer thread, per upload
IOV_LIMIT = 512  # pieces per pwritev (the kernel takes at most IOV_MAX = 1024)

__all__ = ["BLOCK", "BodyCut", "BodyTooLarge", "DiskFull", "Sink", "stream_body"]


class BodyTooLarge(Exception):
    """More bytes came than allowed; ``what`` is "size" (max_file_size/length) or "quota"."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class DiskFull(OSError):
    pass


class BodyCut(Exception):
    """The connection ended before the body did (a dropped link, a client gone)."""


def _full(e: OSError) -> bool:
    return e.errno in (errno.ENOSPC, errno.EDQUOT)


class Sink:
    """An open partial file at *offset*, with the hashers fed everything written.

    Blocks are written and hashed in order by a worker thread of this sink while the event
    loop reads the next ones (pwrite and hashlib release the GIL: two cores work). At most
    :data:`IN_FLIGHT` blocks wait for it, which bounds the memory. Everything that touches
    the file from the loop's thread (sync, truncate, close) first waits for the worker, so a
    cancelled request never races a write still running."""

    def __init__(self, path: os.PathLike, offset: int, hashers: list[Any], *, create: bool) -> None:
        flags = os.O_WRONLY | os.O_CLOEXEC | (os.O_CREAT | os.O_EXCL if create else 0)
        self.fd = os.open(path, flags, 0o600)
        self.start = offset
        self.offset = offset  # bytes on disk (written, not necessarily synced)
        self.hashers = hashers
        self._worker: ThreadPoolExecutor | None = None
        self._inflight: list[Future] = []

    def _write(self, chunks: list[bytes]) -> None:
        """Write *chunks* at the offset (one pwritev, no joining copy) and hash them."""
        if len(chunks) > IOV_LIMIT:
            chunks = [b"".join(chunks)]
        total = sum(map(len, chunks))
        try:
            n = os.pwritev(self.fd, chunks, self.offset)
            self.offset += n
            if n < total:  # a short write: the rest piece by piece
                rest = memoryview(b"".join(chunks))[n:]
                while rest:
                    m = os.pwrite(self.fd, rest, self.offset)
                    self.offset += m
                    rest = rest[m:]
        except OSError as e:
            if _full(e):
                raise DiskFull(e.errno, e.strerror) from None
            raise
        for h in self.hashers:
            for c in chunks:
                h.update(c)

    async def write(self, chunks: list[bytes]) -> None:
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="intake-write")
        self._inflight.append(self._worker.submit(self._write, chunks))
        while len(self._inflight) > IN_FLIGHT:
            await asyncio.wrap_future(self._inflight[0])
            self._inflight.pop(0)

    async def drain(self) -> None:
        """Until every block handed to :meth:`write` is on disk (raises what failed)."""
        while self._inflight:
            await asyncio.wrap_future(self._inflight[0])
            self._inflight.pop(0)

    def write_now(self, chunks: list[bytes]) -> None:
        """On the loop's thread, after the worker: for the cleanup of a cancelled request."""
        self.wait_now()
        self._write(chunks)

    def wait_now(self) -> None:
        """Block until the worker is idle; failures are the caller's to notice (offset)."""
        inflight, self._inflight = self._inflight, []
        futures_wait(inflight)

    def sync(self) -> None:
        self.wait_now()
        try:
            os.fsync(self.fd)
        except OSError as e:
            if _full(e):
                raise DiskFull(e.errno, e.strerror) from None
            raise

    async def sync_async(self) -> None:
        await self.drain()
        await asyncio.get_running_loop().run_in_executor(None, self.sync)

    def truncate(self, offset: int) -> None:
        self.wait_now()
        os.ftruncate(self.fd, offset)
        self.offset = offset
        os.fsync(self.fd)

    def close(self) -> None:
        self.wait_now()
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


async def stream_body(request: Any, sink: Sink, check: Callable[[int], None],
                      pending: list[bytes]) -> int:
    """Copy the body into *sink*; returns the bytes received. ``check(received)`` runs as
    bytes arrive and raises BodyTooLarge to stop. Bytes received but not yet handed to the
    sink when the request is cancelled stay in *pending* for the caller's cleanup."""
    received = 0
    buffered = 0
    while True:
        try:
            chunk = await request.content.readany()
        except (ConnectionError, ClientPayloadError):
            raise BodyCut() from None
        if not chunk:
            break
        received += len(chunk)
        check(received)
        pending.append(chunk)
        buffered += len(chunk)
        if buffered >= BLOCK:
            chunks = pending[:]  # handed over as they came: no copy before the kernel's
            pending.clear()
            buffered = 0
            await sink.write(chunks)
    if pending:
        chunks = pending[:]
        pending.clear()
        await sink.write(chunks)
    await sink.drain()
    return received
