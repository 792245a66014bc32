"""The drop directory's rules, in one place for the daemon (dropdir.py, which also sees
inotify's close events) and ``odbackupd --once`` (which looks once):

* a file is *complete* when its name is not a temporary one (``.*``, ``*.tmp``, ``*.part``,
  ``*~``: renamed when done), it is a regular file, and no process has it open for
  writing; a file whose close was not seen must also be unchanged for the job's
  quiet_period;
* it *may be deleted* only when its snapshot completed without warnings (a warning means
  it changed while it was read) and it is still the same file (inode, size, mtime) as
  when its upload started.
"""
from __future__ import annotations

import errno
import fcntl
import os
import signal
import stat
import threading
from pathlib import Path
from typing import Any

__all__ = ["is_temporary_name", "open_for_writing", "file_signature", "left_for_later",
           "stored_cleanly", "unchanged"]

_SUFFIXES = (".tmp", ".part", "~")


def is_temporary_name(name: str) -> bool:
    """Whether ``name`` is conventionally a file still being written, renamed when done."""
    return name.startswith(".") or name.endswith(_SUFFIXES)


def open_for_writing(path: str | os.PathLike) -> bool | None:
    """Whether any process has ``path`` open for writing: True, False, or None when the
    kernel will not say (no CAP_LEASE and not the owner, no lease support, not a regular
    file). Asks by taking a read lease, which is refused while a writable descriptor
    exists, and giving it back at once.

    A lease break is signalled with SIGIO, whose default action ends the process: SIGIO is
    ignored first (nothing else here uses it); off the main thread, where that cannot be
    set, the answer is None unless it already is."""
    if signal.getsignal(signal.SIGIO) is not signal.SIG_IGN:
        if threading.current_thread() is not threading.main_thread():
            return None
        signal.signal(signal.SIGIO, signal.SIG_IGN)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as e:
        return True if e.errno in (errno.EAGAIN, errno.EBUSY) else None
    else:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


def file_signature(st: os.stat_result) -> tuple[int, int, int, int]:
    """What must not change between taking a file and deleting it after its upload."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def left_for_later(path: Path, st: os.stat_result, quiet_period: float, now: float) -> str | None:
    """Why a file found in the directory (its close not seen) is not complete yet, or None
    when it may be taken now."""
    if is_temporary_name(path.name) or not stat.S_ISREG(st.st_mode):
        return "not a complete file"
    if now - st.st_mtime < quiet_period:
        return f"changed less than {quiet_period:g}s ago"
    if open_for_writing(path):
        return "still open for writing"
    return None


def stored_cleanly(run: Any) -> bool:
    """The file's snapshot is complete, verified, and read without a warning."""
    return bool(run.result.ok and not run.result.warning_counts)


def unchanged(before: tuple[int, int, int, int], now: os.stat_result | None) -> bool:
    """Still the file whose upload started: only then may it be deleted."""
    return now is not None and file_signature(now) == before
