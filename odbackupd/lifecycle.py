"""One run's lifecycle, the same for the daemon, its drop directories and ``--once``.

:func:`execute` is what every caller runs (in a worker thread: it blocks): it marks the
recorded run as started, calls :func:`odbackupd.runner.run_job` (lock, build, retention,
the run's row, the journal), turns a crash of the run into a failed run of its own (the
daemon stays up, ``--once`` prints one line), and returns the run with its
:class:`~odbackupd.runrecord.RunSummary`: the one shape a finished run is reported in.
"""
from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .runner import JobRun, run_job
from .runrecord import RunSummary
from .runstatus import RunStatus
from .snapshot.builder import Progress, RunResult
from .state import StateStore

log = logging.getLogger("odbackupd.run")


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
class Ran:
    run: JobRun
    summary: RunSummary


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
        run = run_fn(config, request.job, state, trigger=request.trigger, progress=progress,
                     cancel=cancel, run_id=run_id, sources=request.sources, series=request.series)
    except KeyboardInterrupt:  # a second Ctrl-C of --once: the checkpoints stay; say so here
        with contextlib.suppress(sqlite3.Error):
            state.run_finished(run_id, RunStatus.CANCELLED,
                               "interrupted (a second Ctrl-C); the next run resumes it")
        raise
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
    return execute(config, state, request, state.run_queued(request.job, request.trigger),
                   cancel=cancel)


