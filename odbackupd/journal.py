"""Logging: native journald with structured fields, plain stderr elsewhere.

Callers log with the standard ``logging`` module and pass structured fields as
``extra={"journal_fields": {"JOB": "etc", "BYTES": 123}}``. Under systemd (``JOURNAL_STREAM``
matches our stderr) and with python3-systemd installed, records go to journald with those
fields, ``MESSAGE_ID`` included; otherwise to stderr, with ``<N>`` priority prefixes when
stderr is the journal's stream so ``journalctl -p`` still works.
"""
from __future__ import annotations

import logging
import os
import sys
import uuid

# MESSAGE_IDs a sysadmin can grep for (journalctl MESSAGE_ID=…); catalog: systemd/odbackupd.catalog
MSG_RUN_STARTED = uuid.UUID("6c1d2b7e0b4f4a51a7c4d1f0b6f3a101")
MSG_RUN_FINISHED = uuid.UUID("6c1d2b7e0b4f4a51a7c4d1f0b6f3a102")
MSG_RUN_FAILED = uuid.UUID("6c1d2b7e0b4f4a51a7c4d1f0b6f3a103")
MSG_LOGIN_NEEDED = uuid.UUID("6c1d2b7e0b4f4a51a7c4d1f0b6f3a104")
MSG_SNAPSHOT_PRUNED = uuid.UUID("6c1d2b7e0b4f4a51a7c4d1f0b6f3a105")
MSG_NOTIFY_GIVEN_UP = uuid.UUID("6c1d2b7e0b4f4a51a7c4d1f0b6f3a1a1")
MSG_STATE_DAMAGED = uuid.UUID("b3f0c6a2d94e4c1f8e5a7d2c61f0e9a4")
MSG_INTAKE_STORED = uuid.UUID("6c1d2b7e0b4f4a51a7c4d1f0b6f3a111")  # odbackupd-intake

_PRIORITY = {
    logging.DEBUG: 7, logging.INFO: 6, 25: 5, logging.WARNING: 4, logging.ERROR: 3,
    logging.CRITICAL: 2,
}
NOTICE = 25
logging.addLevelName(NOTICE, "NOTICE")


def _priority(levelno: int) -> int:
    for lvl in sorted(_PRIORITY, reverse=True):
        if levelno >= lvl:
            return _PRIORITY[lvl]
    return 7


def under_journald() -> bool:
    js = os.environ.get("JOURNAL_STREAM")
    if not js:
        return False
    try:
        dev, ino = (int(x) for x in js.split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


class JournalFieldsHandler(logging.Handler):
    """Sends records to journald with their structured fields (python3-systemd)."""

    def __init__(self, identifier: str) -> None:
        super().__init__()
        from systemd import journal  # type: ignore[import-not-found]

        self._send = journal.send
        self.identifier = identifier

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = {}
            for k, v in (getattr(record, "journal_fields", None) or {}).items():
                fields[k.upper()] = v.hex if isinstance(v, uuid.UUID) else str(v)
            self._send(
                self.format(record),
                PRIORITY=str(_priority(record.levelno)),
                SYSLOG_IDENTIFIER=self.identifier,
                LOGGER=record.name,
                CODE_FILE=record.pathname, CODE_LINE=record.lineno, CODE_FUNC=record.funcName,
                **fields,
            )
        except Exception:  # noqa: BLE001 - logging must never take the daemon down
            self.handleError(record)


class PrefixFormatter(logging.Formatter):
    def __init__(self, prefix: bool) -> None:
        super().__init__("%(message)s")
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        msg = super().format(record)
        if self.prefix:
            return f"<{_priority(record.levelno)}>{msg}"
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {msg}"
        return msg


def setup_logging(identifier: str = "odbackupd", level: str = "info") -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    lvl = {"debug": logging.DEBUG, "info": logging.INFO, "notice": NOTICE,
           "warning": logging.WARNING, "error": logging.ERROR}.get(level, logging.INFO)
    root.setLevel(lvl)
    # urllib3's debug lines carry whole request paths, among them OneDrive's
    # pre-authenticated upload and download URLs (usable without a token): never log them
    logging.getLogger("urllib3.connectionpool").setLevel(max(lvl, logging.INFO))
    handler: logging.Handler
    if under_journald():
        try:
            handler = JournalFieldsHandler(identifier)
        except ImportError:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(PrefixFormatter(prefix=True))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(PrefixFormatter(prefix=False))
    root.addHandler(handler)
