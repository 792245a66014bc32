"""What a job and its snapshots look like from outside: the dicts the daemon's D-Bus API
carries (``JobInfo``/``ListJobs``, ``ListSnapshots``) and odctl prints, made in one place.

Why a module of its own: the daemon (live state: runs, queue, scheduler) and odctl without a
daemon (the configuration, the state database, the job's lock) describe the same job, and
each used to build the dict itself, with its own idea of the last run, the next cron time
and the words for a snapshot's status. This module knows neither D-Bus nor the controller
(nothing from ``service/``, ``bus/`` or ``graph/``): the caller says what it knows and gets
the dict.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from .runrecord import RunSummary, last_finished
from .runstatus import RunStatus

# the snapshot status the daemon's ListSnapshots says (a snapshot is complete or incomplete;
# D-Bus clients read this word); odctl says what a run's result says (runstatus.RunStatus)
LISTED = "complete"
COMPLETED = RunStatus.COMPLETED
COMPLETED_WITH_WARNINGS = RunStatus.COMPLETED_WITH_WARNINGS
# what a listing row says as the snapshot entry does
PASSED_ON = ("host", "encrypted", "warnings", "sequence", "signed_by", "changes")


def _dt(ts: float, tz: dt.tzinfo | None) -> dt.datetime:
    # tz None: the machine's local time as a naive datetime (croniter then follows the
    # wall clock, DST included, and .timestamp() reads it back as local time)
    return dt.datetime.fromtimestamp(ts, tz) if tz else dt.datetime.fromtimestamp(ts)


def next_fire(expr: str, after: float, tz: dt.tzinfo | None = None) -> float:
    """The first cron time strictly after ``after`` (epoch seconds), in the machine's local
    time unless ``tz`` is given, as the daemon's scheduler reads a schedule."""
    from croniter import croniter  # not for every odctl command: only those that show jobs

    return croniter(expr, _dt(after, tz)).get_next(dt.datetime).timestamp()


def previous_fire(expr: str, at: float, tz: dt.tzinfo | None = None) -> float:
    """The last cron time at or before ``at`` (the scheduler's catch-up after downtime)."""
    from croniter import croniter

    nxt = next_fire(expr, at - 1e-3, tz)
    if nxt <= at:
        return nxt
    return croniter(expr, _dt(at, tz)).get_prev(dt.datetime).timestamp()


def run_summary(row: dict[str, Any]) -> dict[str, Any]:
    """A run row of the state database (``StateStore.last_runs``) as ``last_run`` says it:
    no key whose value is unknown (:class:`odbackupd.runrecord.RunSummary`, as the daemon's)."""
    return RunSummary.of_row(row).brief()


def last_run(rows: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest finished run among ``rows`` (newest first), or None."""
    found = last_finished(rows)
    return found.brief() if found is not None else None


def job_info(name: str, job: Any, *, state: str = "idle", queued: bool = False,
             run_id: int | None = None, progress: dict | None = None,
             next_run: float | None = None, last: dict | None = None) -> dict[str, Any]:
    """A job as ``JobInfo`` carries it. ``job`` is its ``JobConfig``; ``state`` is "idle",
    "running", "cancelling" (the daemon) or "unknown" (odctl, when the lock is not its to
    look at); ``next_run`` is when the schedule fires next (the daemon: random delay
    included); ``last`` a :func:`run_summary`."""
    info: dict[str, Any] = {
        "name": name,
        "state": state,
        "queued": queued,
        "sources": [str(s) for s in job.sources],
        "destinations": list(job.destinations),
        "encrypted": bool(job.recipients),
        "watch": bool(job.watch),
    }
    if run_id is not None:
        info["run_id"] = run_id
    if progress is not None:
        info["progress"] = dict(progress)
    if job.schedule:
        info["schedule"] = job.schedule
        if next_run is not None:
            info["next_run"] = next_run
    if job.drop_dir is not None:
        info["drop_dir"] = str(job.drop_dir)
    if last:
        info["last_run"] = dict(last)
    return info


def snapshot_entry(m: Any, destination: str) -> dict[str, Any]:
    """A complete snapshot (its ``Manifest``) as ``ListSnapshots`` lists it."""
    from .signing import signed_by

    return {
        "id": m.snapshot, "destination": destination, "started": m.started,
        "finished": m.finished, "files": m.files, "data_bytes": m.data_bytes,
        "stored_bytes": m.stored_bytes, "volumes": len(m.volumes), "status": LISTED,
        "host": m.host, "kind": m.kind, "base": m.base or "", "encrypted": m.encrypted,
        "sequence": m.sequence, "signed_by": signed_by(m.raw or {}) or "",
        "warnings": dict(m.warnings),  # counts per kind
        "changes": m.changes,  # None (a full of format 1): left out on the bus
    }


def listing_row(entry: dict[str, Any], time_text: Any) -> dict[str, Any]:
    """odctl's row for a :func:`snapshot_entry` (as listed offline or by the daemon): the
    snapshot's id as ``snapshot``, its start as ``time`` (``time_text(started)``), and the
    status in the words of a run's result."""
    row = {"snapshot": entry["id"], "time": time_text(entry.get("started", 0)),
           "files": entry.get("files", 0), "data_bytes": entry.get("data_bytes", 0),
           "stored_bytes": entry.get("stored_bytes", 0), "volumes": entry.get("volumes", 0),
           "status": COMPLETED_WITH_WARNINGS if entry.get("warnings") else COMPLETED}
    row.update({k: entry[k] for k in PASSED_ON if k in entry})
    row["kind"], row["base"] = entry.get("kind", "full"), entry.get("base") or None
    return row
