"""Prometheus metrics for node_exporter's textfile collector (``[daemon] metrics_file``).

Values live in the state database (table ``metrics``), so counters survive restarts and
every writer — the daemon, ``odbackupd --once`` from cron, ``odctl prune``/``verify`` —
renders the same whole file from them. The file is rewritten atomically (a temporary
name that does not end in ``.prom``, in the same directory, fsynced, renamed over the
old file) after every run, prune, verify, login change and daemon start; nothing here
asks a destination anything, so a scrape never costs a request to OneDrive.

The backup job's label is ``series`` (``JOB`` or ``JOB+drop``), never ``job``: Prometheus
renames a scraped ``job`` label to ``exported_job``.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from . import __version__
from .runstatus import RunStatus

log = logging.getLogger("odbackupd.metrics")

TABLES = """
CREATE TABLE IF NOT EXISTS metrics (
    name TEXT NOT NULL,
    labels TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (name, labels)
);
"""


@dataclass(frozen=True)
class Metric:
    name: str
    type: str  # "gauge" | "counter"
    help: str
    labels: tuple[str, ...]


_S, _SD, _D, _A = ("series",), ("series", "destination"), ("destination",), ("account",)
METRICS: tuple[Metric, ...] = (
    Metric("odbackupd_build_info", "gauge", "odbackupd's version (always 1).", ("version",)),
    Metric("odbackupd_last_success_timestamp_seconds", "gauge",
           "When the last successful run of the series finished, per destination.", _SD),
    Metric("odbackupd_last_run_timestamp_seconds", "gauge",
           "When the last run of the series finished.", _S),
    Metric("odbackupd_last_run_success", "gauge",
           "1 if the last run of the series succeeded, else 0.", _S),
    Metric("odbackupd_last_run_duration_seconds", "gauge",
           "How long the last run of the series took.", _S),
    Metric("odbackupd_runs_total", "counter",
           "Finished runs by result: success, warning (completed with warnings), failure,"
           " cancelled.", ("series", "result")),
    Metric("odbackupd_last_snapshot_stored_bytes", "gauge",
           "Stored size of the series' newest snapshot on the destination.", _SD),
    Metric("odbackupd_snapshots", "gauge",
           "Complete snapshots of the series on the destination.", _SD),
    Metric("odbackupd_stored_bytes", "gauge",
           "Bytes all snapshots of the series take on the destination.", _SD),
    Metric("odbackupd_last_full_timestamp_seconds", "gauge",
           "Start of the newest full snapshot of the series on the destination.", _SD),
    Metric("odbackupd_chain_length", "gauge",
           "Snapshots a restore of the newest one needs (1: a full snapshot).", _SD),
    Metric("odbackupd_schedule_interval_seconds", "gauge",
           "The longest gap the series' schedule (plus random_delay) leaves between runs.", _S),
    Metric("odbackupd_last_verify_timestamp_seconds", "gauge",
           "When odctl verify last checked the series on the destination.", _SD),
    Metric("odbackupd_last_verify_success", "gauge",
           "1 if the last verify found no damage, else 0.", _SD),
    Metric("odbackupd_uploaded_bytes_total", "counter", "Bytes sent to the destination.", _D),
    Metric("odbackupd_throttled_total", "counter",
           "Throttling answers (429/503) Microsoft Graph gave the account.", _A),
    Metric("odbackupd_account_login_ok", "gauge",
           "1 while the account's login works, 0 once it needs odctl login.", _A),
    Metric("odbackupd_destination_free_bytes", "gauge",
           "Free space on the destination (OneDrive: remaining quota) at the last run.", _D),
    Metric("odbackupd_destination_deleted_bytes", "gauge",
           "Bytes in the destination's recycle bin that still count against its quota"
           " (OneDrive).", _D),
    Metric("odbackupd_notifications_pending", "gauge",
           "Notifications waiting to be delivered.", ()),
    Metric("odbackupd_notifications_failed_total", "counter",
           "Notifications given up after retrying for a day, by notifier.", ("notifier",)),
)
_BY_NAME = {m.name: m for m in METRICS}
RESULTS = {RunStatus.COMPLETED: "success", RunStatus.COMPLETED_WITH_WARNINGS: "warning",
           RunStatus.FAILED: "failure", RunStatus.CANCELLED: "cancelled"}


# ---- the values, in the state database ------------------------------------------------------
def _key(name: str, labels: dict[str, str]) -> str:
    assert name in _BY_NAME and set(labels) == set(_BY_NAME[name].labels), (name, labels)
    return json.dumps(labels, sort_keys=True)


def ensure(state: Any) -> None:
    state.ensure_tables(TABLES)


def set_value(state: Any, name: str, value: float, **labels: str) -> None:
    state.query("INSERT OR REPLACE INTO metrics (name, labels, value) VALUES (?,?,?)",
                (name, _key(name, labels), float(value)))


def add_value(state: Any, name: str, by: float, **labels: str) -> None:
    if by:
        state.query("INSERT INTO metrics (name, labels, value) VALUES (?,?,?)"
                    " ON CONFLICT (name, labels) DO UPDATE SET value = value + excluded.value",
                    (name, _key(name, labels), float(by)))


def stored(state: Any) -> list[tuple[str, dict[str, str], float]]:
    return [(n, json.loads(lab), v) for n, lab, v in
            state.query("SELECT name, labels, value FROM metrics ORDER BY name, labels")]


# ---- what callers record ------------------------------------------------------------------------
def record_run(state: Any, series: str, status: str, finished: float, duration: float,
               destinations: Sequence[str]) -> None:
    """The end of one run (a run that found its series busy is not one)."""
    ensure(state)
    result = RESULTS.get(status, "failure")
    add_value(state, "odbackupd_runs_total", 1, series=series, result=result)
    if result == RunStatus.CANCELLED:
        return  # a stop or odctl cancel says nothing about whether backups work
    ok = result in ("success", "warning")
    set_value(state, "odbackupd_last_run_timestamp_seconds", finished, series=series)
    set_value(state, "odbackupd_last_run_success", 1 if ok else 0, series=series)
    set_value(state, "odbackupd_last_run_duration_seconds", max(0.0, duration), series=series)
    if ok:
        for d in destinations:
            set_value(state, "odbackupd_last_success_timestamp_seconds", finished,
                      series=series, destination=d)


def record_snapshots(state: Any, series: str, destination: str, kept: Sequence[Any]) -> None:
    """What a destination holds of a series after retention (manifests, oldest first)."""
    ensure(state)
    kept = sorted(kept, key=lambda m: (m.started, m.snapshot))
    labels = {"series": series, "destination": destination}
    set_value(state, "odbackupd_snapshots", len(kept), **labels)
    set_value(state, "odbackupd_stored_bytes", sum(m.stored_bytes for m in kept), **labels)
    if not kept:
        return
    set_value(state, "odbackupd_last_snapshot_stored_bytes", kept[-1].stored_bytes, **labels)
    fulls = [i for i, m in enumerate(kept) if getattr(m, "kind", "full") == "full"]
    if fulls:
        set_value(state, "odbackupd_last_full_timestamp_seconds", kept[fulls[-1]].started, **labels)
        set_value(state, "odbackupd_chain_length", len(kept) - fulls[-1], **labels)


def record_destination(state: Any, destination: str, uploaded: int,
                       space: dict[str, int] | None) -> None:
    ensure(state)
    add_value(state, "odbackupd_uploaded_bytes_total", uploaded, destination=destination)
    if space and "remaining" in space:
        set_value(state, "odbackupd_destination_free_bytes", space["remaining"],
                  destination=destination)
    if space and "deleted" in space:
        set_value(state, "odbackupd_destination_deleted_bytes", space["deleted"],
                  destination=destination)


def record_account(state: Any, account: str, *, throttled: int = 0,
                   login_ok: bool | None = None) -> None:
    ensure(state)
    add_value(state, "odbackupd_throttled_total", throttled, account=account)
    if login_ok is not None:
        set_value(state, "odbackupd_account_login_ok", 1 if login_ok else 0, account=account)


def note_login(config: Any, state: Any, account: str, ok: bool) -> None:
    """A login or logout (odctl login/logout, through the daemon or not)."""
    if state is not None:
        record_account(state, account, login_ok=ok)
        publish(config, state)


def record_verify(state: Any, series: str, destination: str, ok: bool,
                  when: float | None = None) -> None:
    ensure(state)
    labels = {"series": series, "destination": destination}
    set_value(state, "odbackupd_last_verify_timestamp_seconds", when or time.time(), **labels)
    set_value(state, "odbackupd_last_verify_success", 1 if ok else 0, **labels)


# ---- rendering and writing ----------------------------------------------------------------------
def configured_series(config: Any) -> dict[str, Any]:
    """Every snapshot series of the configuration: ``JOB`` (with sources), ``JOB+drop``."""
    from .runner import drop_series  # the runner owns the series rule (and imports us: late)

    out = {}
    for name, job in config.jobs.items():
        if job.sources:
            out[name] = job
        if job.drop_dir is not None:
            out[drop_series(name)] = job
    return out


def schedule_interval(expr: str, random_delay: float = 0.0, now: float | None = None) -> float:
    """The longest gap between two of the next runs of a cron expression, plus the delay."""
    from croniter import croniter

    it = croniter(expr, dt.datetime.fromtimestamp(now or time.time()))
    times = [it.get_next(dt.datetime).timestamp() for _ in range(32)]
    return max(b - a for a, b in pairwise(times)) + random_delay


def _computed(config: Any, series: dict[str, Any],
              pending: int | None) -> Iterable[tuple[str, dict, float]]:
    yield "odbackupd_build_info", {"version": __version__}, 1
    for name, job in series.items():
        if job.schedule and name == job.name:  # drop files arrive when they arrive
            yield ("odbackupd_schedule_interval_seconds", {"series": name},
                   schedule_interval(job.schedule, job.random_delay))
    if pending is not None:
        yield "odbackupd_notifications_pending", {}, pending


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 2**53 else repr(float(v))


def render(config: Any, state: Any, pending: int | None = None) -> str:
    """The whole file: only labels of series, destinations, accounts and notifiers that
    the configuration still has (a removed job's series disappear)."""
    series = configured_series(config)
    known = {"series": set(series), "destination": set(config.destinations),
             "account": set(config.accounts), "notifier": set(getattr(config, "notify", {}))}
    rows: dict[str, list[tuple[dict, float]]] = {}
    for name, labels, value in [*stored(state), *_computed(config, series, pending)]:
        if name in _BY_NAME and all(v in known[k] for k, v in labels.items() if k in known):
            rows.setdefault(name, []).append((labels, value))
    out = []
    for m in METRICS:
        if m.name not in rows:
            continue
        out += [f"# HELP {m.name} {m.help}", f"# TYPE {m.name} {m.type}"]
        for labels, value in sorted(rows[m.name], key=lambda r: sorted(r[0].items())):
            lab = ",".join(f'{k}="{_escape(str(labels[k]))}"' for k in m.labels)
            out.append(f"{m.name}{{{lab}}} {_number(value)}" if lab
                       else f"{m.name} {_number(value)}")
    return "\n".join(out) + "\n"


def write_file(path: Path, text: str) -> None:
    """Atomically: node_exporter reads only ``*.prom``, so the temporary name is ``.tmp``;
    readable by node_exporter's user (0644), whatever our umask."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.fchmod(fd, 0o644)
        os.write(fd, text.encode())
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def publish(config: Any, state: Any) -> bool:
    """Rewrite ``[daemon] metrics_file`` when it is set; a failure is logged, never raised
    (metrics must not fail a backup). True when the file was written."""
    path = getattr(config.daemon, "metrics_file", None)
    if path is None or state is None:
        return False
    try:
        ensure(state)
        from .notify.queue import pending_count

        write_file(path, render(config, state, pending_count(state)))
        return True
    except Exception as e:  # noqa: BLE001 - say so, carry on
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        log.warning("cannot write metrics_file %s: %s (under the packaged unit it needs "
                    "ReadWritePaths=%s: systemctl edit odbackupd)", path, why, Path(path).parent)
        return False
