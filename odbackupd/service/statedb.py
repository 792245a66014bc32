"""The controller's state database work off the event loop: the loop serves D-Bus, timers
and the systemd watchdog while SQLite waits for the disk (``synchronous=FULL``: each commit
does). Runs and logins use :func:`odbackupd.threads.in_thread`.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class StateThread:
    """One thread for the controller's reads and writes of the state database, in the order
    they were asked for. ``await db(fn)``: ``fn`` (state reads and writes) in the state
    thread, in order."""

    def __init__(self) -> None:
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    async def __call__(self, fn: Callable[[], T]) -> T:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="state")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
