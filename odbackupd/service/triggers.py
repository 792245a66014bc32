"""The triggers a job has besides its schedule: a watch of its sources (watcher.py) and a
drop directory (dropdir.py). Built per job from its configuration, started, stopped, and
rebuilt on reload only when what they look at changed (:func:`trigger_key`).

A trigger that cannot start (no such directory, inotify limits) is logged and the job
still runs by schedule and ``backup-now``.

Adding a trigger kind: a class with ``start()`` (or ``start_async()``) and ``stop()`` that
calls ``on_trigger(job, "KIND")`` (the controller then asks for a run, as for a schedule:
one follow-up at most), one ``_make_*`` here, and its settings in :data:`TRIGGER_KEYS`.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("odbackupd.controller")

#: the job settings a trigger depends on: a reload that changes none of them keeps it
TRIGGER_KEYS = ("sources", "exclude", "one_file_system", "watch", "quiet_period", "max_delay",
                "drop_dir")


def trigger_key(job: Any) -> tuple:
    return tuple(getattr(job, k, None) for k in TRIGGER_KEYS)


class Triggers:
    """``on_trigger(job, kind)``: a trigger asks for a run ("watch": changes settled in the
    job's sources); ``on_drop_file(job, path)``: a complete file to back up (True once
    stored: it may go); ``spawn``: task tracking."""

    def __init__(self, on_trigger: Callable[[str, str], None],
                 on_drop_file: Callable[[str, Path], Awaitable[bool]],
                 spawn: Callable[[Awaitable[Any]], Any]) -> None:
        self._on_trigger = on_trigger
        self._on_drop_file = on_drop_file
        self._spawn = spawn
        self._started: dict[str, list[Any]] = {}  # job -> its started watcher / drop dir

    def __contains__(self, name: str) -> bool:
        return name in self._started

    def names(self) -> list[str]:
        return list(self._started)

    def start(self, jobs: dict[str, Any], skip_paths: list[Path]) -> None:
        for name, job in jobs.items():
            started = []
            if getattr(job, "watch", False):
                w = self._make_watcher(name, job, skip_paths)
                if w is not None:
                    started.append(w)
            if getattr(job, "drop_dir", None) is not None:
                d = self._make_dropdir(name, job)
                if d is not None:
                    started.append(d)
            if started:
                self._started[name] = started

    def stop(self, names: list[str]) -> None:
        for name in names:
            for t in self._started.pop(name, []):
                try:
                    t.stop()
                except Exception:  # noqa: BLE001
                    log.exception("job %s: stopping a trigger failed", name)

    def _make_watcher(self, name: str, job: Any, skip_paths: list[Path]) -> Any:
        """A job's watcher, whose walk of the trees then runs in the background: the loop
        (D-Bus, timers, the watchdog) is served in between batches of directories — at
        start and at reload alike."""
        from .watcher import JobWatcher

        try:
            w = JobWatcher(
                asyncio.get_running_loop(), name, list(job.sources), quiet_period=job.quiet_period,
                max_delay=job.max_delay, exclude=list(job.exclude),
                one_file_system=job.one_file_system,
                skip_paths=skip_paths, on_trigger=lambda job: self._on_trigger(job, "watch"))
        except Exception as e:  # noqa: BLE001
            _failed(name, "watch", e)
            return None
        self._spawn(self._start_watcher(name, w))
        return w

    async def _start_watcher(self, name: str, w: Any) -> None:
        try:
            await w.start_async()
        except Exception as e:  # noqa: BLE001 - e.g. inotify limits: say so, keep the schedule
            _failed(name, "watch", e)
            started = self._started.get(name, [])
            if w in started:
                started.remove(w)

    def _make_dropdir(self, name: str, job: Any) -> Any:
        from .dropdir import DropDir

        try:
            d = DropDir(asyncio.get_running_loop(), name, Path(job.drop_dir),
                        on_file=lambda p, _n=name: self._on_drop_file(_n,
                                                                      p), settle=job.quiet_period)
            d.start()
            return d
        except Exception as e:  # noqa: BLE001 - e.g. inotify limits: say so, keep the schedule
            _failed(name, "drop_dir", e)
            return None


def _failed(name: str, what: str, e: Exception) -> None:
    tail = "" if "schedule" in str(e) else "; the job still runs by schedule and backup-now"
    log.error("job %s: %s not started: %s%s", name, what, e, tail,
              extra={"journal_fields": {"JOB": name}})
