"""The controller: jobs, runs and their state, in plain Python on one asyncio loop.

It knows nothing of D-Bus: the bus adapter (bus/), the tests and the signal handlers in
:mod:`.loop` all drive the same methods. Runs execute :func:`odbackupd.runner.run_job` in a
daemon thread each, with a :class:`threading.Event` to cancel; the thread's progress is
marshalled back to the loop with ``call_soon_threadsafe``, so every attribute here is only
touched from the loop thread.

Per job: at most one run at a time plus ONE queued follow-up (a trigger during a run asks
for "another run after this one", and many such triggers are one follow-up). Over all jobs
at most ``[daemon] max_parallel_runs`` run at once; the others wait their turn in order.

Dicts handed out (job_info, daemon_info, events) are plain JSON-able values with missing
values omitted, never None: the D-Bus adapter turns them into ``a{sv}``.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from .. import __version__
from ..config import Config, ConfigError, load_config
from ..metrics import note_login
from ..runner import JobRun, drop_series, open_destinations, run_job, series_config
from ..signing import signed_by
from ..snapshot.builder import COMPLETED, COMPLETED_WITH_WARNINGS, Progress
from ..snapshot.volumes import volume_number
from ..state import StateStore
from .clock import Clock, SystemClock
from .errors import ControllerError, InvalidArgs, InvalidConfig, NoSuchAccount, NoSuchJob, NoSuchNotifier
from .errors import NotLoggedIn as NotLoggedInError
from .scheduler import Scheduler

log = logging.getLogger("odbackupd.controller")

PROGRESS_INTERVAL = 0.5  # seconds between progress events of one job (at most ~2/s)
STATUS_MAX = 200  # characters of the one-line status (sd_notify STATUS=, odctl status)


@dataclass(frozen=True)
class Event:
    """Something a subscriber (the D-Bus adapter, sd_notify, a test) may want to know.

    kind: "run_started" | "run_finished" | "progress" | "job_changed" | "daemon_changed".
    """

    kind: str
    job: str | None
    data: dict


@dataclass
class _Run:
    id: int
    job: str
    trigger: str
    cancel: threading.Event = field(default_factory=threading.Event)
    started: bool = False  # False while waiting for a global slot
    progress: dict | None = None
    last_progress: float = 0.0


@dataclass
class _JobSlot:
    current: _Run | None = None
    queued: _Run | None = None
    worker: asyncio.Task | None = None
    last_run: dict | None = None


class _Limiter:
    """A FIFO counting semaphore whose capacity a reload can change."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_use = 0
        self._waiters: collections.deque[asyncio.Future] = collections.deque()

    async def acquire(self) -> None:
        if self.in_use < self.capacity and not self._waiters:
            self.in_use += 1
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # we were handed a slot as we were cancelled: give it back
            else:
                self._waiters.remove(fut)
            raise

    def release(self) -> None:
        self.in_use -= 1
        self._wake()

    def set_capacity(self, capacity: int) -> None:
        self.capacity = capacity
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_use < self.capacity:
            fut = self._waiters.popleft()
            if not fut.done():
                self.in_use += 1
                fut.set_result(None)


def _in_thread(fn: Callable[[], Any], name: str) -> asyncio.Future:
    """Run blocking ``fn`` in a daemon thread; the result arrives on the loop.

    Daemon threads (not an executor) so that a run ignoring its cancel event cannot hold
    the process past the unit's stop timeout: everything it did is checkpointed already.
    """
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def _settle(ok: bool, value: Any) -> None:
        if fut.done():
            return
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)

    def _body() -> None:
        try:
            value = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting coroutine
            loop.call_soon_threadsafe(_settle, False, e)
        else:
            loop.call_soon_threadsafe(_settle, True, value)

    threading.Thread(target=_body, name=name, daemon=True).start()
    return fut


