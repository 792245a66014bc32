"""Blocking work off an event loop (Moonraker's ``run_in_thread``), for the daemon's loop
(runs, logins: service/) and odctl's (a login's prompts while D-Bus signals arrive).

:func:`in_thread` starts a daemon thread per call, not an executor's: a run that ignores its
cancel event cannot hold the daemon past the unit's stop timeout (everything it did is
checkpointed already), and a login waiting for its user cannot keep odctl from exiting
after Ctrl-C.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def in_thread(fn: Callable[[], T], name: str) -> asyncio.Future[T]:
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
