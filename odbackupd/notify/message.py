"""The document a notification carries, and its one-line title.

The webhook notifier POSTs it as JSON (documented in odbackupd.toml(5)); email and
healthchecks turn it into text. Times are ISO 8601 UTC, sizes bytes; absent values are
left out rather than null.
"""
from __future__ import annotations

import time
from typing import Any

from .. import __version__

WORDS = {
    "start": "STARTED", "success": "OK", "warning": "WARNING", "failure": "FAILED",
    "recovery": "RECOVERED", "login_expired": "LOGIN EXPIRED", "verify_failed": "VERIFY FAILED",
    "test": "TEST",
}
LOG_TAIL_MAX = 100_000  # bytes of log in a healthchecks ping or a mail, as borgmatic caps it


def iso(ts: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else None


def title(doc: dict) -> str:
    """``[odbackupd] HOST SERIES FAILED``: the mail subject and the webhook's ``title``."""
    return (f"[odbackupd] {doc.get('host', '?')} {doc.get('series', '?')} "
            f"{WORDS.get(doc['event'], doc['event'].upper())}")


def document(event: str, *, host: str, series: str, job: str, run_id: int | None = None,
             snapshot: str | None = None, result: str | None = None, started: float | None = None,
             finished: float | None = None, files: int | None = None, data_bytes: int | None = None,
             stored_bytes: int | None = None, warnings: int | None = None, error: str | None = None,
             log: str | None = None, **extra: Any) -> dict:
    doc: dict[str, Any] = {
        "version": 1, "event": event, "host": host, "series": series, "job": job, "run_id": run_id,
        "snapshot": snapshot, "result": result, "started": iso(started), "finished": iso(finished),
        "duration_seconds": round(finished - started, 3) if started and finished else None,
        "files": files, "data_bytes": data_bytes, "stored_bytes": stored_bytes,
        "warnings": warnings, "error": error or None, "odbackupd_version": __version__, **extra,
    }
    doc = {k: v for k, v in doc.items() if v is not None}
    doc["title"] = title(doc)
    if log:
        doc["log"] = log[-LOG_TAIL_MAX:]
    return doc


def text(doc: dict) -> str:
    """A plain-text rendering: the facts, then the log tail."""
    lines = [doc["title"], ""]
    for k in ("event", "host", "series", "snapshot", "run_id", "result", "started", "finished",
              "duration_seconds", "files", "data_bytes", "stored_bytes", "warnings", "destination",
              "error"):
        if k in doc:
            lines.append(f"{k}: {doc[k]}")
    if doc.get("log"):
        lines += ["", "log:", doc["log"]]
    out = "\n".join(lines) + "\n"
    return out[-LOG_TAIL_MAX:]
