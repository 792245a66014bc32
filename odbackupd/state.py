"""SQLite state: runs, in-progress snapshots and their checkpoints, upload sessions.

Everything a resumed run needs is committed here at each volume boundary, so a SIGKILL or
a power loss costs at most the volume being built.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .runstatus import RunStatus

SCHEMA = """
CREATE TABLE IF NOT EXISTS inprogress (
    job TEXT PRIMARY KEY,
    snapshot TEXT NOT NULL,
    started REAL NOT NULL,
    params TEXT NOT NULL,
    resumes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS volumes (
    job TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    idx INTEGER NOT NULL,
    info TEXT NOT NULL,
    checkpoint TEXT NOT NULL,
    stored TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (job, snapshot, idx)
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    snapshot TEXT,
    trigger TEXT,
    started REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL,
    message TEXT,
    stats TEXT
);
CREATE INDEX IF NOT EXISTS runs_job ON runs (job, started);
CREATE TABLE IF NOT EXISTS upload_sessions (
    destination TEXT NOT NULL,
    path TEXT NOT NULL,
    data TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (destination, path)
);
-- every snapshot this host started: only these may be cleaned up as leftovers when they
-- have no manifest (a folder without one names no host: it may be another server's upload)
CREATE TABLE IF NOT EXISTS made (
    series TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    PRIMARY KEY (series, snapshot)
);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass
class InProgress:
    job: str
    snapshot: str
    started: float
    params: dict
    resumes: int


@dataclass
class VolumeRecord:
    idx: int
    info: dict
    checkpoint: dict
    stored: list[str]


class StateStore:
    """One connection shared by the daemon's threads, serialised by a lock."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        old = os.umask(0o077)
        try:
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        finally:
            os.umask(old)
        self.path = path
        self._lock = threading.RLock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self) -> _Tx:
        return _Tx(self)

    def _q(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- in-progress snapshots ------------------------------------------------------------
    def inprogress(self, job: str) -> InProgress | None:
        rows = self._q(
            "SELECT job, snapshot, started, params, resumes FROM inprogress WHERE job=?", (job,)
        )
        if not rows:
            return None
        j, s, t, p, r = rows[0]
        return InProgress(j, s, t, json.loads(p), r)

    def begin(self, job: str, snapshot: str, started: float, params: dict) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM volumes WHERE job=?", (job,))
            db.execute(
                "INSERT OR REPLACE INTO inprogress (job, snapshot, started, params, resumes)"
                " VALUES (?,?,?,?,0)",
                (job, snapshot, started, json.dumps(params)),
            )
            db.execute("INSERT OR IGNORE INTO made (series, snapshot) VALUES (?,?)",
                       (job, snapshot))

    def made_here(self, series: str, snapshot: str) -> bool:
        """Whether this host started ``snapshot`` of ``series`` (runs recorded before the
        ``made`` table existed count through the run history)."""
        return bool(self._q(
            "SELECT 1 FROM made WHERE series=? AND snapshot=? UNION ALL "
            "SELECT 1 FROM runs WHERE snapshot=? UNION ALL "
            "SELECT 1 FROM inprogress WHERE snapshot=? LIMIT 1",
            (series, snapshot, snapshot, snapshot)))

    def note_resume(self, job: str) -> None:
        self._q("UPDATE inprogress SET resumes = resumes + 1 WHERE job=?", (job,))

    def forget(self, job: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM volumes WHERE job=?", (job,))
            db.execute("DELETE FROM inprogress WHERE job=?", (job,))

    def add_volume(self, job: str, snapshot: str, idx: int, info: dict, checkpoint: dict) -> None:
        self._q(
            "INSERT OR REPLACE INTO volumes (job, snapshot, idx, info, checkpoint, stored)"
            " VALUES (?,?,?,?,?, '[]')",
            (job, snapshot, idx, json.dumps(info), json.dumps(checkpoint)),
        )

    def mark_stored(self, job: str, snapshot: str, idx: int, destination: str) -> None:
        with self._tx() as db:
            row = db.execute(
                "SELECT stored FROM volumes WHERE job=? AND snapshot=? AND idx=?",
                (job, snapshot, idx),
            ).fetchone()
            if row is None:
                return
            stored = set(json.loads(row[0]))
            stored.add(destination)
            db.execute(
                "UPDATE volumes SET stored=? WHERE job=? AND snapshot=? AND idx=?",
                (json.dumps(sorted(stored)), job, snapshot, idx),
            )

    def volumes(self, job: str, snapshot: str) -> list[VolumeRecord]:
        rows = self._q(
            "SELECT idx, info, checkpoint, stored FROM volumes"
            " WHERE job=? AND snapshot=? ORDER BY idx",
            (job, snapshot),
        )
        return [VolumeRecord(i, json.loads(a), json.loads(c), json.loads(s)) for i, a, c, s in rows]

    def drop_volumes_from(self, job: str, snapshot: str, idx: int) -> None:
        self._q("DELETE FROM volumes WHERE job=? AND snapshot=? AND idx>=?", (job, snapshot, idx))

    # -- runs -------------------------------------------------------------------------------
    def _new_run(self, job: str, trigger: str, when: float | None, status: RunStatus) -> int:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO runs (job, trigger, started, status) VALUES (?,?,?,?)",
                (job, trigger, when if when is not None else time.time(), status),
            )
            return int(cur.lastrowid)

    def run_started(self, job: str, trigger: str, started: float | None = None) -> int:
        return self._new_run(job, trigger, started, RunStatus.RUNNING)

    def run_finished(
        self, run_id: int, status: str, message: str = "", snapshot: str | None = None,
        stats: dict | None = None, finished: float | None = None,
    ) -> None:
        self._q(
            "UPDATE runs SET status=?, message=?, snapshot=COALESCE(?, snapshot),"
            " stats=?, finished=? WHERE id=?",
            (status, message, snapshot, json.dumps(stats or {}),
             finished if finished is not None else time.time(), run_id),
        )

    def run_queued(self, job: str, trigger: str, queued: float | None = None) -> int:
        """Record a run that waits for its turn (the daemon hands out its id at once)."""
        return self._new_run(job, trigger, queued, RunStatus.QUEUED)

    def run_begin(self, run_id: int, started: float | None = None) -> None:
        """A queued run starts: its start time is now."""
        self._q("UPDATE runs SET status=?, started=? WHERE id=?",
                (RunStatus.RUNNING, started if started is not None else time.time(), run_id))

    def close_stale_runs(self, message: str) -> list[int]:
        """Runs left 'running' or 'queued' by a daemon that is gone (crash, kill -9)."""
        with self._lock:
            unfinished = (RunStatus.RUNNING, RunStatus.QUEUED)
            ids = [r[0] for r in self._db.execute(
                "SELECT id FROM runs WHERE status IN (?, ?)", unfinished).fetchall()]
            self._db.execute(
                "UPDATE runs SET status=?, message=?, finished=? WHERE status IN (?, ?)",
                (RunStatus.INTERRUPTED, message, time.time(), *unfinished),
            )
        return ids

    def run(self, run_id: int) -> dict[str, Any] | None:
        rows = self._q(
            "SELECT id, job, snapshot, trigger, started, finished, status, message, stats FROM runs"
            " WHERE id=?",
            (run_id,),
        )
        return self._run_dicts(rows)[0] if rows else None

    def last_runs(self, job: str, limit: int = 10) -> list[dict[str, Any]]:
        rows = self._q(
            "SELECT id, job, snapshot, trigger, started, finished, status, message, stats FROM runs"
            " WHERE job=? ORDER BY id DESC LIMIT ?",
            (job, limit),
        )
        return self._run_dicts(rows)

    @staticmethod
    def _run_dicts(rows: list[tuple]) -> list[dict[str, Any]]:
        keys = ("id", "job", "snapshot", "trigger", "started", "finished", "status", "message",
                "stats")
        out = []
        for r in rows:
            d = dict(zip(keys, r, strict=True))
            d["stats"] = json.loads(d["stats"]) if d["stats"] else {}
            out.append(d)
        return out

    # -- upload sessions (destinations persist their resumable state here) -------------------
    def session_get(self, destination: str, path: str) -> dict | None:
        rows = self._q("SELECT data FROM upload_sessions WHERE destination=? AND path=?",
                       (destination, path))
        return json.loads(rows[0][0]) if rows else None

    def session_put(self, destination: str, path: str, data: dict) -> None:
        self._q(
            "INSERT OR REPLACE INTO upload_sessions (destination, path, data, updated)"
            " VALUES (?,?,?,?)",
            (destination, path, json.dumps(data), time.time()),
        )

    def session_delete(self, destination: str, path: str) -> None:
        self._q("DELETE FROM upload_sessions WHERE destination=? AND path=?", (destination, path))

    def sessions(self, destination: str) -> Iterator[tuple[str, dict]]:
        for p, d in self._q("SELECT path, data FROM upload_sessions WHERE destination=?",
                            (destination,)):
            yield p, json.loads(d)

    # -- small values --------------------------------------------------------------------------
    def get(self, key: str, default: str | None = None) -> str | None:
        rows = self._q("SELECT value FROM kv WHERE key=?", (key,))
        return rows[0][0] if rows else default

    def set(self, key: str, value: str) -> None:
        self._q("INSERT OR REPLACE INTO kv (key, value) VALUES (?,?)", (key, value))

    # -- typed values (the kv keys are built here only) ------------------------------------------
    def _float(self, key: str) -> float | None:
        v = self.get(key)
        try:
            return float(v) if v is not None else None
        except ValueError:
            return None  # a damaged value counts as none: the schedule measures from now

    def last_run(self, job: str) -> float | None:
        """When the job's own series last finished a run (the schedule's catch-up)."""
        return self._float(f"last_run:{job}")

    def set_last_run(self, job: str, when: float) -> None:
        self.set(f"last_run:{job}", repr(float(when)))

    def schedule_since(self, job: str) -> float | None:
        """When the daemon first scheduled a job that had never run."""
        return self._float(f"schedule_since:{job}")

    def set_schedule_since(self, job: str, when: float) -> None:
        self.set(f"schedule_since:{job}", repr(float(when)))

    def note_failing(self, series: str, failing: bool) -> bool:
        """Record whether the series' last run failed; returns whether the one before did
        (the notifiers' "recovered" and reminder logic)."""
        key = f"notify:failing:{series}"
        with self._tx() as db:
            row = db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
            db.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?,?)",
                       (key, "1" if failing else "0"))
        return bool(row) and row[0] == "1"

    def last_data_bytes(self, series: str, kind: str | None = None) -> int | None:
        """The data size of the series' last snapshot (of ``kind``: "full", "incremental"):
        the estimate progress percentages are computed from."""
        v = self._float(f"last_data_bytes:{series}:{kind}" if kind else f"last_data_bytes:{series}")
        return int(v) if v is not None else None

    def last_stored_bytes(self, series: str) -> int | None:
        v = self._float(f"last_stored_bytes:{series}")
        return int(v) if v is not None else None

    def set_snapshot_sizes(self, series: str, kind: str, data_bytes: int,
                           stored_bytes: int) -> None:
        with self._tx() as db:
            for key, value in ((f"last_data_bytes:{series}", data_bytes),
                               (f"last_data_bytes:{series}:{kind}", data_bytes),
                               (f"last_stored_bytes:{series}", stored_bytes)):
                db.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?,?)", (key, str(value)))

    def nonempty_sources(self, series: str) -> list[str]:
        """The source directories that had entries at the series' last snapshot (an empty
        one of these now is a disk not mounted: the builder's source guard)."""
        return list(json.loads(self.get(f"nonempty_sources:{series}") or "[]"))

    def set_nonempty_sources(self, series: str, paths: list[str]) -> None:
        self.set(f"nonempty_sources:{series}", json.dumps(paths))

    # -- tables other modules keep here (metrics counters, the notification queue) -----------
    def ensure_tables(self, sql: str) -> None:
        """Create a module's own tables (``CREATE TABLE IF NOT EXISTS …``)."""
        with self._lock:
            self._db.executescript(sql)

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        return self._q(sql, args)

    def transaction(self) -> _Tx:
        """``with state.transaction() as db:`` several statements as one."""
        return self._tx()


class _Tx:
    def __init__(self, store: StateStore) -> None:
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        self.store._lock.acquire()
        self.store._db.execute("BEGIN IMMEDIATE")
        return self.store._db

    def __exit__(self, exc_type, exc, tb) -> None:  # noqa: ANN001
        try:
            self.store._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.store._lock.release()
