"""The extractor: tar members to files, race-free, below a target directory descriptor.

The archive is never trusted (absolute names are made relative, ``..`` and NUL bytes are
refused, nothing is written through a symlink), and neither is the target: another user
who can write there may swap directories for symlinks while root restores. So no path is
ever resolved twice. Each parent directory is opened from its parent's descriptor with
``O_NOFOLLOW | O_DIRECTORY`` (created with ``mkdir`` relative to it when missing); files
are created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` relative to that descriptor, and their
owner, mode, extended attributes and times are set on the open descriptor. Symlinks,
devices and fifos are reopened with ``O_PATH | O_NOFOLLOW``, checked to be the object just
created (type, our uid, one link), and changed through ``/proc/self/fd``. Directories get
their attributes at the end (deepest first, so a restored 0555 or another user's directory
does not block or expose what goes inside) after being reopened the same way and checked
to be the directory this restore made or entered (device and inode).

Special files (setuid/setgid files, ``security.capability``, device nodes) are counted;
``special_files=False`` leaves them out (the bits cleared, the attribute not set, the node
not made) — what restore_snapshot decides for a snapshot not known to be authentic.

Why ~410 lines: every write below the target goes through the one directory-descriptor
walk here (``dir_fd=``, ``O_NOFOLLOW``), one method per member type; splitting the types
across modules would spread the one rule that matters, never follow a path by name.
"""
from __future__ import annotations

import contextlib
import errno
import grp
import logging
import os
import pwd
import stat
import tarfile
from collections.abc import Callable, Sequence
from typing import BinaryIO

from .restore_errors import IntegrityError, RestoreStopped
from .restore_result import RestoreStats
from .target import parse_paths
from .tarheader import parse_ns
from .tarread import open_tar, read_members

log = logging.getLogger("odbackupd.restore")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
# errors after which no later member can be written either: stop and say so
_STOP_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}
CAPABILITY = "security.capability"
_PROC_FD = os.path.isdir("/proc/self/fd")


class Unsafe(Exception):
    pass


class _Malformed(Exception):
    """A member whose metadata cannot be right (archive damage, exit 4)."""


def _member_parts(name: str) -> list[bytes]:
    raw = os.fsencode(name)
    if b"\0" in raw:
        raise Unsafe("its name contains a NUL byte")
    parts = [p for p in raw.split(b"/") if p not in (b"", b".")]
    if b".." in parts:
        raise Unsafe("contains '..'")
    if not parts:
        raise Unsafe("empty name")
    return parts


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)
    fds.clear()


class _DirChain:
    """Descriptors of the directories on the way to the current member (tar is depth-first,
    so consecutive members share most of the chain); each opened from its parent's."""

    def __init__(self, root_fd: int, root_path: bytes) -> None:
        self.root, self.root_path = root_fd, root_path
        self.names: list[bytes] = []
        self.fds: list[int] = []

    def close(self) -> None:
        _close_all(self.fds)
        self.names.clear()

    def open(self, dirs: Sequence[bytes], create: bool = True) -> int:
        n = 0
        while n < min(len(self.names), len(dirs)) and self.names[n] == dirs[n]:
            n += 1
        for fd in self.fds[n:]:
            os.close(fd)
        del self.fds[n:], self.names[n:]
        cur = self.fds[-1] if self.fds else self.root
        for i in range(n, len(dirs)):
            cur = open_dir(cur, dirs[i], create, lambda i=i: self.describe(dirs[: i + 1]))
            self.fds.append(cur)
            self.names.append(dirs[i])
        return cur

    def describe(self, dirs: Sequence[bytes]) -> str:
        return os.fsdecode(b"/".join([self.root_path, *dirs]))


def open_dir(parent: int, name: bytes, create: bool, shown: Callable[[], str],
             mode: int = 0o777) -> int:
    """The directory ``name`` below ``parent`` (made when missing and ``create``), never a link."""
    for _ in range(2):
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            try:
                os.mkdir(name, mode, dir_fd=parent)
            except FileExistsError:
                pass
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise Unsafe(f"its parent {shown()} is not a directory (a symlink?)") from None
            raise
    raise Unsafe(f"{shown()} keeps changing")


