"""The daemon's sense of time, injectable so schedules are tested without sleeping.

The scheduler only ever asks a :class:`Clock` for the wall-clock time and waits with
:meth:`Clock.sleep_until`. :class:`SystemClock` is the real thing; :class:`ManualClock`
is driven by tests (``await clock.advance(3600)`` wakes every sleeper whose time has come).
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import time


class Clock:
    """Wall-clock time and waiting for a wall-clock moment."""

    def now(self) -> float:
        """Seconds since the epoch (what cron schedules and the state database use)."""
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep_until(self, when: float) -> None:
        raise NotImplementedError


class SystemClock(Clock):
    # Sleep in bounded steps and re-read the wall clock: a suspend/resume or an NTP step
    # would otherwise make a single long asyncio.sleep (monotonic) fire at the wrong time.
    MAX_STEP = 60.0

    async def sleep_until(self, when: float) -> None:
        while True:
            left = when - time.time()
            if left <= 0:
                return
            await asyncio.sleep(min(left, self.MAX_STEP))


class ManualClock(Clock):
    """A clock that moves only when told to (tests, benchmarks)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._mono = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future]] = []
        self._seq = itertools.count()
        self._waiting_changed: asyncio.Event | None = None

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    @property
    def sleepers(self) -> list[float]:
        """The times sleepers are waiting for (pending ones only), earliest first."""
        return sorted(w for w, _, f in self._sleepers if not f.done())

    async def sleep_until(self, when: float) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (when, next(self._seq), fut))
        self._changed()
        await fut

    def _changed(self) -> None:
        if self._waiting_changed is not None:
            self._waiting_changed.set()

    async def wait_for_sleepers(self, n: int = 1, timeout: float = 5.0) -> None:
        """Wait until at least ``n`` tasks are asleep on this clock (they reached their wait)."""
        async def _wait() -> None:
            while len(self.sleepers) < n:
                self._waiting_changed = asyncio.Event()
                await self._waiting_changed.wait()

        await asyncio.wait_for(_wait(), timeout)

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking sleepers in time order, and let them run."""
        await self.set(self._now + seconds)

    async def set(self, when: float) -> None:
        target = max(when, self._now)
        while self._sleepers and self._sleepers[0][0] <= target:
            w, _, fut = heapq.heappop(self._sleepers)
            self._mono += max(0.0, w - self._now)
            self._now = max(self._now, w)
            if not fut.done():
                fut.set_result(None)
                # let the woken task run (it may schedule its next sleep) before going on
                for _ in range(5):
                    await asyncio.sleep(0)
        self._mono += target - self._now
        self._now = target