def _clean(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def finished_dict(run_id: int, trigger: str, started: float, run: JobRun) -> dict:
    """A finished run as RunFinished carries it: ``resumed``/``reused_volumes`` tell a user
    that an interrupted snapshot was carried on, and ``login_needed`` that it failed for
    want of ``odctl login`` (odctl's exit code says so)."""
    r = run.result
    m = r.manifest
    return _clean({
        "run_id": run_id, "status": r.status, "message": r.message, "snapshot": r.snapshot,
        "trigger": trigger, "started": started, "finished": time.time(),
        "files": m.files if m else None, "data_bytes": m.data_bytes if m else None,
        "stored_bytes": m.stored_bytes if m else None,
        "warnings": sum(r.warning_counts.values()),
        "resumed": r.resumed, "reused_volumes": r.reused_volumes,
        "login_needed": True if run.login_needed else None,
        "kind": m.kind if m else None, "base": m.base if m else None,
        **({k: v for k, v in (m.changes or {}).items()} if m is not None and m.changes else {}),
        "prune_errors": list(run.prune_errors) or None,  # retention failed: the snapshot is fine
    })


def progress_dict(p: Progress, now: float) -> dict:
    """The progress a client shows: what was read, what is stored, and a percentage when
    the previous snapshot's size gives an estimate."""
    elapsed = max(now - p.started, 1e-6)
    out: dict[str, Any] = {
        "phase": p.phase, "files": p.files, "data_bytes": p.data_bytes,
        "bytes_done": p.data_bytes, "rate": round(p.data_bytes / elapsed, 1),
        "volume": p.current_volume, "volumes_done": p.volumes_stored,
    }
    if p.estimated_total:
        out["bytes_total"] = p.estimated_total
    if p.phase == "done":
        out["percent"] = 100.0
    else:
        # half for building, half for storing: reading fast and uploading slowly (OneDrive)
        # shows as such, and the figure does not fall back when building ends
        built = p.phase in ("uploading", "finishing")
        build = 1.0 if built else (min(1.0, p.data_bytes / p.estimated_total) if p.estimated_total else None)
        if build:
            expected = p.volumes_built / build if p.volumes_built else 0
            store = min(1.0, p.volumes_stored / expected) if expected else 0.0
            out["percent"] = round(min(99.0, 50.0 * (build + store)), 1)
    return out


class Controller:
    """Owns the jobs, their runs and triggers. All methods are called on the loop thread."""

    def __init__(self, config: Config, config_path: Path | None, *, clock: Clock | None = None,
                 seed: int | str | None = None, run_fn: Callable[..., JobRun] = run_job) -> None:
        """``clock`` drives the schedules (tests pass a ManualClock); ``seed`` fixes the random
        delays; ``run_fn`` is :func:`~odbackupd.runner.run_job` or a wrapper around it (tests
        hold a real run at its start to observe queueing)."""
        self.config = config
        self._run_fn = run_fn
        self.config_path = Path(config_path) if config_path is not None else None
        self.clock = clock or SystemClock()
        self.state: StateStore | None = None
        self.started = time.time()
        self._slots: dict[str, _JobSlot] = {}
        self._limiter = _Limiter(config.daemon.max_parallel_runs)
        self._subscribers: list[Callable[[Event], None]] = []
        self._scheduler = Scheduler(self._on_schedule, clock=self.clock, seed=seed)
        self._tasks: set[asyncio.Task] = set()
        self._stopping = False
        self._last_failure: dict | None = None
        self._status_line = ""
        self._logins: dict[str, dict] = {}
        self._authenticators: dict[str, Any] = {}
        self._triggers: dict[str, list[Any]] = {}  # job -> started watcher / drop-dir objects
        self._reload_lock = asyncio.Lock()
        self._drop_cancels: set[threading.Event] = set()
        self._drop_threads: set[asyncio.Future] = set()
        self._reload_error: str | None = None

    # ---- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Open the state, start timers and triggers, resume interrupted runs, catch up."""
        self.state = await _in_thread(lambda: self._open_state(), "state-open")
        stale = self.state.close_stale_runs("interrupted: the daemon stopped before the run finished")
        if stale:
            log.info("marked %d runs of a previous daemon as interrupted", len(stale))
        for name in self.config.jobs:
            self._slot(name).last_run = self._last_run_from_state(name)
        self._scheduler.update(self.config.jobs)
        self._start_triggers(self.config.jobs)
        resumed = [n for n in self.config.jobs if self.state.inprogress(n) is not None]
        for name in resumed:
            log.info("job %s: resuming the snapshot interrupted by the last stop", name,
                     extra={"journal_fields": {"JOB": name}})
            await self.backup_now(name, "resume")
        for name in self._scheduler.catch_up(self.config.jobs, self.state):
            if name not in resumed:
                log.info("job %s: a scheduled run was missed while the daemon was down; running it now",
                         name, extra={"journal_fields": {"JOB": name}})
                await self.backup_now(name, "catch-up")
        self._changed_daemon()

    def _open_state(self) -> StateStore:
        from ..statefile import open_state

        return open_state(self.config.daemon.state_dir / "state.db")

    async def stop(self, timeout: float = 60) -> None:
        """Cancel everything (uploads checkpoint), wait up to ``timeout``, close the state."""
        self._stopping = True
        self._changed_daemon()
        await self._scheduler.stop()
        self._stop_triggers(list(self._triggers))
        workers = []
        for ev in self._drop_cancels:
            ev.set()
        for name, slot in self._slots.items():
            self._cancel_slot(name, slot, "cancelled: the daemon stopped; the next start resumes it")
            if slot.worker is not None:
                workers.append(slot.worker)
        pending = [*workers, *self._tasks, *self._drop_threads]
        if pending:
            done, not_done = await asyncio.wait(pending, timeout=timeout)
            if not_done:
                log.warning("%d runs did not stop within %.0f s; their last checkpoint stays for the next start",
                            len(not_done), timeout)
                for t in not_done:
                    t.cancel()
        for auth_login in self._logins.values():
            ev = auth_login.get("_cancel")
            if ev is not None:
                ev.set()
        if self.state is not None:
            self.state.close()
            self.state = None

    # ---- events ------------------------------------------------------------------------
    def subscribe(self, fn: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``fn`` (on the loop thread) with every event; returns the unsubscribe."""
        self._subscribers.append(fn)

        def unsubscribe() -> None:
            if fn in self._subscribers:
                self._subscribers.remove(fn)

        return unsubscribe

    def _emit(self, kind: str, job: str | None, data: dict) -> None:
        ev = Event(kind, job, data)
        for fn in list(self._subscribers):
            try:
                fn(ev)
            except Exception:  # noqa: BLE001 - one bad subscriber must not break runs
                log.exception("event subscriber failed on %s", kind)

    def _changed_job(self, name: str) -> None:
        if name in self.config.jobs:
            self._emit("job_changed", name, self.job_info(name))
        self._changed_daemon()

    def _changed_daemon(self) -> None:
        line = self._compute_status_line()
        self._status_line = line
        self._emit("daemon_changed", None, self.daemon_info())

    # ---- queries -----------------------------------------------------------------------
    def job_names(self) -> list[str]:
        return sorted(self.config.jobs)

    def _job(self, name: str) -> Any:
        return _lookup(self.config.jobs, "job", name, NoSuchJob)

    def _slot(self, name: str) -> _JobSlot:
        return self._slots.setdefault(name, _JobSlot())

    def job_info(self, name: str) -> dict:
        job = self._job(name)
        slot = self._slot(name)
        cur = slot.current
        running = cur is not None and cur.started
        state = "idle"
        if running:
            state = "cancelling" if cur.cancel.is_set() else "running"
        info: dict[str, Any] = {
            "name": name,
            "state": state,
            "queued": (cur is not None and not cur.started) or slot.queued is not None,
            "sources": [str(s) for s in job.sources],
            "destinations": list(job.destinations),
            "encrypted": bool(job.recipients),
            "watch": bool(job.watch),
        }
        if running:
            info["run_id"] = cur.id
            if cur.progress is not None:
                info["progress"] = dict(cur.progress)
        if job.schedule:
            info["schedule"] = job.schedule
            nxt = self._scheduler.next_run(name)
            if nxt is not None:
                info["next_run"] = nxt
        if job.drop_dir is not None:
            info["drop_dir"] = str(job.drop_dir)
        if slot.last_run:
            info["last_run"] = dict(slot.last_run)
        return info

    def daemon_info(self) -> dict:
        running = sorted(n for n, s in self._slots.items() if s.current is not None and s.current.started)
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
        if self._last_failure:
            info["last_failure"] = dict(self._last_failure)
        if self._reload_error:
            info["reload_error"] = self._reload_error
        return info

    def _compute_status_line(self) -> str:
        parts = []
        running = [(n, s.current) for n, s in sorted(self._slots.items())
                   if s.current is not None and s.current.started]
        if self._stopping:
            parts.append("stopping")
        if running:
            for name, run in running:
                p = run.progress or {}
                bit = f"running {name}"
                if "percent" in p:
                    bit += f" {p['percent']:.0f}%"
                if p.get("volume"):
                    bit += f" ({_volume_label(p['volume'])})"
                parts.append(bit)
        elif not self._stopping:
            n = len(self.config.jobs)
            parts.append(f"idle; {n} job{'' if n == 1 else 's'}")
            nxt = [(t, n) for n in self.config.jobs if (t := self._scheduler.next_run(n)) is not None]
            if nxt:
                t, n = min(nxt)
                parts.append(f"next: {n} at {time.strftime('%Y-%m-%d %H:%M', time.localtime(t))}")
        if self._reload_error:
            parts.append(f"reload failed, old configuration kept: {self._reload_error}")
        if self._last_failure:
            f = self._last_failure
            parts.append(f"last failure: {f['job']} (run {f['run_id']}): {f['message']}")
        line = "; ".join(parts).replace("\n", " ")
        return line if len(line) <= STATUS_MAX else line[: STATUS_MAX - 1] + "…"

    @property
    def status_line(self) -> str:
        return self._status_line or self._compute_status_line()

    def _last_run_from_state(self, name: str) -> dict | None:
        assert self.state is not None
        for r in self.state.last_runs(name, 5):
            if r["status"] not in ("queued", "running"):
                return self._run_summary(r)
        return None

    @staticmethod
    def _run_summary(r: dict) -> dict:
        return _clean({
            "run_id": r["id"], "status": r["status"], "message": r.get("message") or "",
            "snapshot": r.get("snapshot"), "trigger": r.get("trigger"),
            "started": r.get("started"), "finished": r.get("finished"),
        })

    async def list_snapshots(self, name: str) -> list[dict]:
        """Complete snapshots of ``name`` on every destination, oldest first per destination.
        ``JOB+drop`` names the series of JOB's drop-directory files."""
        job = series_config(self.config, name)
        if job is None:
            self._job(name)  # raises NoSuchJob naming what was asked for
        config, state = self.config, self.state

        def _list() -> list[dict]:
            from ..destinations.base import DestinationError
            from ..destinations.base import NotLoggedIn as DestNotLoggedIn
            from ..snapshot.catalog import list_snapshots

            out = []
            for dest in open_destinations(config, job, state):
                try:
                    for m in list_snapshots(dest, name, config.daemon.hostname).complete:
                        out.append({
                            "id": m.snapshot, "destination": dest.name, "started": m.started,
                            "finished": m.finished, "files": m.files, "data_bytes": m.data_bytes,
                            "stored_bytes": m.stored_bytes, "volumes": len(m.volumes), "status": "complete",
                            "host": m.host, "kind": m.kind, "base": m.base or "", "encrypted": m.encrypted,
                            "sequence": m.sequence, "signed_by": signed_by(m.raw or {}) or "",
                            "warnings": dict(m.warnings),  # counts per kind, as offline
                        })
                except DestNotLoggedIn as e:
                    raise NotLoggedInError(str(e)) from e
                except DestinationError as e:
                    raise ControllerError(f"{dest.describe()}: {e}") from e
                finally:
                    dest.close()
            return out

        return await _in_thread(_list, f"list-{name}")

    # ---- runs --------------------------------------------------------------------------
    async def backup_now(self, name: str, trigger: str = "manual") -> int:
        """Start a run of ``name`` (or queue one follow-up); returns the run id at once."""
        job = self._job(name)
        if not job.sources:
            raise InvalidArgs(f"job {name!r} has no sources: it only backs up the files put in its "
                              f"drop directory ({job.drop_dir}), as they arrive")
        if self._stopping:
            raise ControllerError("the daemon is stopping; the run will not start")
        assert self.state is not None, "Controller.start() first"
        slot = self._slot(name)
        cur = slot.current
        if cur is not None and not cur.started and not cur.cancel.is_set():
            return cur.id  # still waiting for a slot: this request is the same run
        if slot.queued is not None:
            return slot.queued.id
        run = _Run(self.state.run_queued(name, trigger), name, trigger)
        if cur is None:
            slot.current = run
            slot.worker = asyncio.get_running_loop().create_task(self._worker(name, slot), name=f"job-{name}")
        else:
            slot.queued = run
            log.info("job %s: run %d queued after run %d (%s)", name, run.id, cur.id, trigger,
                     extra={"journal_fields": {"JOB": name, "RUN_ID": str(run.id)}})
        self._changed_job(name)
        return run.id

    def cancel(self, name: str) -> bool:
        """Cancel the job's run (it checkpoints; the next run resumes) and its queued one."""
        self._job(name)
        slot = self._slots.get(name)
        if slot is None:
            return False
        did = self._cancel_slot(name, slot, "cancelled")
        if did:
            self._changed_job(name)
        return did

    def _cancel_slot(self, name: str, slot: _JobSlot, message: str) -> bool:
        did = False
        if slot.queued is not None:
            self._finish_unstarted(slot.queued, message)
            slot.queued = None
            did = True
        cur = slot.current
        if cur is not None and not cur.cancel.is_set():
            cur.cancel.set()
            did = True
            log.info("job %s: cancelling run %d", name, cur.id,
                     extra={"journal_fields": {"JOB": name, "RUN_ID": str(cur.id)}})
        return did

    def _finish_unstarted(self, run: _Run, message: str) -> None:
        assert self.state is not None
        self.state.run_finished(run.id, "cancelled", message)
        now = time.time()
        data = {"run_id": run.id, "status": "cancelled", "message": message, "trigger": run.trigger,
                "started": now, "finished": now}
        self._emit("run_finished", run.job, data)

    async def _worker(self, name: str, slot: _JobSlot) -> None:
        try:
            while slot.current is not None:
                run = slot.current
                if run.cancel.is_set():
                    self._finish_unstarted(run, "cancelled before it started")
                else:
                    finished: dict | None = None
                    await self._limiter.acquire()
                    try:
                        if run.cancel.is_set():
                            self._finish_unstarted(run, "cancelled before it started")
                        else:
                            finished = await self._execute(name, run)
                    finally:
                        self._limiter.release()
                    if finished is not None:
                        # the job's state is already idle (or the follow-up) when clients
                        # that react to RunFinished ask for it
                        slot.current, slot.queued = slot.queued, None
                        self._emit("run_finished", name, finished)
                        self._changed_job(name)
                        continue
                slot.current, slot.queued = slot.queued, None
                self._changed_job(name)
        finally:
            slot.worker = None

    async def _execute(self, name: str, run: _Run) -> dict:
        """One run in a thread, its progress marshalled back onto the loop; returns the
        run_finished data (the worker emits it once the slot has moved on)."""
        assert self.state is not None
        config, state = self.config, self.state
        loop = asyncio.get_running_loop()
        run.started = True
        state.run_begin(run.id)
        started = time.time()
        self._emit("run_started", name, {"run_id": run.id, "trigger": run.trigger})
        self._changed_job(name)

        def on_progress(p: Progress) -> None:  # builder thread
            d = progress_dict(p, time.time())
            loop.call_soon_threadsafe(self._on_progress, name, run, d)

        try:
            result: JobRun = await _in_thread(
                lambda: self._run_fn(config, name, state, trigger=run.trigger, progress=on_progress,
                                cancel=run.cancel, run_id=run.id),
                f"run-{name}",
            )
            data = finished_dict(run.id, run.trigger, started, result)
        except Exception as e:  # noqa: BLE001 - a bug in a run must not take the daemon down
            log.exception("job %s: run %d crashed", name, run.id)
            msg = f"internal error: {type(e).__name__}: {e}"
            state.run_finished(run.id, "failed", msg)
            data = {"run_id": run.id, "status": "failed", "message": msg, "trigger": run.trigger,
                    "started": started, "finished": time.time()}
        run.progress = None
        self._slot(name).last_run = {k: data[k] for k in
                                     ("run_id", "status", "message", "snapshot", "trigger", "started", "finished")
                                     if k in data}
        if data["status"] not in (COMPLETED, COMPLETED_WITH_WARNINGS, "cancelled"):
            self._last_failure = {"job": name, "run_id": run.id, "message": data.get("message", ""),
                                  "finished": data["finished"]}
        elif data["status"] != "cancelled" and self._last_failure and self._last_failure["job"] == name:
            self._last_failure = None  # the job works again
        return data

    def _on_progress(self, name: str, run: _Run, d: dict) -> None:
        if self._slot(name).current is not run or not run.started:
            return  # a late callback of a finished run
        phase_changed = run.progress is None or run.progress.get("phase") != d["phase"]
        if "percent" in d and run.progress and d["percent"] < run.progress.get("percent", 0):
            d["percent"] = run.progress["percent"]  # estimates wobble; progress never goes back
        run.progress = d
        now = time.monotonic()
        if phase_changed or now - run.last_progress >= PROGRESS_INTERVAL:
            run.last_progress = now
            self._emit("progress", name, dict(d))
            self._changed_daemon()

    def _on_schedule(self, name: str, trigger: str) -> None:
        self._spawn(self._trigger(name, trigger))

    def on_watch_trigger(self, name: str) -> None:
        """A watcher saw changes settle in ``name``'s sources."""
        self._spawn(self._trigger(name, "watch"))

    async def _trigger(self, name: str, trigger: str) -> None:
        try:
            run_id = await self.backup_now(name, trigger)
            log.debug("job %s: %s trigger → run %d", name, trigger, run_id)
        except ControllerError as e:
            log.info("job %s: %s trigger ignored: %s", name, trigger, e)

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def run_drop_file(self, name: str, path: Path) -> bool:
        """Back up one drop-directory file as its own snapshot in the job's side series.

        True once the snapshot is complete and verified on every destination: only then
        may the caller delete the file. Counts against ``max_parallel_runs`` like any run.
        """
        if name not in self.config.jobs or self._stopping:
            return False
        assert self.state is not None
        config, state = self.config, self.state
        await self._limiter.acquire()
        try:
            if self._stopping:
                return False
            run_id = state.run_queued(name, "drop")
            state.run_begin(run_id)
            self._emit("run_started", name, {"run_id": run_id, "trigger": "drop"})
            cancel = threading.Event()
            self._drop_cancels.add(cancel)
            started = time.time()
            fut = _in_thread(
                lambda: self._run_fn(config, name, state, trigger="drop", cancel=cancel, run_id=run_id,
                                     sources=[path], series=drop_series(name)),
                f"drop-{name}",
            )
            self._drop_threads.add(fut)
            fut.add_done_callback(self._drop_threads.discard)
            try:
                # shielded: if the drop directory is stopped, the run checkpoints and ends
                # through its cancel event instead of being abandoned mid-write
                result: JobRun = await asyncio.shield(fut)
            except asyncio.CancelledError:
                cancel.set()
                raise
            finally:
                self._drop_cancels.discard(cancel)
            r = result.result
            self._emit("run_finished", name, finished_dict(run_id, "drop", started, result))
            if not r.ok:
                self._last_failure = {"job": name, "run_id": run_id, "message": r.message,
                                      "finished": time.time()}
                self._changed_daemon()
            # a warning means the file changed while it was read: keep it for the next try
            return r.ok and not r.warning_counts
        finally:
            self._limiter.release()

    # ---- triggers (watch, drop_dir) -------------------------------------------------------
    def _start_triggers(self, jobs: dict[str, Any]) -> None:
        for name, job in jobs.items():
            started = []
            if getattr(job, "watch", False):
                w = self._make_watcher(name, job)
                if w is not None:
                    started.append(w)
            if getattr(job, "drop_dir", None) is not None:
                d = self._make_dropdir(name, job)
                if d is not None:
                    started.append(d)
            if started:
                self._triggers[name] = started

    def _stop_triggers(self, names: list[str]) -> None:
        for name in names:
            for t in self._triggers.pop(name, []):
                try:
                    t.stop()
                except Exception:  # noqa: BLE001
                    log.exception("job %s: stopping a trigger failed", name)

    def _make_watcher(self, name: str, job: Any) -> Any:
        """A job's watcher, whose walk of the trees then runs in the background: the loop
        (D-Bus, timers, the watchdog) is served in between batches of directories."""
        from .watcher import JobWatcher

        try:
            w = JobWatcher(
                asyncio.get_running_loop(), name, list(job.sources), quiet_period=job.quiet_period,
                max_delay=job.max_delay, exclude=list(job.exclude), one_file_system=job.one_file_system,
                skip_paths=[self.config.daemon.state_dir, self.config.daemon.spool_dir],
                on_trigger=self.on_watch_trigger)
        except Exception as e:  # noqa: BLE001
            _trigger_failed(name, "watch", e)
            return None
        self._spawn(self._start_watcher(name, w))
        return w

    async def _start_watcher(self, name: str, w: Any) -> None:
        try:
            await w.start_async()
        except Exception as e:  # noqa: BLE001 - e.g. inotify limits: say so, keep the schedule
            _trigger_failed(name, "watch", e)
            started = self._triggers.get(name, [])
            if w in started:
                started.remove(w)

    def _make_dropdir(self, name: str, job: Any) -> Any:
        from .dropdir import DropDir

        return _start_trigger(name, "drop_dir", lambda: DropDir(
            asyncio.get_running_loop(), name, Path(job.drop_dir),
            on_file=lambda p, _n=name: self.run_drop_file(_n, p), settle=job.quiet_period))

    # ---- reload ------------------------------------------------------------------------
    async def reload(self) -> list[str]:
        """Re-read the configuration; an invalid one is refused and the old one kept."""
        if self.config_path is None:
            raise InvalidConfig("the daemon runs on the embedded default configuration; there is no file to re-read")
        async with self._reload_lock:
            path = self.config_path
            try:
                new = await _in_thread(lambda: load_config(path), "reload")
            except (ConfigError, OSError) as e:
                why = str(e) if isinstance(e, ConfigError) else f"{path}: {e.strerror or e}"
                self._reload_error = why.splitlines()[0] if why else "invalid configuration"
                self._changed_daemon()
                raise InvalidConfig(f"{why}\nkeeping the previous configuration") from e
            self._reload_error = None
            warnings = list(new.warnings)
            old = self.config
            for key in ("state_dir", "spool_dir"):
                if getattr(new.daemon, key) != getattr(old.daemon, key):
                    warnings.append(f"[daemon] {key} changes take effect at the next start; "
                                    f"still using {getattr(old.daemon, key)}")
            new = dataclasses.replace(new, daemon=dataclasses.replace(
                new.daemon, state_dir=old.daemon.state_dir, spool_dir=old.daemon.spool_dir))
            removed = sorted(set(old.jobs) - set(new.jobs))
            added = sorted(set(new.jobs) - set(old.jobs))
            changed = sorted(n for n in set(old.jobs) & set(new.jobs) if old.jobs[n] != new.jobs[n])
            for name in removed:
                slot = self._slots.get(name)
                if slot is not None and (slot.current or slot.queued):
                    self._cancel_slot(name, slot, "cancelled: the job was removed from the configuration")
                    warnings.append(f"job {name} was removed from the configuration: its run was cancelled")
            # watches are re-walked only when what they watch changed (a big tree takes a
            # second per 50,000 directories, on the loop)
            retrigger = [n for n in changed if _trigger_key(old.jobs[n]) != _trigger_key(new.jobs[n])]
            self._stop_triggers([n for n in removed + retrigger if n in self._triggers])
            self.config = new
            self._limiter.set_capacity(new.daemon.max_parallel_runs)
            for name in added:
                self._slot(name).last_run = self._last_run_from_state(name)
            self._scheduler.update(new.jobs)
            self._start_triggers({n: new.jobs[n] for n in added + retrigger})
            log.info("configuration reloaded from %s: %d jobs (added: %s; removed: %s; changed: %s)",
                     path, len(new.jobs), ", ".join(added) or "none", ", ".join(removed) or "none",
                     ", ".join(changed) or "none")
            for w in warnings:
                log.warning("%s", w)
            for name in new.jobs:
                self._emit("job_changed", name, self.job_info(name))
            self._changed_daemon()
            return warnings

    # ---- notifiers -------------------------------------------------------------------------
    async def notify_test(self, name: str) -> dict:
        """Send a test message through ``[notify.NAME]`` as the daemon would: with its
        credentials ($CREDENTIALS_DIRECTORY) and from its network namespace."""
        from ..notify.senders import DeliveryError, test_message

        config = self.config
        try:
            kind = await _in_thread(lambda: test_message(config, name), f"notify-{name}")
        except LookupError as e:
            raise NoSuchNotifier(str(e.args[0])) from None
        except DeliveryError as e:
            raise ControllerError(f"notifier {name}: {e}") from None
        return {"notifier": name, "type": kind, "delivered": True}

    # ---- accounts and login ------------------------------------------------------------
    def _account(self, account: str) -> Any:
        return _lookup(self.config.accounts, "account", account, NoSuchAccount)

    def _authenticator(self, account: str) -> Any:
        cfg = self._account(account)
        cached = self._authenticators.get(account)
        if cached is not None and cached[0] == cfg:
            return cached[1]
        from ..graph.auth import Authenticator

        auth = Authenticator(account, cfg, self.config.daemon.state_dir)
        self._authenticators[account] = (cfg, auth)
        return auth

    async def start_login(self, account: str, flow: str = "device") -> dict:
        """Begin an interactive login; the device flow then completes in the background."""
        if flow not in ("device", "browser"):
            raise InvalidArgs(f"unknown login flow {flow!r}: use \"device\" or \"browser\"")
        auth = self._authenticator(account)
        self._cancel_login(account)
        if flow == "browser":
            login = await _in_thread(auth.begin_browser_login, f"login-{account}")
            self._logins[account] = {"state": "pending", "flow": "browser", "_login": login}
            return {"account": account, "state": "pending", "url": login.url}
        login = await _in_thread(auth.begin_device_login, f"login-{account}")
        cancel = threading.Event()
        entry: dict[str, Any] = {"state": "pending", "flow": "device", "_login": login, "_cancel": cancel}
        self._logins[account] = entry

        async def _complete() -> None:
            try:
                user = await _in_thread(lambda: auth.complete_device_login(login, cancel), f"login-{account}")
                entry.update(state="logged_in", username=user, message=f"logged in as {user}")
                note_login(self.config, self.state, account, True)
            except Exception as e:  # noqa: BLE001 - reported through login_status
                entry.update(state="failed", message=str(e))
            self._changed_daemon()

        self._spawn(_complete())
        return _clean({
            "account": account, "state": "pending", "verification_uri": login.verification_uri,
            "user_code": login.user_code, "message": login.message,
            "expires_in": max(0, int(login.expires_at - time.time())) if getattr(login, "expires_at", None) else None,
        })

    async def complete_login(self, account: str, redirected_url: str) -> dict:
        """Finish a browser login with the URL the browser was redirected to."""
        auth = self._authenticator(account)
        entry = self._logins.get(account)
        if not entry or entry.get("flow") != "browser" or entry.get("state") != "pending":
            raise InvalidArgs(f"no browser login pending for account {account!r}: start one first")
        login = entry["_login"]
        try:
            user = await _in_thread(lambda: auth.complete_browser_login(login, redirected_url), f"login-{account}")
        except Exception as e:
            entry.update(state="failed", message=str(e))
            raise ControllerError(f"account {account!r}: login failed: {e}") from e
        entry.update(state="logged_in", username=user, message=f"logged in as {user}")
        note_login(self.config, self.state, account, True)
        return self.login_status(account)

    def login_status(self, account: str) -> dict:
        auth = self._authenticator(account)
        entry = self._logins.get(account)
        st = auth.status()
        out: dict[str, Any] = {"account": account, "app_only": bool(st.get("app_only", False))}
        if entry is not None and entry["state"] in ("pending", "failed"):
            out.update(state=entry["state"], message=entry.get("message", ""))
        elif st.get("logged_in"):
            out.update(state="logged_in", message="")
        else:
            out.update(state="none", message=f"not logged in: run odctl login {account}")
        if st.get("username"):
            out["username"] = st["username"]
        return out

    async def logout(self, account: str) -> None:
        auth = self._authenticator(account)
        self._cancel_login(account)
        await _in_thread(auth.logout, f"logout-{account}")
        note_login(self.config, self.state, account, False)

    def _cancel_login(self, account: str) -> None:
        entry = self._logins.pop(account, None)
        if entry and entry.get("_cancel") is not None:
            entry["_cancel"].set()


_TRIGGER_KEYS = ("sources", "exclude", "one_file_system", "watch", "quiet_period", "max_delay", "drop_dir")


def _trigger_key(job: Any) -> tuple:
    return tuple(getattr(job, k, None) for k in _TRIGGER_KEYS)


def _lookup(table: dict[str, Any], kind: str, name: str, error: type[ControllerError]) -> Any:
    try:
        return table[name]
    except KeyError:
        known = ", ".join(sorted(table)) or "none"
        raise error(f"no {kind} {name!r} in the configuration ({kind}s: {known})") from None


def _volume_label(name: str) -> str:
    """``vol.000012.zst.age`` → ``vol 12`` for the one-line status."""
    n = volume_number(name)
    return name if n is None else f"vol {n}"


def _start_trigger(name: str, what: str, make: Callable[[], Any]) -> Any:
    """Build and start a drop directory; a failure falls back to the schedule."""
    try:
        t = make()
        t.start()
        return t
    except Exception as e:  # noqa: BLE001 - e.g. inotify limits: say so, keep the schedule
        _trigger_failed(name, what, e)
        return None


def _trigger_failed(name: str, what: str, e: Exception) -> None:
    tail = "" if "schedule" in str(e) else "; the job still runs by schedule and backup-now"
    log.error("job %s: %s not started: %s%s", name, what, e, tail, extra={"journal_fields": {"JOB": name}})
