"""Opening the state database so that a damaged one never stops backups (issue 9, item 10).

The database is a cache of what the destinations hold (plus run history and resume
points): a file that is not a database, or one SQLite finds malformed, is moved aside
(``state.db.damaged-TIME``, with its -wal and -shm) with a journal record, and a new one
is started; the next snapshot is then a full one made anew. A state directory that cannot
be written (read-only, full, wrong owner) is :class:`StateUnavailable`: a one-line error
naming the file and what to do, never a traceback. Restore, verify and snapshot listing
do not open the database at all.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

from .journal import MSG_STATE_DAMAGED
from .state import StateStore

log = logging.getLogger("odbackupd.state")

DAMAGED = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}


class StateUnavailable(Exception):
    """The state database cannot be opened or written (one line, names the file)."""


def explain(path: Path, e: BaseException) -> str:
    what = getattr(e, "strerror", None) or str(e)
    foreign = _owned_by_another(path)
    if foreign:
        return f"state database {path}: {what}; {foreign}"
    return (f"state database {path}: {what}; the state directory {path.parent} must be writable by "
            "odbackupd and have free space (read-only, full, or owned by another user?)")


def _owned_by_another(path: Path) -> str | None:
    """The state file another user owns (``odbackupd --once`` run as root, before it handed
    its files back), with the chown that fixes it."""
    import pwd

    me = os.geteuid()
    for p in (path.parent, path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            uid = p.stat().st_uid
        except OSError:
            continue
        if uid != me:
            def name(u: int) -> str:
                try:
                    return pwd.getpwuid(u).pw_name
                except KeyError:
                    return str(u)
            return (f"{p} is owned by {name(uid)}, not by {name(me)}, who runs this "
                    f"(was odbackupd --once run as {name(uid)}?); "
                    f"as root, run: chown -R {name(me)}: {path.parent}")
    return None


def _damaged(e: sqlite3.Error) -> bool:
    name = getattr(e, "sqlite_errorname", "")
    if name:
        return name in DAMAGED
    return not isinstance(e, sqlite3.OperationalError)


def _open_checked(path: Path) -> StateStore:
    s = StateStore(path)
    try:
        rows = s._q("PRAGMA quick_check")
        if rows != [("ok",)]:
            raise sqlite3.DatabaseError(f"database disk image is malformed ({rows[0][0]})")
    except BaseException:
        s.close()
        raise
    return s


def open_state(path: Path) -> StateStore:
    path = Path(path)
    try:
        return _open_checked(path)
    except OSError as e:
        raise StateUnavailable(explain(path, e)) from None
    except sqlite3.Error as e:
        if not _damaged(e):
            raise StateUnavailable(explain(path, e)) from None
        reason = str(e)
    moved = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
    try:
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(path) + suffix)
            if src.exists():
                os.replace(src, str(moved) + suffix)
    except OSError as e:
        raise StateUnavailable(f"state database {path} is damaged ({reason}) and cannot be moved "
                               f"aside: {e.strerror}; move it away by hand") from None
    log.error("state database %s is damaged (%s): moved to %s; starting a new one "
              "(no snapshot is lost; an interrupted snapshot starts over)", path, reason, moved,
              extra={"journal_fields": {"MESSAGE_ID": MSG_STATE_DAMAGED, "STATE_DB": str(path),
                                        "MOVED_TO": str(moved), "ERROR": reason}})
    try:
        return _open_checked(path)
    except (OSError, sqlite3.Error) as e:
        raise StateUnavailable(explain(path, e)) from None
