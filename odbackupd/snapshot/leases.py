"""Leases on snapshots being read (issue 9, item 9): retention does not delete a snapshot
that a restore or verify on this host is reading.

A lease is a file ``STATE_DIR/leases/SERIES/SNAPSHOT``: readers (``odctl restore``,
``odctl verify``) hold a shared flock on it while they read; retention takes an exclusive
one without waiting before it deletes the snapshot, and holds it until the snapshot is
gone, so a reader that comes later waits and then finds the snapshot gone instead of half
of it. A snapshot whose lease is held is *deferred*: the prune says so and the next run's
retention tries again. Files root makes here belong to the state directory's owner, so the
service (its own user) can take them.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("odbackupd.snapshot")

LEASE_DIR = "leases"


def lease_path(state_dir: Path, series: str, snapshot: str) -> Path:
    return Path(state_dir) / LEASE_DIR / series / snapshot


def _open(state_dir: Path, series: str, snapshot: str) -> int:
    path = lease_path(state_dir, series, snapshot)
    owner = None
    if os.geteuid() == 0:
        st = Path(state_dir).stat()
        owner = (st.st_uid, st.st_gid)
    for d in (path.parent.parent, path.parent):
        try:
            d.mkdir(mode=0o700)
            if owner:
                os.chown(d, *owner)
        except FileExistsError:
            pass
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    if owner:
        os.fchown(fd, *owner)
    return fd


def _same_file(fd: int, path: Path) -> bool:
    """The lease file locked is still the one at its path (retention unlinks it)."""
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


@contextmanager
def reading(state_dir: Path | None, series: str, snapshot: str) -> Iterator[bool]:
    """Hold a shared lease while reading; yields False when none could be taken (the
    state directory is not writable by this user): the caller warns, the read goes on."""
    if state_dir is None or not Path(state_dir).is_dir():
        yield False  # no odbackupd state here: nothing on this host prunes
        return
    path = lease_path(state_dir, series, snapshot)
    while True:
        try:
            fd = _open(state_dir, series, snapshot)
        except OSError:
            yield False  # the caller says so (once)
            return
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits while retention is deleting it
        if _same_file(fd, path):
            break
        os.close(fd)  # retention removed the snapshot and its lease meanwhile: take the new file
    try:
        yield True
    finally:
        os.close(fd)


@contextmanager
def deleting(state_dir: Path | None, series: str, snapshot: str) -> Iterator[bool]:
    """For retention: yields True with the lease held exclusively (delete now), or False
    when a reader holds it (defer)."""
    if state_dir is None:
        yield True
        return
    path = lease_path(state_dir, series, snapshot)
    try:
        fd = _open(state_dir, series, snapshot)
    except OSError as e:
        log.warning("cannot check the lease of snapshot %s (%s: %s); deleting it", snapshot,
                    e.filename or path, e.strerror)
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            yield False
            return
        yield True
        path.unlink(missing_ok=True)  # the snapshot is gone; a waiting reader finds out
    finally:
        os.close(fd)


def in_use(state_dir: Path, series: str, snapshot: str) -> bool:
    """Whether a reader holds the lease now (for status and tests)."""
    path = lease_path(state_dir, series, snapshot)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)
