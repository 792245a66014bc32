"""The controller: the daemon's jobs, runs and state, in plain Python on one asyncio loop.

A thin facade over its parts, each a unit of its own:

* :mod:`.runqueue` — runs and their queue, the ``max_parallel_runs`` limiter, progress,
  ``last_run`` and the last failure; every run (schedule, watch, backup-now, drop file,
  resume) takes the one path of :func:`odbackupd.lifecycle.execute`;
* :mod:`.scheduler` (cron), :mod:`.triggers` (watch, drop directory), :mod:`.reload` (what
  a new configuration changes), :mod:`.logins` (login sessions, over the account side's
  :mod:`odbackupd.accounts`), :mod:`.listing` (ListSnapshots), :mod:`.statusline`;
* :mod:`.events` — what subscribers hear; :mod:`.threads` — blocking work off the loop
  (runs and logins in threads, every state database read and write in the state thread).

It knows nothing of D-Bus: the bus adapter (bus/), the tests and the signal handlers in
:mod:`.loop` all drive the same methods, on the loop thread. Errors leave it as the named
errors of :mod:`.errors`. Dicts handed out (job_info, daemon_info, events) are plain
JSON-able values with missing values omitted, never None: the adapter makes them ``a{sv}``.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import Config, ConfigError, load_config
from ..jobview import job_info
from ..metrics import note_login
from ..runner import JobRun, run_job
from ..series import series_config
from ..state import StateStore
from ..threads import in_thread
from .clock import Clock, SystemClock
from .errors import (
    Busy,
    ControllerError,
    Failed,
    InvalidArgs,
    InvalidConfig,
    NoSuchJob,
    NoSuchNotifier,
    named_errors,
)
from .events import Event, EventHub, EventKind
from .listing import snapshot_rows
from .logins import LoginSessions
from .reload import plan_reload
from .runqueue import RunQueue
from .scheduler import Scheduler
from .statedb import StateThread
from .statusline import StatusFacts, status_line
from .triggers import Triggers

__all__ = ["Controller", "Event", "EventKind"]

log = logging.getLogger("odbackupd.controller")


class Controller:
    """Owns the jobs, their runs and triggers. All methods are called on the loop thread."""

    def __init__(self, config: Config, config_path: Path | None, *, clock: Clock | None = None,
                 seed: int | str | None = None, run_fn: Callable[..., JobRun] = run_job) -> None:
        """``clock`` drives the schedules (tests pass a ManualClock); ``seed`` fixes the random
        delays; ``run_fn`` is :func:`~odbackupd.runner.run_job` or a wrapper around it (tests
        hold a real run at its start to observe queueing)."""
        self.config = config
        self.config_path = Path(config_path) if config_path is not None else None
        self.clock = clock or SystemClock()
        self.state: StateStore | None = None
        self.started = time.time()
        self._events = EventHub()
        self._db = StateThread()
        self._tasks: set[asyncio.Task] = set()
        self._runs = RunQueue(config.daemon.max_parallel_runs, self._db, self._events.emit,
                              self._changed, self._spawn, run_fn)
        self._runs.config = config
        self._scheduler = Scheduler(self._on_trigger, clock=self.clock, seed=seed)
        self._triggers = Triggers(self._on_trigger, self._runs.run_drop_file, self._spawn)
        self._logins = LoginSessions(lambda: self.config, self._spawn, self._changed_daemon,
                                     self._note_login)
        self._stopping = False
        self._status_line = ""
        self._reload_lock = asyncio.Lock()
        self._reload_error: str | None = None

    # ---- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Open the state, start timers and triggers, resume interrupted runs, catch up."""
        from ..statefile import open_state

        path = self.config.daemon.state_dir / "state.db"
        self.state = state = await in_thread(lambda: open_state(path), "state-open")
        self._runs.state = state
        stale = await self._db(lambda: state.close_stale_runs(
            "interrupted: the daemon stopped before the run finished"))
        if stale:
            log.info("marked %d runs of a previous daemon as interrupted", len(stale))
        jobs = self.config.jobs
        await self._runs.load_last_runs(list(jobs))
        self._scheduler.update(jobs)
        self._start_triggers(jobs)
        resumed = await self._db(lambda: [n for n in jobs if state.inprogress(n) is not None])
        for name in resumed:
            log.info("job %s: resuming the snapshot interrupted by the last stop", name,
                     extra={"journal_fields": {"JOB": name}})
            await self.backup_now(name, "resume")
        missed = await self._db(lambda: self._scheduler.catch_up(jobs, state))
        for name in missed:
            if name not in resumed:
                log.info("job %s: a scheduled run was missed while the daemon was down; "
                         "running it now",
                         name, extra={"journal_fields": {"JOB": name}})
                await self.backup_now(name, "catch-up")
        self._changed_daemon()

    async def stop(self, timeout: float = 60) -> None:
        """Cancel everything (uploads checkpoint), wait up to ``timeout``, close the state."""
        self._stopping = True
        self._changed_daemon()
        await self._scheduler.stop()
        self._triggers.stop(self._triggers.names())
        self._logins.stop()  # a device login waiting for its user must not hold the stop
        pending = self._runs.stop("cancelled: the daemon stopped; the next start resumes it")
        pending = [*pending, *self._tasks]
        if pending:
            done, not_done = await asyncio.wait(pending, timeout=timeout)
            if not_done:
                log.warning("%d runs did not stop within %.0f s; their last checkpoint stays for "
                            "the next start",
                            len(not_done), timeout)
                for t in not_done:
                    t.cancel()
        if self.state is not None:
            state, self.state = self.state, None
            await self._db(state.close)
        self._db.close()

    # ---- events ------------------------------------------------------------------------
    def subscribe(self, fn: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``fn`` (on the loop thread) with every event; returns the unsubscribe."""
        return self._events.subscribe(fn)

    def _changed(self, name: str | None) -> None:
        if name is not None and name in self.config.jobs:
            self._events.emit(EventKind.JOB_CHANGED, name, self.job_info(name))
        self._changed_daemon()

    def _changed_daemon(self) -> None:
        self._status_line = self._compute_status_line()
        self._events.emit(EventKind.DAEMON_CHANGED, None, self.daemon_info())

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- queries -----------------------------------------------------------------------
    def job_names(self) -> list[str]:
        return sorted(self.config.jobs)

    def _job(self, name: str) -> Any:
        try:
            return self.config.jobs[name]
        except KeyError:
            known = ", ".join(sorted(self.config.jobs)) or "none"
            raise NoSuchJob(f"no job {name!r} in the configuration (jobs: {known})",
                            job=name) from None

    def job_info(self, name: str) -> dict:
        job = self._job(name)
        state, queued, run = self._runs.job_view(name)
        return job_info(name, job, state=state, queued=queued, run_id=run.id if run else None,
                        progress=run.progress if run else None,
                        next_run=self._scheduler.next_run(name) if job.schedule else None,
                        last=self._runs.last_run.get(name))

    def daemon_info(self) -> dict:
        running = sorted({run.job for _, run in self._runs.running()})
        info: dict[str, Any] = {
            "version": __version__,
            "state": "stopping" if self._stopping else ("running" if running else "idle"),
            "status_line": self._status_line or self._compute_status_line(),
            "started": self.started,
            "jobs": len(self.config.jobs),
            "running": running,
        }
        if self.config_path is not None:
            info["config_path"] = str(self.config_path)
        if self._runs.last_failure:
            info["last_failure"] = dict(self._runs.last_failure)
        if self._reload_error:
            info["reload_error"] = self._reload_error
        return info

    def _compute_status_line(self) -> str:
        nxt = [(t, n) for n in self.config.jobs if (t := self._scheduler.next_run(n)) is not None]
        return status_line(StatusFacts(
            stopping=self._stopping,
            running=[(series, run.progress or {}) for series, run in self._runs.running()],
            jobs=len(self.config.jobs), next_run=min(nxt) if nxt else None,
            reload_error=self._reload_error, last_failure=self._runs.last_failure))

    @property
    def status_line(self) -> str:
        return self._status_line or self._compute_status_line()

    async def list_snapshots(self, name: str) -> list[dict]:
        """Complete snapshots of ``name`` on every destination, oldest first per destination.
        ``JOB+drop`` names the series of JOB's drop-directory files."""
        job = series_config(self.config, name)
        if job is None:
            self._job(name)  # raises NoSuchJob naming what was asked for
        config, state = self.config, self.state

        def rows() -> list[dict]:
            with named_errors(f"listing {name}"):
                return snapshot_rows(config, job, name, state)

        return await in_thread(rows, f"list-{name}")

    # ---- runs --------------------------------------------------------------------------
    async def backup_now(self, name: str, trigger: str = "manual") -> int:
        """Start a run of ``name`` (or queue one follow-up); returns the run id at once."""
        job = self._job(name)
        if not job.sources:
            raise InvalidArgs(f"job {name!r} has no sources: it only backs up the files put in its "
                              f"drop directory ({job.drop_dir}), as they arrive", argument="job")
        if self._stopping:
            raise Busy("the daemon is stopping; the run will not start")
        with named_errors(f"job {name}"):
            return await self._runs.request(name, trigger)

    def cancel(self, name: str) -> bool:
        """Cancel the job's run (it checkpoints; the next run resumes) and its queued one."""
        self._job(name)
        did = self._runs.cancel(name)
        if did:
            self._changed(name)
        return did

    async def run_drop_file(self, name: str, path: Path) -> bool:
        """One drop-directory file as its own snapshot (see RunQueue.run_drop_file)."""
        return await self._runs.run_drop_file(name, path)

    def _on_trigger(self, name: str, trigger: str) -> None:
        """The schedule or a trigger (a watch …) asks for a run of ``name``."""
        self._spawn(self._trigger(name, trigger))

    async def _trigger(self, name: str, trigger: str) -> None:
        try:
            run_id = await self.backup_now(name, trigger)
            log.debug("job %s: %s trigger → run %d", name, trigger, run_id)
        except ControllerError as e:
            log.info("job %s: %s trigger ignored: %s", name, trigger, e)

    def _start_triggers(self, jobs: dict[str, Any]) -> None:
        self._triggers.start(jobs, [self.config.daemon.state_dir, self.config.daemon.spool_dir])

    # ---- reload ------------------------------------------------------------------------
    async def reload(self) -> list[str]:
        """Re-read the configuration; an invalid one is refused and the old one kept."""
        if self.config_path is None:
            raise InvalidConfig("the daemon runs on the embedded default configuration; there is "
                                "no file to re-read")
        async with self._reload_lock:
            path = self.config_path
            try:
                new = await in_thread(lambda: load_config(path), "reload")
            except (ConfigError, OSError) as e:
                why = str(e) if isinstance(e, ConfigError) else f"{path}: {e.strerror or e}"
                self._reload_error = why.splitlines()[0] if why else "invalid configuration"
                self._changed_daemon()
                raise InvalidConfig(f"{why}\nkeeping the previous configuration") from e
            self._reload_error = None
            plan = plan_reload(self.config, new)
            with named_errors("reload"):  # before anything changes: a failure keeps it all
                await self._runs.load_last_runs(plan.added)
            for name in plan.removed:
                if self._runs.busy(name):
                    self._runs.cancel(name, "cancelled: the job was removed from the configuration")
                    plan.warnings.append(f"job {name} was removed from the configuration: "
                                         "its run was cancelled")
            self._triggers.stop([n for n in plan.removed + plan.retrigger if n in self._triggers])
            self.config = self._runs.config = plan.config
            self._runs.limiter.set_capacity(plan.config.daemon.max_parallel_runs)
            self._scheduler.update(plan.config.jobs)
            self._start_triggers({n: plan.config.jobs[n] for n in plan.added + plan.retrigger})
            log.info("configuration reloaded from %s: %d jobs (%s)", path, len(plan.config.jobs),
                     plan.summary())
            for w in plan.warnings:
                log.warning("%s", w)
            for name in plan.config.jobs:
                self._events.emit(EventKind.JOB_CHANGED, name, self.job_info(name))
            self._changed_daemon()
            return plan.warnings

    # ---- notifiers -------------------------------------------------------------------------
    async def notify_test(self, name: str) -> dict:
        """Send a test message through ``[notify.NAME]`` as the daemon would: with its
        credentials ($CREDENTIALS_DIRECTORY) and from its network namespace."""
        from ..notify.senders import DeliveryError, test_message

        config = self.config
        try:
            with named_errors(f"notifier {name}"):
                kind = await in_thread(lambda: test_message(config, name), f"notify-{name}")
        except LookupError as e:
            raise NoSuchNotifier(str(e.args[0]), notifier=name) from None
        except DeliveryError as e:
            raise Failed(f"notifier {name}: {e}") from None
        return {"notifier": name, "type": kind, "delivered": True}

    # ---- accounts and login ------------------------------------------------------------
    async def _note_login(self, account: str, ok: bool) -> None:
        config, state = self.config, self.state
        await self._db(lambda: note_login(config, state, account, ok))

    async def start_login(self, account: str, flow: str = "device") -> dict:
        """Begin an interactive login; the device flow then completes in the background.
        An app-only account's credential is checked instead (state ``logged_in``)."""
        return await self._logins.start(account, flow)

    async def complete_login(self, account: str, redirected_url: str) -> dict:
        """Finish a browser login with the URL the browser was redirected to."""
        return await self._logins.complete(account, redirected_url)

    def login_status(self, account: str) -> dict:
        return self._logins.status(account)

    async def logout(self, account: str) -> None:
        await self._logins.logout(account)
