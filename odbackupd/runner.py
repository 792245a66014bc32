"""One run of one job: lock, build the snapshot, apply retention, record and log the result.

Used by ``odbackupd --once JOB`` (cron users) and by the daemon's controller alike. A
per-job lock file makes two runs of the same job (a cron run overlapping the daemon's)
wait for or refuse each other instead of interleaving.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import signing
from .config import Config, JobConfig
from .destinations.base import Destination, DestinationError, NotLoggedIn
from .destinations.factory import open_destination
from .journal import (
    MSG_LOGIN_NEEDED,
    MSG_RUN_FAILED,
    MSG_RUN_FINISHED,
    MSG_RUN_STARTED,
    MSG_SNAPSHOT_PRUNED,
)
from .observe import RunObserver
from .series import DROP_SUFFIX, drop_series, series_config, series_job  # noqa: F401 - their home before
from .snapshot import leases, retention
from .snapshot.builder import FAILED, JobSpec, Progress, RunResult, SnapshotBuilder
from .snapshot.catalog import list_snapshots
from .state import StateStore

log = logging.getLogger("odbackupd.run")


class JobBusy(Exception):
    pass


@contextmanager
def job_lock(state_dir: Path, job: str, wait: bool = False) -> Iterator[None]:
    d = Path(state_dir) / "locks"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(d / f"{job}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise JobBusy(f"job {job!r} is already running "
                              "(another odbackupd holds its lock)") from e
            raise
        yield
    finally:
        os.close(fd)


@dataclass
class JobRun:
    result: RunResult
    run_id: int
    pruned: dict[str, list[str]] = field(default_factory=dict)
    deferred: dict[str, list[str]] = field(default_factory=dict)  # due for pruning but being read
    prune_errors: list[str] = field(default_factory=list)
    busy: bool = False  # another process was running this job: nothing was done
    login_needed: bool = False  # a destination's account needs `odctl login`
    kept: dict[str, list] = field(default_factory=dict)  # destination -> manifests after retention


def open_destinations(
    config: Config, job: JobConfig, state: StateStore | None
) -> list[Destination]:
    return [open_destination(config, n, state) for n in job.destinations]


def run_job(
    config: Config,
    job_name: str,
    state: StateStore,
    *,
    trigger: str = "manual",
    progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
    run_id: int | None = None,
    sources: Sequence[Path] | None = None,
    series: str | None = None,
    clock: Callable[[], float] = time.time,
) -> JobRun:
    """Run one snapshot of ``job_name``.

    ``run_id``: a run the caller already recorded with ``state.run_started`` (the daemon
    does, to hand out the id before the run starts). ``sources`` and ``series`` make a
    side series of the job, e.g. a drop-directory file: ``sources=[file]``,
    ``series=drop_series(job)``; the series is the folder on the destinations and has its
    own lock, resume state and retention (the job's keep_* settings); a side series is
    full-only. ``clock``: the time snapshots are stamped with (tests pass a manual one).
    """
    job = config.jobs[job_name]
    daemon = config.daemon
    series = series or job_name
    fields = {"JOB": job_name}
    if series != job_name:
        fields["SERIES"] = series
    if run_id is None:
        run_id = state.run_started(job_name, trigger)
    fields["RUN_ID"] = str(run_id)
    log.info("job %s: run %d started (%s)", job_name, run_id, trigger,
             extra={"journal_fields": {**fields, "MESSAGE_ID": MSG_RUN_STARTED,
                                       "TRIGGER": trigger}})
    # metrics, notifications
    observer = RunObserver(config, state, job_name, series, run_id, trigger)
    dests: list[Destination] = []
    login_error: NotLoggedIn | None = None
    try:
        with job_lock(daemon.state_dir, series):
            dests = open_destinations(config, job, state)
            observer.attach(dests)
            spec = replace(JobSpec.from_config(job), name=series, incremental=series == job_name)
            if sources is not None:
                spec = replace(spec, sources=tuple(Path(p) for p in sources))
            builder = SnapshotBuilder(
                spec, dests, state, daemon.spool_dir / "jobs", daemon.hostname,
                signing_key=signing.load_or_create(daemon.state_dir),
                upload_workers=(daemon.max_parallel_uploads
                                if any(d.capabilities.parallel_uploads for d in dests) else 1),
                progress=progress, cancel=cancel,
                skip_paths=[daemon.state_dir, daemon.spool_dir], clock=clock,
                index_dir=Path(daemon.state_dir) / "index",
            )
            result = builder.run()
            if isinstance(result.error, NotLoggedIn):
                login_error = result.error
            run = JobRun(result, run_id)
            if result.ok:
                _prune(job, dests, daemon.hostname, result.snapshot, run, series, daemon.state_dir)
    except JobBusy as e:
        result = RunResult(job_name, None, FAILED, str(e))
        run = JobRun(result, run_id, busy=True)
    except (DestinationError, OSError, signing.SigningError) as e:
        if isinstance(e, NotLoggedIn):
            login_error = e
        result = RunResult(job_name, None, FAILED, str(e))
        run = JobRun(result, run_id)
    finally:
        for d in dests:
            d.close()
    m = result.manifest
    stats = {
        "warnings": result.warning_counts, "resumed": result.resumed,
        "reused_volumes": result.reused_volumes, "pruned": run.pruned,
        "prune_errors": run.prune_errors,
        **({"deferred": run.deferred} if run.deferred else {}),
    }
    if m is not None:
        stats.update(files=m.files, data_bytes=m.data_bytes, stored_bytes=m.stored_bytes,
                     volumes=len(m.volumes), duration=round(m.finished - m.started, 3),
                     kind=m.kind, base=m.base, full_reason=result.full_reason, **(m.changes or {}))
    state.run_finished(run_id, result.status, result.message, result.snapshot, stats)
    if series == job_name:
        state.set_last_run(job_name, time.time())
    fields.update(SNAPSHOT=result.snapshot or "", STATUS=result.status)
    if result.ok:
        fields.update(BYTES=str(m.data_bytes if m else 0),
                      STORED_BYTES=str(m.stored_bytes if m else 0))
        if m is not None:
            fields["KIND"] = m.kind
            if m.base:
                fields["BASE"] = m.base
            for k, v in (m.changes or {}).items():
                fields[k.upper()] = str(v)
        log.log(logging.WARNING if result.warning_counts else logging.INFO,
                "job %s: snapshot %s %s: %s",
                job_name, result.snapshot, result.status, result.message,
                extra={"journal_fields": {**fields, "MESSAGE_ID": MSG_RUN_FINISHED}})
    else:
        log.error("job %s: run %d %s: %s", job_name, run_id, result.status, result.message,
                  extra={"journal_fields": {**fields, "MESSAGE_ID": MSG_RUN_FAILED}})
    if login_error is not None and not result.ok:
        run.login_needed = True
        _log_login_needed(config, job, login_error, fields)
    observer.finished(run)
    return run


def _log_login_needed(config: Config, job: JobConfig, err: NotLoggedIn, fields: dict) -> None:
    """The event a sysadmin (or their monitoring) greps for: someone must run odctl login.
    The account is the error's own (a job's destinations may use several)."""
    account = err.account or next(iter(sorted({
        d.account for n in job.destinations
        if (d := config.destinations.get(n)) is not None and getattr(d, "account", None)
    })), "")
    log.error("job %s: OneDrive login needed for account %s: %s",
              fields["JOB"], account or "?", err,
              extra={"journal_fields": {**fields, "ACCOUNT": account,
                                        "MESSAGE_ID": MSG_LOGIN_NEEDED}})


def apply_retention(
    job: JobConfig, dest: Destination, host: str, protect: Sequence[str] = (),
    dry_run: bool = False, series: str | None = None, state_dir: Path | None = None,
) -> retention.RetentionPlan:
    """Plan the job's retention on one destination and, unless ``dry_run``, delete. Only
    ``host``'s snapshots are looked at: servers sharing a destination and a job name never
    prune each other's. ``state_dir``: where readers' leases are (snapshot/leases.py); a
    snapshot a restore or verify is reading is deferred (``plan.deferred``), not deleted."""
    policy = retention.RetentionPolicy.from_job(job)
    series = series or job.name
    plan = retention.plan(list_snapshots(dest, series, host).complete, policy, protect=protect)
    if not dry_run:
        for m in list(plan.delete):
            with leases.deleting(state_dir, series, m.snapshot) as free:
                if not free:
                    plan.delete.remove(m)
                    plan.deferred.append(m)
                    log.info("job %s: snapshot %s on %s is being read (restore or verify); "
                             "its deletion is deferred to the next run",
                             m.job, m.snapshot, dest.describe(),
                             extra={"journal_fields": {"JOB": m.job, "SNAPSHOT": m.snapshot}})
                    continue
                dest.delete_snapshot(m.location, m.snapshot)
            log.info("job %s: pruned snapshot %s from %s (%s)", m.job, m.snapshot, dest.describe(),
                     ", ".join(plan.reasons[m.snapshot]),
                     extra={"journal_fields": {"JOB": m.job, "SNAPSHOT": m.snapshot,
                                               "MESSAGE_ID": MSG_SNAPSHOT_PRUNED}})
    return plan


def _prune(job: JobConfig, dests: list[Destination], host: str, keep: str | None, run: JobRun,
           series: str, state_dir: Path | None = None) -> None:
    """Retention after a successful run: a failure is reported, never fails the run."""
    for d in dests:
        try:
            plan = apply_retention(job, d, host, protect=[keep] if keep else [], series=series,
                                   state_dir=state_dir)
            run.pruned[d.name] = [m.snapshot for m in plan.delete]
            run.kept[d.name] = plan.keep
            if plan.deferred:
                run.deferred[d.name] = [m.snapshot for m in plan.deferred]
        except (DestinationError, OSError) as e:
            run.prune_errors.append(f"{d.name}: {e}")
            log.warning("job %s: retention on %s failed (the snapshot is complete; the next run "
                        "prunes again): %s", job.name, d.describe(), e,
                        extra={"journal_fields": {"JOB": job.name, "DESTINATION": d.name}})


def prune_job(
    config: Config, job_name: str, state: StateStore | None, dry_run: bool,
    series: str | None = None,
) -> dict[str, retention.RetentionPlan]:
    job = config.jobs[job_name]
    plans = {}
    for d in open_destinations(config, job, state):
        try:
            plans[d.name] = apply_retention(job, d, config.daemon.hostname,
                                            dry_run=dry_run, series=series,
                                            state_dir=config.daemon.state_dir)
        finally:
            d.close()
    return plans
