"""The daemon's runs: per series at most one run plus ONE queued follow-up, all series
together at most ``[daemon] max_parallel_runs`` at once, each run tracked (progress,
``last_run``, the daemon's last failure) and reported the same way — whether a schedule,
a watch, ``odctl backup-now`` or a drop-directory file asked for it.

A trigger during a run asks for "another run after this one"; many such triggers are one
follow-up. A job's own series and its drop series (``JOB+drop``) have separate slots (and
separate locks in the runner), so a dropped file need not wait for the job's backup.

Every run goes through :func:`odbackupd.lifecycle.execute` in a daemon thread with a
:class:`threading.Event` to cancel; its progress is marshalled back to the loop with
``call_soon_threadsafe``, so every attribute here is only touched from the loop thread.
State database writes go through the controller's :class:`~.threads.StateThread`.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..lifecycle import Ran, RunRequest, execute
from ..runner import JobRun, run_job
from ..runrecord import RunSummary, last_finished
from ..runstatus import RunStatus
from ..series import drop_series
from ..snapshot.builder import Progress
from ..state import StateStore
from ..threads import in_thread
from .droppolicy import stored_cleanly
from .errors import Busy
from .events import EventKind
from .limiter import Limiter
from .progress import never_back, progress_dict
from .statedb import StateThread

log = logging.getLogger("odbackupd.controller")

PROGRESS_INTERVAL = 0.5  # seconds between progress events of one run (at most ~2/s)


@dataclass
class Run:
    id: int
    request: RunRequest
    cancel: threading.Event = field(default_factory=threading.Event)
    started: bool = False  # False while waiting for a global slot
    progress: dict | None = None
    last_progress: float = 0.0

    @property
    def job(self) -> str:
        return self.request.job

    @property
    def series(self) -> str:
        return self.request.series_name


@dataclass
class _Slot:
    current: Run | None = None
    queued: Run | None = None
    worker: asyncio.Task | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class RunQueue:
    """``emit(kind, job, data)`` sends an event; ``changed(job)`` tells the controller that a
    job's view changed (JOB_CHANGED, DAEMON_CHANGED follow); ``spawn`` tracks a task."""

    def __init__(self, capacity: int, db: StateThread, emit: Callable[[EventKind, str | None,
                                                                       dict], None],
                 changed: Callable[[str | None], None], spawn: Callable[[Awaitable[Any]], Any],
                 run_fn: Callable[..., JobRun] = run_job) -> None:
        self.limiter = Limiter(capacity)
        self.state: StateStore | None = None
        self.config: Any = None
        self.stopping = False
        self.last_run: dict[str, dict] = {}  # job -> RunSummary.brief() of its newest finished run
        self.last_failure: dict | None = None
        self._failure_series: str | None = None
        self._db = db
        self._emit = emit
        self._changed = changed
        self._spawn = spawn
        self._run_fn = run_fn
        self._slots: dict[str, _Slot] = {}
        self._threads: set[asyncio.Future] = set()

    # ---- views ---------------------------------------------------------------------------
    def _slot(self, series: str) -> _Slot:
        return self._slots.setdefault(series, _Slot())

    def running(self) -> list[tuple[str, Run]]:
        """(series, run) of every started run, by series name."""
        return [(n, s.current) for n, s in sorted(self._slots.items())
                if s.current is not None and s.current.started]

    def job_view(self, job: str) -> tuple[str, bool, Run | None]:
        """(state, queued, running run) of ``job``: its own series' run, else a drop file's."""
        own = self._slots.get(job) or _Slot()
        drop = self._slots.get(drop_series(job))
        cur = own.current
        queued = (cur is not None and not cur.started) or own.queued is not None
        run = cur if cur is not None and cur.started else None
        if run is None and drop is not None and drop.current is not None and drop.current.started:
            run = drop.current
        if run is None:
            return "idle", queued, None
        return ("cancelling" if run.cancel.is_set() else "running"), queued, run

    async def load_last_runs(self, jobs: list[str]) -> None:
        state = self.state
        assert state is not None
        found = await self._db(lambda: {n: last_finished(state.last_runs(n, 5)) for n in jobs})
        for name, summary in found.items():
            if summary is not None:
                self.last_run[name] = summary.brief()

    # ---- asking for runs -----------------------------------------------------------------
    async def request(self, job: str, trigger: str) -> int:
        """Start a run of ``job`` (or queue one follow-up); returns the run id at once."""
        state = self.state
        assert state is not None, "Controller.start() first"
        slot = self._slot(job)
        async with slot.lock:  # the id is recorded off the loop: one request at a time per job
            cur = slot.current
            if cur is not None and not cur.started and not cur.cancel.is_set():
                return cur.id  # still waiting for a slot: this request is the same run
            if slot.queued is not None:
                return slot.queued.id
            run_id = await self._db(lambda: state.run_queued(job, trigger))
            run = Run(run_id, RunRequest(job, trigger))
            if self.stopping:
                await self._end_unstarted(run, "cancelled: the daemon is stopping")
                raise Busy("the daemon is stopping; the run will not start")
            cur = slot.current
            if cur is None:
                slot.current = run
                slot.worker = asyncio.get_running_loop().create_task(self._worker(slot),
                                                                     name=f"job-{job}")
            else:
                slot.queued = run
                log.info("job %s: run %d queued after run %d (%s)", job, run.id, cur.id, trigger,
                         extra={"journal_fields": {"JOB": job, "RUN_ID": str(run.id)}})
        self._changed(job)
        return run.id

    def cancel(self, series: str, message: str = "cancelled") -> bool:
        """Cancel the series' run (it checkpoints; the next run resumes) and its queued one."""
        slot = self._slots.get(series)
        if slot is None:
            return False
        did = False
        if slot.queued is not None:
            run, slot.queued = slot.queued, None
            self._spawn(self._end_unstarted(run, message, report=True))
            did = True
        cur = slot.current
        if cur is not None and not cur.cancel.is_set():
            cur.cancel.set()
            did = True
            log.info("job %s: cancelling run %d", cur.job, cur.id,
                     extra={"journal_fields": {"JOB": cur.job, "RUN_ID": str(cur.id)}})
        return did

    def busy(self, job: str) -> bool:
        slot = self._slots.get(job)
        return slot is not None and (slot.current is not None or slot.queued is not None)

    def stop(self, message: str) -> list[asyncio.Future]:
        """Cancel every run; returns what to wait for."""
        self.stopping = True
        for series in list(self._slots):
            self.cancel(series, message)
        return [*(s.worker for s in self._slots.values() if s.worker is not None), *self._threads]

    async def run_drop_file(self, job: str, path: Path) -> bool:
        """Back up one drop-directory file as its own snapshot in the job's drop series.

        True once the snapshot is complete and verified on every destination: only then
        may the caller delete the file. Counts against ``max_parallel_runs`` like any run.
        """
        if self.config is None or job not in self.config.jobs or self.stopping:
            return False
        state = self.state
        assert state is not None
        await self.limiter.acquire()
        try:
            if self.stopping:
                return False
            series = drop_series(job)
            run = Run(await self._db(lambda: state.run_queued(job, "drop")),
                      RunRequest(job, "drop", series, (Path(path),)))
            slot = self._slot(series)
            slot.current = run  # a drop directory takes one file at a time
            try:
                ran = await self._execute(run)
            finally:
                slot.current = None
        finally:
            self.limiter.release()
        self._finished(run, ran.summary)
        return stored_cleanly(ran.run)

    # ---- running -------------------------------------------------------------------------
    async def _worker(self, slot: _Slot) -> None:
        try:
            while slot.current is not None:
                run = slot.current
                summary: RunSummary | None = None
                if not run.cancel.is_set():
                    await self.limiter.acquire()
                    try:
                        if not run.cancel.is_set():
                            summary = (await self._execute(run)).summary
                    finally:
                        self.limiter.release()
                if summary is None:
                    summary = await self._end_unstarted(run, "cancelled before it started")
                # the job's state is already idle (or the follow-up) when clients that
                # react to RunFinished ask for it
                slot.current, slot.queued = slot.queued, None
                self._finished(run, summary)
        finally:
            slot.worker = None

    async def _execute(self, run: Run) -> Ran:
        """One run in a thread, its progress marshalled back onto the loop."""
        config, state = self.config, self.state
        assert state is not None
        loop = asyncio.get_running_loop()
        run.started = True
        self._emit(EventKind.RUN_STARTED, run.job, {"run_id": run.id,
                                                    "trigger": run.request.trigger})
        self._changed(run.job)

        def on_progress(p: Progress) -> None:  # builder thread
            loop.call_soon_threadsafe(self._on_progress, run, progress_dict(p, time.time()))

        def body() -> Ran:
            return execute(config, state, run.request, run.id, progress=on_progress,
                           cancel=run.cancel, run_fn=self._run_fn)

        fut = in_thread(body, f"run-{run.series}")
        self._threads.add(fut)
        fut.add_done_callback(self._threads.discard)
        try:
            # shielded: a stopped drop directory or daemon cancels the run through its
            # event (it checkpoints and records its end) instead of abandoning it mid-write
            ran: Ran = await asyncio.shield(fut)
        except asyncio.CancelledError:
            run.cancel.set()
            raise
        run.progress = None
        self._record(run, ran.summary)
        return ran

    def _record(self, run: Run, summary: RunSummary) -> None:
        self.last_run[run.job] = summary.brief()
        if summary.status == RunStatus.CANCELLED:
            return
        if not summary.ok:
            self.last_failure = {"job": run.job, "run_id": run.id, "message": summary.message,
                                 "finished": summary.finished}
            self._failure_series = run.series
        elif (self.last_failure and self.last_failure["job"] == run.job
              and self._failure_series == run.series):
            self.last_failure = None  # the series works again

    async def _end_unstarted(self, run: Run, message: str, report: bool = False) -> RunSummary:
        state = self.state
        assert state is not None
        await self._db(lambda: state.run_finished(run.id, RunStatus.CANCELLED, message))
        summary = RunSummary.ended(run.id, run.request.trigger, RunStatus.CANCELLED, message)
        if report:
            self._finished(run, summary)
        return summary

    def _finished(self, run: Run, summary: RunSummary) -> None:
        self._emit(EventKind.RUN_FINISHED, run.job, summary.as_dict())
        self._changed(run.job)

    def _on_progress(self, run: Run, d: dict) -> None:
        if self._slot(run.series).current is not run or not run.started:
            return  # a late callback of a finished run
        phase_changed = run.progress is None or run.progress.get("phase") != d["phase"]
        run.progress = never_back(run.progress, d)
        now = time.monotonic()
        if phase_changed or now - run.last_progress >= PROGRESS_INTERVAL:
            run.last_progress = now
            self._emit(EventKind.PROGRESS, run.job, dict(d))
            self._changed(None)
