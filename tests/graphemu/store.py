"""On-disk state: a small key/value table in SQLite plus plain files for bytes.

Layout of the data directory::

    state.sqlite        every record (items, drives, sessions, tokens, apps, meta) as JSON
    blobs/<item-id>     a file's current bytes
    sessions/<id>.part  bytes an upload session has committed so far
    tls/                the generated CA and server certificate (kept across restarts)
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class Store:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.blob_dir = self.root / "blobs"
        self.part_dir = self.root / "sessions"
        self.blob_dir.mkdir(exist_ok=True)
        self.part_dir.mkdir(exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.root / "state.sqlite", check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS kv (kind TEXT, key TEXT, value TEXT,"
            " PRIMARY KEY (kind, key))"
        )

    def put(self, kind: str, key: str, value: Any) -> None:
        text = json.dumps(value, sort_keys=True)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO kv (kind, key, value) VALUES (?, ?, ?)",
                (kind, key, text),
            )

    def delete(self, kind: str, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM kv WHERE kind = ? AND key = ?", (kind, key))

    def get(self, kind: str, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM kv WHERE kind = ? AND key = ?", (kind, key)
            ).fetchone()
        return json.loads(row[0]) if row else default

    def all(self, kind: str) -> Iterator[tuple[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key, value FROM kv WHERE kind = ? ORDER BY rowid", (kind,)
            ).fetchall()
        for key, text in rows:
            yield key, json.loads(text)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # bytes -------------------------------------------------------------------------
    def blob_path(self, item_id: str) -> Path:
        return self.blob_dir / _safe(item_id)

    def part_path(self, session_id: str) -> Path:
        return self.part_dir / (_safe(session_id) + ".part")

    def write_blob(self, item_id: str, data: bytes) -> Path:
        path = self.blob_path(item_id)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return path

    def move_to_blob(self, src: Path, item_id: str) -> Path:
        path = self.blob_path(item_id)
        os.replace(src, path)
        return path


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
