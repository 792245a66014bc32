"""Blocking work off the event loop (Moonraker's ``run_in_thread``): the loop serves D-Bus,
timers and the systemd watchdog while runs, logins and state writes block elsewhere.

* :func:`in_thread` — a daemon thread per call, for runs and logins: a run that ignores its
  cancel event cannot hold the process past the unit's stop timeout (everything it did is
  checkpointed already).
* :class:`StateThread` — one thread for the controller's reads and writes of the state
  database (``synchronous=FULL``: each commit waits for the disk). One thread keeps them
  in the order they were asked for.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")


def in_thread(fn: Callable[[], T], name: str) -> "asyncio.Future[T]":
    """Run blocking ``fn`` in a daemon thread; the result arrives on the loop."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future = loop.create_future()

    def _settle(ok: bool, value: Any) -> None:
        if fut.done():
            return
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)

    def _body() -> None:
        try:
            value = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting coroutine
            loop.call_soon_threadsafe(_settle, False, e)
        else:
            loop.call_soon_threadsafe(_settle, True, value)

    threading.Thread(target=_body, name=name, daemon=True).start()
    return fut


class StateThread:
    """``await db(fn)``: ``fn`` (state reads and writes) in the state thread, in order."""

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
