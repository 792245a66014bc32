"""The restore target: opened once, as a directory descriptor, with no path a user could swap.

Why: a root restore into a directory another user can write races that user. Everything
below the target is reached from the descriptor this module returns (extract.py), so the
only path ever resolved is the one given with ``--to``, and it is resolved here once:
the part that exists is resolved (root's own symlinks such as ``/var/run`` are fine), then
walked component by component with ``O_NOFOLLOW``, and missing components are created
relative to their parent's descriptor. A symlink on that path owned by another user, or a
``--to`` that is itself a symlink, is refused: a link planted in advance would otherwise
decide where root writes. A target another user can write is accepted with a warning
(``TargetInfo.warnings``): the extraction cannot be redirected, but that user can read and
move what is being restored before it is complete.
"""
from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field

from .restore_errors import BadTarget

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# pseudo file systems: writing "files" there changes kernel settings, never restores anything
_PSEUDO = ("/proc", "/sys")


@dataclass
class TargetInfo:
    fd: int
    path: str  # the resolved path, for messages
    warnings: list[str] = field(default_factory=list)


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _check_links(path: str, arg: str) -> None:
    """Refuse a --to that is a symlink, or reached through another user's symlink."""
    me = os.geteuid()
    cur = ""
    for comp in path.strip("/").split("/"):
        cur += "/" + comp
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            return
        except NotADirectoryError:
            raise BadTarget(
                f"--to {arg} lies below {os.path.dirname(cur)}, which is not a directory; "
                "give a directory to restore into"
            ) from None
        if not stat.S_ISLNK(st.st_mode):
            continue
        dest = os.readlink(cur)
        if cur == path:
            raise BadTarget(
                f"--to {arg} is a symbolic link (to {dest}), owned by {_user(st.st_uid)}; "
                "odctl does not restore through a link: give the directory itself "
                f"(--to {os.path.realpath(cur)}) if that is where the files belong")
        if st.st_uid not in (0, me):
            raise BadTarget(
                f"--to {arg}: {cur} is a symbolic link (to {dest}) owned by user "
                f"{_user(st.st_uid)}, who could point it anywhere; give the real path "
                f"(--to {os.path.realpath(path)}) after checking it")


def _check_place(real: str, arg: str) -> None:
    for p in _PSEUDO:
        if real == p or real.startswith(p + "/"):
            raise BadTarget(f"--to {arg}: {real} is under {p}, a kernel pseudo file system; "
                            "restore into a directory on a disk")


def _open_nofollow(real: str, arg: str) -> int:
    """``real`` (absolute, no symlinks) opened one component at a time, never following one."""
    fd = os.open("/", _DIR_FLAGS)
    try:
        for comp in [c for c in real.split("/") if c]:
            try:
                nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                raise BadTarget(
                    f"--to {arg}: cannot open {real} ({e.strerror}: it changed while being "
                    "opened, or is not a directory)"
                ) from None
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_target(target: os.PathLike | str) -> TargetInfo:
    """Open (creating what is missing) the restore target; refuse what cannot be restored into."""
    arg = os.fspath(target)
    path = os.path.abspath(arg)
    _check_links(path, arg)
    existing, missing = path, []
    while not os.path.lexists(existing):
        existing, tail = os.path.split(existing)
        missing.insert(0, tail)
    real = os.path.realpath(existing)
    _check_place(real, arg)
    try:
        st = os.stat(real)
    except OSError as e:
        raise BadTarget(f"--to {arg}: {real}: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        what = "is" if not missing else f"lies below {real}, which is"
        raise BadTarget(f"--to {arg} {what} not a directory; give a directory to restore into")
    fd = _open_nofollow(real, arg)
    try:
        # a link swapped in between the first check and the open: the path no longer leads to
        # what was opened (or the link is there for the second check to refuse)
        _check_links(path, arg)
        now, opened = os.stat(existing), os.fstat(fd)
        if (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
            raise BadTarget(f"--to {arg}: {existing} changed while it was opened; is someone else "
                            "changing that directory? Check it and run the restore again")
        for comp in missing:
            try:
                os.mkdir(comp, 0o777, dir_fd=fd)
            except FileExistsError:
                pass
            except OSError as e:
                raise BadTarget(
                    f"--to {arg}: cannot create {os.path.join(real, comp)}: {e.strerror}"
                ) from None
            nfd = _open_nofollow_at(fd, comp, arg)
            os.close(fd)
            fd = nfd
            real = os.path.join(real, comp)
        info = TargetInfo(fd, real)
        info.warnings.extend(writable_by_others(fd, real))
    except BaseException:
        os.close(fd)
        raise
    return info


def _open_nofollow_at(fd: int, comp: str, arg: str) -> int:
    try:
        return os.open(comp, _DIR_FLAGS, dir_fd=fd)
    except OSError as e:
        raise BadTarget(f"--to {arg}: {comp} changed while being created ({e.strerror})") from None


def writable_by_others(fd: int, path: str) -> list[str]:
    """As root: who else can write the target (they can move or read what is restored)."""
    me = os.geteuid()
    if me != 0:
        return []
    st = os.fstat(fd)
    who = []
    if st.st_uid != me:
        who.append(f"its owner {_user(st.st_uid)}")
    if st.st_mode & stat.S_IWGRP and st.st_gid != 0:
        who.append(f"group {_group(st.st_gid)}")
    if st.st_mode & stat.S_IWOTH:
        who.append("every user" + (
            " (sticky: they cannot remove root's files)" if st.st_mode & stat.S_ISVTX else ""
        ))
    out = []
    if who:
        out.append(f"the restore target {path} is writable by {' and '.join(who)}: "
                   "files are created through directory descriptors, so nobody can redirect "
                   "them, but those users can read, move or replace what is restored before it "
                   "is complete; for a restore you will trust, restore into a new directory "
                   f"only root can write (install -d -m 0700 {path.rstrip('/')}.restore) and "
                   "move it into place")
    for parent in _parents(path):
        st = os.stat(parent)
        if st.st_uid != 0 or (
            st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
            and not st.st_mode & stat.S_ISVTX
            and (st.st_gid != 0 or st.st_mode & stat.S_IWOTH)
        ):
            out.append(f"{parent}, above the restore target, can be changed by users other than "
                       f"root (owner {_user(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):04o}): "
                       f"they can put another directory where {path} is once the restore is "
                       "done; check before using what is there")
            break
    return out


def _parents(path: str) -> list[str]:
    out = []
    while True:
        path = os.path.dirname(path)
        out.append(path)
        if path == "/":
            return out


def parse_paths(paths: Sequence[str]) -> list[tuple[bytes, ...]]:
    """``--path`` arguments as archived-name prefixes; ``..``, ``.`` and NUL are usage errors."""
    out = []
    for p in paths:
        raw = os.fsencode(p)
        parts = tuple(c for c in raw.split(b"/") if c not in (b"", b"."))
        if b"\0" in raw:
            raise BadTarget(f"--path {p!r}: contains a NUL byte")
        if b".." in parts:
            raise BadTarget(f"--path {p}: '..' cannot name anything in a snapshot (archived "
                            "paths never contain it); give the path as archived, e.g. etc/ssh")
        if not parts:
            raise BadTarget(
                f"--path {p!r} names the whole snapshot; leave --path out to restore everything"
            )
        out.append(parts)
    return out
