"""The notification queue in the state database, and which notifier hears of what.

A run's notifications are queued in the same process that records the run (the runner,
in the daemon or ``--once``), and sent later by :mod:`.deliver`: delivery can never slow
down or fail a backup, and survives a receiver that is down and a daemon restart.

Per notifier and run end exactly one message, the most specific event the notifier asks
for (recovery → success, warning → success, login_expired → failure). A failure is sent
again only ``repeat`` after the last one while the series stays failed.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

TABLES = """
CREATE TABLE IF NOT EXISTS notify_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    notifier TEXT NOT NULL,
    event TEXT NOT NULL,
    series TEXT NOT NULL,
    message TEXT NOT NULL,
    created REAL NOT NULL,
    next_attempt REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS notify_sent (
    notifier TEXT NOT NULL,
    series TEXT NOT NULL,
    event TEXT NOT NULL,
    sent REAL NOT NULL,
    PRIMARY KEY (notifier, series, event)
);
"""

#: Called (from any thread) after something was queued: the daemon's delivery wakes up.
listeners: list[Callable[[], None]] = []

#: Events that remind (``repeat``) instead of repeating at every failed run.
REMINDING = ("failure", "login_expired")


@dataclass(frozen=True)
class Pending:
    id: int
    notifier: str
    event: str
    series: str
    message: dict
    created: float
    attempts: int


def ensure(state: Any) -> None:
    state.ensure_tables(TABLES)


def notifiers_for(config: Any, job: Any) -> list[Any]:
    """The job's notifiers: its own ``notify``, else ``[daemon] notify``."""
    names = job.notify if job.notify is not None else config.daemon.notify
    return [config.notify[n] for n in names if n in config.notify]


def choose(events: Sequence[str], candidates: Sequence[str]) -> str | None:
    """The first (most specific) candidate the notifier asks for."""
    return next((c for c in candidates if c in events), None)


def run_end_candidates(ok: bool, warnings: bool, login_needed: bool,
                       was_failing: bool) -> list[str]:
    if not ok:
        return ["login_expired", "failure"] if login_needed else ["failure"]
    out = ["recovery"] if was_failing else []
    if warnings:
        out.append("warning")
    return [*out, "success"]


def enqueue(state: Any, notifier: str, event: str, series: str, message: dict,
            now: float | None = None) -> None:
    now = time.time() if now is None else now
    ensure(state)
    state.query("INSERT INTO notify_queue (notifier, event, series, message, created, next_attempt)"
                " VALUES (?,?,?,?,?,?)", (notifier, event, series, json.dumps(message), now, now))
    for fn in list(listeners):
        fn()


def queue_event(config: Any, state: Any, job: Any, series: str, candidates: Sequence[str],
                make: Any, now: float | None = None) -> list[tuple[str, str]]:
    """Queue ``make(event)`` for every notifier of ``job`` that asks for one of the
    ``candidates``; reminders are held back for ``repeat``. Returns (notifier, event)s."""
    now = time.time() if now is None else now
    ensure(state)
    out = []
    for n in notifiers_for(config, job):
        event = choose(n.events, candidates)
        if event is None:
            continue
        if event in REMINDING:
            rows = state.query("SELECT sent FROM notify_sent"
                               " WHERE notifier=? AND series=? AND event=?",
                               (n.name, series, event))
            if rows and (n.repeat <= 0 or now - rows[0][0] < n.repeat):
                continue
            state.query("INSERT OR REPLACE INTO notify_sent (notifier, series, event, sent)"
                        " VALUES (?,?,?,?)", (n.name, series, event, now))
        enqueue(state, n.name, event, series, make(event), now)
        out.append((n.name, event))
    return out


def series_recovered(state: Any, series: str) -> None:
    """A success: the next failure is news again, not a reminder."""
    ensure(state)
    state.query("DELETE FROM notify_sent WHERE series=?", (series,))


def due(state: Any, now: float | None = None, limit: int = 100) -> list[Pending]:
    ensure(state)
    rows = state.query(
        "SELECT id, notifier, event, series, message, created, attempts FROM notify_queue"
        " WHERE next_attempt <= ? ORDER BY id LIMIT ?",
        (time.time() if now is None else now, limit))
    return [Pending(i, n, e, s, json.loads(m), c, a) for i, n, e, s, m, c, a in rows]


def done(state: Any, item_id: int) -> None:
    state.query("DELETE FROM notify_queue WHERE id=?", (item_id,))


def retry_at(state: Any, item_id: int, when: float, error: str) -> None:
    state.query("UPDATE notify_queue SET attempts = attempts + 1, next_attempt=?, last_error=?"
                " WHERE id=?", (when, error, item_id))


def pending_count(state: Any) -> int:
    ensure(state)
    return int(state.query("SELECT COUNT(*) FROM notify_queue")[0][0])


def note_result(state: Any, series: str, failed: bool) -> bool:
    """Record whether the series' last run failed; returns whether the one before did."""
    return state.note_failing(series, failed)
