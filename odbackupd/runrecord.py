"""A finished run, in the one shape every reader gets: D-Bus ``RunFinished`` (``as_dict``),
a job's ``last_run`` (``brief``, also what odctl shows offline from the state database),
the run history read back after a restart (``of_row``). Light on purpose (no runner, no
builder): odctl's offline job view uses it too."""
from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .runstatus import RunStatus

#: The keys of a job's ``last_run`` (odctl jobs, the Job object's LastRun property).
BRIEF_KEYS = ("run_id", "status", "message", "snapshot", "trigger", "started", "finished")


@dataclass(frozen=True)
class RunSummary:
    """A finished (or never started) run. ``details``: the made snapshot's figures —
    ``files``, ``data_bytes``, ``kind``, ``resumed``, ``login_needed``, ``prune_errors`` …"""

    run_id: int
    status: str
    trigger: str | None
    started: float
    finished: float
    message: str = ""
    snapshot: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in (RunStatus.COMPLETED, RunStatus.COMPLETED_WITH_WARNINGS)

    def as_dict(self) -> dict:
        """What RunFinished carries: plain values, missing ones omitted (never None)."""
        out = {"run_id": self.run_id, "status": str(self.status), "message": self.message,
               "snapshot": self.snapshot, "trigger": self.trigger, "started": self.started,
               "finished": self.finished, **self.details}
        return {k: v for k, v in out.items() if v is not None}

    def brief(self) -> dict:
        """A job's ``last_run``."""
        d = self.as_dict()
        return {k: d[k] for k in BRIEF_KEYS if k in d}

    @classmethod
    def of_run(cls, run: Any, trigger: str, started: float,
               finished: float | None = None) -> RunSummary:
        """``resumed``/``reused_volumes`` tell a user that an interrupted snapshot was carried
        on, ``login_needed`` that it failed for want of ``odctl login`` (odctl's exit code
        says so), ``prune_errors`` that retention failed (the snapshot is fine)."""
        r = run.result
        m = r.manifest
        details: dict[str, Any] = {
            "warnings": sum(r.warning_counts.values()), "resumed": r.resumed,
            "reused_volumes": r.reused_volumes, "login_needed": True if run.login_needed else None,
            "prune_errors": list(run.prune_errors) or None,
        }
        if m is not None:
            details.update(files=m.files, data_bytes=m.data_bytes, stored_bytes=m.stored_bytes,
                           kind=m.kind, base=m.base, **(m.changes or {}))
        return cls(run.run_id, r.status, trigger, started,
                   finished if finished is not None else time.time(),
                   r.message, r.snapshot, details)

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> RunSummary:
        """A run read back from the state database (``StateStore.last_runs``)."""
        return cls(row["id"], row["status"], row.get("trigger"), row.get("started"),
                   row.get("finished"), row.get("message") or "", row.get("snapshot"))

    @classmethod
    def ended(cls, run_id: int, trigger: str, status: str, message: str,
              started: float | None = None) -> RunSummary:
        """A run that ended without a run of its own: cancelled before it started, or crashed."""
        now = time.time()
        return cls(run_id, status, trigger, started if started is not None else now, now, message)


def last_finished(rows: Iterable[Mapping[str, Any]]) -> RunSummary | None:
    """The newest run among ``rows`` (state rows, newest first) that is over."""
    for row in rows:
        if row["status"] not in (RunStatus.QUEUED, RunStatus.RUNNING):
            return RunSummary.of_row(row)
    return None
