"""One run's lifecycle, the same for the daemon, its drop directories and ``--once``.

:func:`execute` is what every caller runs (in a worker thread: it blocks): it marks the
recorded run as started, calls :func:`odbackupd.runner.run_job` (lock, build, retention,
the run's row, the journal), turns a crash of the run into a failed run of its own (the
daemon stays up, ``--once`` prints one line), and returns the run with its
:class:`RunSummary`: the one shape a finished run is reported in (D-Bus ``RunFinished``,
a job's ``last_run``, the run history read back after a restart).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .runner import JobRun, run_job
from .runstatus import RunStatus
from .snapshot.builder import Progress, RunResult
from .state import StateStore

log = logging.getLogger("odbackupd.run")

#: The keys of a job's ``last_run`` (odctl jobs, the Job object's LastRun property).
BRIEF_KEYS = ("run_id", "status", "message", "snapshot", "trigger", "started", "finished")


@dataclass(frozen=True)
class RunRequest:
    """What to run: ``series``/``sources`` name a side series (a drop-directory file)."""

    job: str
    trigger: str
    series: str | None = None
    sources: tuple[Path, ...] | None = None

    @property
    def series_name(self) -> str:
        return self.series or self.job


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
    def of_run(cls, run: JobRun, trigger: str, started: float, finished: float | None = None) -> "RunSummary":
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
        return cls(run.run_id, r.status, trigger, started, finished if finished is not None else time.time(),
                   r.message, r.snapshot, details)

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> "RunSummary":
        """A run read back from the state database (``StateStore.last_runs``)."""
        return cls(row["id"], row["status"], row.get("trigger"), row.get("started"),
                   row.get("finished"), row.get("message") or "", row.get("snapshot"))

    @classmethod
    def ended(cls, run_id: int, trigger: str, status: str, message: str,
              started: float | None = None) -> "RunSummary":
        """A run that ended without a snapshot run: cancelled before it started, crashed."""
        now = time.time()
        return cls(run_id, status, trigger, started if started is not None else now, now, message)


@dataclass(frozen=True)
class Ran:
    run: JobRun
    summary: RunSummary


def last_finished(state: StateStore, job: str) -> RunSummary | None:
    """The job's newest run that is over (either series), as a summary."""
    for row in state.last_runs(job, 5):
        if row["status"] not in (RunStatus.QUEUED, RunStatus.RUNNING):
            return RunSummary.of_row(row)
    return None


def execute(
    config: Any, state: StateStore, request: RunRequest, run_id: int, *,
    progress: Callable[[Progress], None] | None = None, cancel: threading.Event | None = None,
    run_fn: Callable[..., JobRun] = run_job,
) -> Ran:
    """Run the recorded run ``run_id`` (``state.run_queued``) now. Blocks: call it in a
    worker thread. ``run_fn`` is run_job or a wrapper (tests hold a run at its start)."""
    state.run_begin(run_id)
    started = time.time()
    try:
        run = run_fn(config, request.job, state, trigger=request.trigger, progress=progress, cancel=cancel,
                     run_id=run_id, sources=request.sources, series=request.series)
    except Exception as e:  # noqa: BLE001 - a bug in a run must not take the daemon down
        log.exception("job %s: run %d crashed", request.job, run_id,
                      extra={"journal_fields": {"JOB": request.job, "RUN_ID": str(run_id)}})
        msg = f"internal error: {type(e).__name__}: {e}"
        state.run_finished(run_id, RunStatus.FAILED, msg)
        run = JobRun(RunResult(request.job, None, RunStatus.FAILED, msg), run_id)
        return Ran(run, RunSummary.ended(run_id, request.trigger, RunStatus.FAILED, msg, started))
    return Ran(run, RunSummary.of_run(run, request.trigger, started))


def run_now(config: Any, state: StateStore, request: RunRequest, *,
            cancel: threading.Event | None = None) -> Ran:
    """Record and execute a run in this thread (``odbackupd --once``)."""
    return execute(config, state, request, state.run_queued(request.job, request.trigger), cancel=cancel)


