"""Cron schedules: when each job runs next, random delays, and catch-up after downtime.

One asyncio task per scheduled job sleeps on the injectable :class:`~.clock.Clock` until the
next cron time (plus a random delay drawn from a per-job seeded generator, like systemd's
``RandomizedDelaySec=``) and then calls ``on_due(job, "schedule")``. Nothing here runs a
backup: the controller decides what a due job means (start, or queue one follow-up).

Catch-up (``persistent = true``, like systemd's ``Persistent=true``): at start-up a job whose
most recent cron time lies after its last run (``last_run:<job>`` in the state database)
missed a run while the daemon was down, and runs once. A job that never ran has no last run;
the first time the daemon schedules it, it records ``schedule_since:<job>`` and measures from
there, so a new job is not run at once on its first start but a missed first run is caught up.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import random
from collections.abc import Callable, Mapping
from typing import Protocol

from ..jobview import next_fire, previous_fire
from .clock import Clock, SystemClock

log = logging.getLogger("odbackupd.scheduler")


class _KV(Protocol):
    def last_run(self, job: str) -> float | None: ...
    def schedule_since(self, job: str) -> float | None: ...
    def set_schedule_since(self, job: str, when: float) -> None: ...


def missed_run(expr: str, since: float, now: float, tz: dt.tzinfo | None = None) -> bool:
    """Whether a cron time fell in (since, now]: a run that did not happen."""
    return previous_fire(expr, now, tz) > since


class Scheduler:
    """Per-job timers for cron schedules on one asyncio loop."""

    def __init__(
        self,
        on_due: Callable[[str, str], None],
        *,
        clock: Clock | None = None,
        tz: dt.tzinfo | None = None,
        seed: int | str | None = None,
    ) -> None:
        self.on_due = on_due
        self.clock = clock or SystemClock()
        self.tz = tz
        # the random delays differ between daemons (spreading load over machines) unless a
        # seed is given; each job has its own stream so adding a job does not move the others
        self.seed = seed if seed is not None else os.urandom(8).hex()
        self._tasks: dict[str, tuple[tuple[str, float], asyncio.Task]] = {}
        self._next: dict[str, float] = {}

    def update(self, jobs: Mapping[str, object]) -> None:
        """Start, restart or stop timers to match ``jobs`` (config.jobs) after a (re)load."""
        wanted = {
            name: (job.schedule, float(job.random_delay))  # type: ignore[attr-defined]
            for name, job in jobs.items()
            if getattr(job, "schedule", None)
        }
        for name in list(self._tasks):
            if self._tasks[name][0] != wanted.get(name):
                self._tasks.pop(name)[1].cancel()
                self._next.pop(name, None)
        for name, key in wanted.items():
            if name not in self._tasks:
                rng = random.Random(f"{self.seed}:{name}")
                first = self._plan(name, key, rng, self.clock.now())
                task = asyncio.get_running_loop().create_task(
                    self._timer(name, key, rng, *first), name=f"schedule-{name}")
                self._tasks[name] = (key, task)

    def _plan(self, name: str, key: tuple[str, float], rng: random.Random,
              base: float) -> tuple[float, float]:
        """The next cron time after ``base`` and when to run for it (random delay added)."""
        expr, random_delay = key
        fire = next_fire(expr, base, self.tz)
        when = fire + (rng.uniform(0, random_delay) if random_delay > 0 else 0.0)
        self._next[name] = when
        return fire, when

    def next_run(self, name: str) -> float | None:
        """When ``name`` runs next by its schedule (epoch, random delay included)."""
        return self._next.get(name)

    def catch_up(self, jobs: Mapping[str, object], state: _KV) -> list[str]:
        """Scheduled, persistent jobs that missed a cron time while the daemon was down."""
        now = self.clock.now()
        due = []
        for name, job in jobs.items():
            expr = getattr(job, "schedule", None)
            if not expr:
                continue
            last = state.last_run(name)
            since = state.schedule_since(name)
            if last is None and since is None:
                state.set_schedule_since(name, now)
                continue
            ref = max(x for x in (last, since) if x is not None)
            if getattr(job, "persistent", True) and missed_run(expr, ref, now, self.tz):
                due.append(name)
        return due

    async def stop(self) -> None:
        tasks = [t for _, t in self._tasks.values()]
        self._tasks.clear()
        self._next.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _timer(self, name: str, key: tuple[str, float], rng: random.Random, fire: float,
                     when: float) -> None:
        try:
            while True:
                await self.clock.sleep_until(when)
                try:
                    self.on_due(name, "schedule")
                except Exception:  # noqa: BLE001 - a failing callback must not end the timer
                    log.exception("job %s: scheduled trigger failed", name)
                # the next slot follows this cron time, not "now" (a random delay never
                # makes the schedule skip a slot), but slots missed during a suspend are
                # not replayed one by one
                fire, when = self._plan(name, key, rng, max(fire, self.clock.now() - key[1]))
        finally:
            if self._tasks.get(name, (None, None))[1] is asyncio.current_task():
                self._next.pop(name, None)
