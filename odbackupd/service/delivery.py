"""The daemon's side of notifications and metrics: one task on the loop.

It sends what the notification queue holds (in a worker thread: SMTP and HTTP block)
whenever a run starts or ends, and every ``TICK`` seconds for retries; and it rewrites
the metrics file at start and every ``REFRESH`` seconds, so the file's age (what
``node_textfile_mtime_seconds`` shows) says whether the daemon still runs.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import metrics
from ..notify import queue
from ..notify.deliver import deliver_due

log = logging.getLogger("odbackupd.delivery")

TICK = 30.0
REFRESH = 300.0


class Delivery:
    def __init__(self, get_config: Callable[[], Any], state: Any) -> None:
        self.get_config = get_config
        self.state = state
        self._wake = asyncio.Event()
        self._stop = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="notify")
        self._task: asyncio.Task | None = None
        self._listener: Callable[[], None] | None = None
        self._published = 0.0
        self.passes = 0  # completed passes (tests wait for a number of them)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._listener = lambda: loop.call_soon_threadsafe(self._wake.set)
        queue.listeners.append(self._listener)  # a run queued something: send it now
        self._task = loop.create_task(self._run(), name="delivery")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            self._wake.clear()
            try:
                await loop.run_in_executor(self._pool, self._pass)
            except Exception:  # noqa: BLE001 - never take the daemon down
                log.exception("delivering notifications failed")
            self.passes += 1
            try:
                await asyncio.wait_for(self._wake.wait(), TICK)
            except TimeoutError:
                pass

    def _pass(self) -> None:
        config = self.get_config()
        # the first pass after a start retries everything: the receiver may be back
        deliver_due(config, self.state, stop=self._stop, everything=not self.passes)
        if time.monotonic() - self._published >= REFRESH or not self._published:
            metrics.publish(config, self.state)
            self._published = time.monotonic()

    async def stop(self, timeout: float = 15.0) -> None:
        """Let a send in progress finish (a delivered message is then not sent again after
        the restart), within ``timeout``; what is left stays queued."""
        self._stop.set()
        if self._listener in queue.listeners:
            queue.listeners.remove(self._listener)
        if self._task is not None:
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._pool.shutdown(wait=False)
