"""Streaming a request body into a partial file, within limits.

Bytes are buffered up to :data:`BLOCK`, then written and hashed; memory per upload stays
at a few blocks whatever the file size, and fsync runs off the event loop. ``limit`` is checked as bytes
arrive, so a chunked body (no Content-Length) that grows past ``max_file_size`` or the
quota stops there. A full disk or quota surfaces as :class:`DiskFull`.
"""
from __future__ import annotations

import asyncio
import errno
import os
from typing import Any, Callable

BLOCK = 1 << 20

__all__ = ["BLOCK", "BodyTooLarge", "DiskFull", "Sink", "stream_body"]


class BodyTooLarge(Exception):
    """More bytes came than allowed; ``what`` is "size" (max_file_size/length) or "quota"."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class DiskFull(OSError):
    pass


def _full(e: OSError) -> bool:
    return e.errno in (errno.ENOSPC, errno.EDQUOT)


class Sink:
    """An open partial file at *offset*, with the hashers fed everything written."""

    def __init__(self, path: os.PathLike, offset: int, hashers: list[Any], *, create: bool) -> None:
        flags = os.O_WRONLY | os.O_CLOEXEC | (os.O_CREAT | os.O_EXCL if create else 0)
        self.fd = os.open(path, flags, 0o600)
        self.start = offset
        self.offset = offset  # bytes on disk (written, not necessarily synced)
        self.hashers = hashers

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.pwrite(self.fd, view, self.offset)
                self.offset += n
                view = view[n:]
        except OSError as e:
            if _full(e):
                raise DiskFull(e.errno, e.strerror) from None
            raise
        for h in self.hashers:
            h.update(data)

    def write(self, data: bytes) -> None:
        """Written on the event loop's thread: a block into the page cache is quick, and a
        cancelled request never races a write still running in a worker thread."""
        self._write(data)

    def sync(self) -> None:
        try:
            os.fsync(self.fd)
        except OSError as e:
            if _full(e):
                raise DiskFull(e.errno, e.strerror) from None
            raise

    async def sync_async(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.sync)

    def truncate(self, offset: int) -> None:
        os.ftruncate(self.fd, offset)
        self.offset = offset
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


async def stream_body(request: Any, sink: Sink, check: Callable[[int], None],
                      pending: bytearray) -> int:
    """Copy the body into *sink*; returns the bytes received. ``check(received)`` runs as
    bytes arrive and raises BodyTooLarge to stop. Bytes received but not yet written when
    the request is cancelled stay in *pending* for the caller's cleanup."""
    received = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break
        received += len(chunk)
        check(received)
        pending += chunk
        if len(pending) >= BLOCK:
            sink.write(bytes(pending))
            pending.clear()
    if pending:
        sink.write(bytes(pending))
        pending.clear()
    return received
