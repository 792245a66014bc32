"""What the controller tells its subscribers (the D-Bus adapter, sd_notify, the tests).

Each event is an :class:`Event` of one :class:`EventKind`, with the job it concerns (None
for the daemon) and a plain JSON-able dict (missing values omitted, never None), which the
D-Bus adapter turns into ``a{sv}``:

=============== ===== =============================================================
kind            job   data
=============== ===== =============================================================
RUN_STARTED     yes   ``run_id``, ``trigger``
RUN_FINISHED    yes   :meth:`odbackupd.lifecycle.RunSummary.as_dict`
PROGRESS        yes   :func:`odbackupd.service.progress.progress_dict` (at most ~2/s)
JOB_CHANGED     yes   ``Controller.job_info(job)``
DAEMON_CHANGED  None  ``Controller.daemon_info()``
=============== ===== =============================================================
"""
from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("odbackupd.controller")


class EventKind(enum.StrEnum):
    RUN_STARTED = "run_started"
    RUN_FINISHED = "run_finished"
    PROGRESS = "progress"
    JOB_CHANGED = "job_changed"
    DAEMON_CHANGED = "daemon_changed"


@dataclass(frozen=True)
class Event:
    kind: EventKind
    job: str | None
    data: dict


class EventHub:
    """Subscribers called on the loop thread, in order; one that raises is logged and the
    others still hear the event (a bad subscriber must not break runs)."""

    def __init__(self) -> None:
        self._subscribers: list[Callable[[Event], None]] = []

    def subscribe(self, fn: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``fn`` with every event; returns the unsubscribe."""
        self._subscribers.append(fn)

        def unsubscribe() -> None:
            if fn in self._subscribers:
                self._subscribers.remove(fn)

        return unsubscribe

    def emit(self, kind: EventKind, job: str | None, data: dict) -> None:
        ev = Event(kind, job, data)
        for fn in list(self._subscribers):
            try:
                fn(ev)
            except Exception:  # noqa: BLE001
                log.exception("event subscriber failed on %s", kind)