class Extractor:
    def __init__(self, root_fd: int, root_path: str, *, paths: Sequence[str] = (),
                 same_owner: bool | None = None, numeric_owner: bool = False,
                 special_files: bool = True, special_reason: str = "",
                 select: Callable[[tarfile.TarInfo], bool] | None = None) -> None:
        """``select``: which members to write (a chain restore writes each file once); one
        extractor may ``extract`` several streams in turn (a chain, oldest first)."""
        self.select = select
        self.root_fd = root_fd
        self.root_path = os.fsencode(root_path)
        self.paths = list(paths)
        self.filters = parse_paths(paths)
        self._matched: set[int] = set()
        self.same_owner = os.geteuid() == 0 if same_owner is None else same_owner
        self.numeric_owner = numeric_owner
        self.special_files = special_files
        self.stats = RestoreStats(special_reason="" if special_files else special_reason)
        self.euid = os.geteuid()
        self._chain = _DirChain(root_fd, self.root_path)
        self._dirs: list[tuple[list[bytes], int, int, tarfile.TarInfo]] = []  # parts, dev, ino, ti
        self._warned: set[str] = set()

    # -- bookkeeping --------------------------------------------------------------------------
    def _warn(self, msg: str, once_key: str | None = None) -> None:
        if once_key is not None:
            if once_key in self._warned:
                return
            self._warned.add(once_key)
        self.stats.warnings.append(msg)
        log.debug("%s", msg)  # the caller reports the warnings (odctl prints each once)

    def _damaged(self, name: str, what: str) -> None:
        self.stats.damaged.append(f"{name}: {what}")

    def _special(self, kind: str) -> bool:
        """Count a special file; True when it is to be restored."""
        self.stats.special[kind] = self.stats.special.get(kind, 0) + 1
        if self.special_files or not self.same_owner:
            return True
        self.stats.special_left_out[kind] = self.stats.special_left_out.get(kind, 0) + 1
        return False

    def _wanted(self, parts: list[bytes]) -> bool:
        if not self.filters:
            return True
        t = tuple(parts)
        hits = {i for i, f in enumerate(self.filters) if t[: len(f)] == f}
        self._matched |= hits
        return bool(hits)

    # -- the loop -----------------------------------------------------------------------------
    def extract(self, stream: BinaryIO) -> RestoreStats:
        try:
            with open_tar(stream) as tf:
                for ti in read_members(tf):
                    self._one(tf, ti)
        except BaseException as e:  # damage, a full disk, Ctrl-C: the caller says what is there
            self.stats.stopped = self.stats.stopped or str(e) or type(e).__name__
            e.stats = self.stats  # type: ignore[attr-defined]
            raise
        finally:
            self._chain.close()
            self._finish_dirs()
            # a mistyped --path restores nothing: say so rather than report a restore of 0 files
            # (a stream that stopped early says that instead: what it did not reach may be there)
            if not self.stats.stopped:
                self.stats.unmatched = [p for i, p in enumerate(self.paths)
                                        if i not in self._matched]
        return self.stats

    def _one(self, tf: tarfile.TarFile, ti: tarfile.TarInfo) -> None:
        if self.select is not None and not self.select(ti):
            return
        try:
            parts = _member_parts(ti.name)
            if not self._wanted(parts):
                return
            self._member(tf, ti, parts)
        except Unsafe as e:
            self.stats.refused.append(ti.name)
            self._warn(f"refused {ti.name!r}: {e}")
        except _Malformed as e:
            self._damaged(ti.name, str(e))
        except (ValueError, OverflowError) as e:  # whatever else malformed metadata trips
            self._damaged(ti.name, f"malformed metadata ({e})")
        except OSError as e:
            why = e.strerror or str(e)
            self.stats.failed.append(f"{ti.name}: {why}")
            if e.errno in _STOP_ERRNOS:
                raise RestoreStopped(f"cannot write {ti.name}: {why}") from e

    def _member(self, tf: tarfile.TarFile, ti: tarfile.TarInfo, parts: list[bytes]) -> None:
        name = parts[-1]
        pfd = self._chain.open(parts[:-1])
        if ti.isdir():
            self._clear(pfd, name, keep_dir=True)
            fd = open_dir(pfd, name, True, lambda: self._chain.describe(parts), mode=0o700)
            st = os.fstat(fd)
            os.close(fd)
            self._dirs.append((parts, st.st_dev, st.st_ino, ti))
            self.stats.dirs += 1
            return
        if (ti.ischr() or ti.isblk()) and not self._device_wanted(ti):
            return  # decided before anything of that name in the target is replaced
        self._clear(pfd, name)
        if ti.isreg():
            self._file(tf, ti, pfd, name)
        elif ti.islnk():
            lparts = _member_parts(ti.linkname)
            src = _DirChain(self.root_fd, self.root_path)
            try:
                os.link(lparts[-1], name, src_dir_fd=src.open(lparts[:-1], create=False),
                        dst_dir_fd=pfd, follow_symlinks=False)
            finally:
                src.close()
            self.stats.links += 1  # a hard link shares the attributes of what it links to
        elif ti.issym():
            link = os.fsencode(ti.linkname)
            if b"\0" in link:
                raise _Malformed("symlink target contains a NUL byte")
            os.symlink(link, name, dir_fd=pfd)
            self._other(ti, pfd, name, stat.S_IFLNK)
        elif ti.ischr() or ti.isblk():
            try:
                dev = os.makedev(ti.devmajor, ti.devminor)
            except (OverflowError, ValueError):
                raise _Malformed(f"device number {ti.devmajor},{ti.devminor} is out of range; "
                                 "not created") from None
            kind = stat.S_IFCHR if ti.ischr() else stat.S_IFBLK
            os.mknod(name, kind | 0o600, dev, dir_fd=pfd)
            self._other(ti, pfd, name, kind)
        elif ti.isfifo():
            os.mkfifo(name, 0o600, dir_fd=pfd)
            self._other(ti, pfd, name, stat.S_IFIFO)
        else:
            self.stats.skipped += 1
            self._warn(f"{ti.name}: unsupported member type {ti.type!r}; skipped")

    def _device_wanted(self, ti: tarfile.TarInfo) -> bool:
        if not self._special("device"):
            self.stats.skipped += 1
            return False
        if self.euid != 0:
            self.stats.skipped += 1
            self._warn(f"{ti.name}: device files are restored only as root; skipped")
            return False
        return True

    def _clear(self, pfd: int, name: bytes, keep_dir: bool = False) -> None:
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return
            raise Unsafe("a directory of that name is already there")
        os.unlink(name, dir_fd=pfd)  # a file or a symlink: replaced, never followed

    def _file(self, tf: tarfile.TarFile, ti: tarfile.TarInfo, pfd: int, name: bytes) -> None:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=pfd)
        try:
            src = tf.extractfile(ti)
            assert src is not None
            remaining = ti.size
            while remaining:
                try:
                    b = src.read(min(remaining, 1 << 20))
                except tarfile.TarError:
                    b = b""
                if not b:
                    raise IntegrityError(f"{ti.name}: the archive ends inside this file's data "
                                         f"({remaining} of {ti.size} bytes missing)")
                mv = memoryview(b)
                while mv:
                    mv = mv[os.write(fd, mv):]
                remaining -= len(b)
            self._attrs(fd, ti)
        except BaseException:
            os.close(fd)
            fd = -1
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=pfd)  # never a truncated file that looks restored
            raise
        finally:
            if fd >= 0:
                os.close(fd)
        self.stats.bytes += ti.size
        self.stats.files += 1

    def _other(self, ti: tarfile.TarInfo, pfd: int, name: bytes, kind: int) -> None:
        """Attributes of a symlink, device or fifo, on exactly the object just made."""
        self.stats.others += 1
        fd = os.open(name, _PATH_FLAGS, dir_fd=pfd)
        try:
            st = os.fstat(fd)
            if stat.S_IFMT(st.st_mode) != kind or st.st_uid != self.euid or st.st_nlink != 1:
                raise Unsafe("replaced by someone else while being restored")
            self._attrs(fd, ti, via_proc=True)
        finally:
            os.close(fd)

    # -- attributes ---------------------------------------------------------------------------
    def _owner(self, ti: tarfile.TarInfo) -> tuple[int, int]:
        uid, gid = ti.uid, ti.gid
        if not self.numeric_owner:
            for nm, look, attr in ((ti.uname, pwd.getpwnam, "pw_uid"),
                                   (ti.gname, grp.getgrnam, "gr_gid")):
                if not nm:
                    continue
                if "\0" in nm:
                    self._damaged(ti.name,
                                  "owner name contains a NUL byte; the numeric id was used")
                    continue
                try:
                    val = getattr(look(nm), attr)
                except KeyError:
                    continue
                if attr == "pw_uid":
                    uid = val
                else:
                    gid = val
        return uid, gid

    def _attrs(self, fd: int, ti: tarfile.TarInfo, via_proc: bool = False) -> None:
        """Owner, mode, xattrs, mtime, set on ``fd`` (an O_PATH one through /proc/self/fd)."""
        target: int | str = f"/proc/self/fd/{fd}" if via_proc else fd
        if via_proc and not _PROC_FD:
            self._warn("/proc is not mounted: owners, modes and times of symlinks, devices and "
                       "fifos are not restored", once_key="noproc")
            return
        link = ti.issym()
        if self.same_owner:
            try:
                os.chown(target, *self._owner(ti))
            except OSError as e:
                self._warn(f"{ti.name}: cannot set owner: {e.strerror}")
        if not link:
            mode = ti.mode & (0o7777 if self.same_owner else 0o1777)
            if ti.isreg() and mode & (stat.S_ISUID | stat.S_ISGID) and self.same_owner:
                if not self._special("setuid"):
                    mode &= ~(stat.S_ISUID | stat.S_ISGID)
            os.chmod(target, mode)
        for key, value in ti.pax_headers.items():
            if key.startswith("SCHILY.xattr."):
                self._xattr(target, ti, key[len("SCHILY.xattr."):], value)
        self._mtime(target, ti)

    def _xattr(self, target: int | str, ti: tarfile.TarInfo, name: str, value: str) -> None:
        if not name or "\0" in name:
            self._damaged(ti.name, f"extended attribute name {name!r} is empty or contains a NUL "
                          "byte; not set")
            return
        if name == CAPABILITY and not self._special("capability"):
            return
        try:
            os.setxattr(target, name, value.encode("utf-8", "surrogateescape"))
        except OSError as e:
            if e.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                self._warn(f"extended attribute {name} not restored ({e.strerror}); further such "
                           "warnings suppressed", once_key="xattr:" + name.split(".")[0])
            else:
                self._warn(f"{ti.name}: extended attribute {name}: {e.strerror}")

    def _mtime(self, target: int | str, ti: tarfile.TarInfo) -> None:
        raw = ti.pax_headers.get("mtime")
        try:
            ns = parse_ns(raw) if raw else int(ti.mtime) * 1_000_000_000
            os.utime(target, ns=(ns, ns))
        except (ValueError, OverflowError):
            self._damaged(ti.name,
                          f"modification time {raw or ti.mtime!r} is not a valid time; not set")
        except OSError as e:
            self._warn(f"{ti.name}: cannot set mtime: {e.strerror}")

    def _finish_dirs(self) -> None:
        """Directory attributes, deepest first, each on the directory this restore saw."""
        chain = _DirChain(self.root_fd, self.root_path)
        try:
            for parts, dev, ino, ti in reversed(self._dirs):
                try:
                    fd = chain.open(parts, create=False)
                    st = os.fstat(fd)
                    if (st.st_dev, st.st_ino) != (dev, ino):
                        raise Unsafe("replaced while being restored")
                    self._attrs(fd, ti)
                except (Unsafe, OSError, ValueError, OverflowError) as e:
                    self._warn(f"{ti.name}: owner, mode and times not set: {e}")
        finally:
            chain.close()
