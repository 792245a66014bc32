"""A resumable PAX tar stream of the walked entries.

The stream is what GNU tar writes with ``--format=posix --xattrs``: modes, owners by id and
name, mtimes to the nanosecond (``mtime`` PAX record), symlinks, hardlinks, devices, fifos,
xattrs (``SCHILY.xattr.*``), empty directories, long and non-UTF-8 names
(``hdrcharset=BINARY``).

Between any two chunks it yields, the stream can report a :class:`TarCheckpoint`: how
many bytes were produced, which entry was being written and how far into it. A new stream
created from that checkpoint produces exactly the rest of the archive (re-reading the
in-progress file from the right offset), so an interrupted snapshot resumes mid-file.

A chunk is valid until the next one is asked for: big reads of file content go into one
reused buffer (``os.preadv``), so the stream allocates no megabyte per read (whose page
faults cost 0.3 s of system time per GB); a consumer that keeps a chunk copies it.

Why ~420 lines: the header encoder is tarheader.py; what stays is one resumable writer whose
checkpoint must account for every byte of every kind of entry, so they are kept together.
"""
from __future__ import annotations

import base64
import errno
import grp
import os
import pwd
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

from .tarheader import BLOCK, encode_header
from .walk import Entry, Key, Walker, key_from_json, key_to_json

RECORD = 20 * BLOCK  # GNU tar's default record size: the archive is padded to it

Report = Callable[[str, bytes, str], None]  # (kind, path, message)


@dataclass
class TarStats:
    files: int = 0  # regular files (hardlinks included)
    dirs: int = 0
    others: int = 0  # symlinks, devices, fifos
    data_bytes: int = 0  # file content bytes read
    # what an IndexPlan decided (non-directories): stored as new or changed, left out as
    # unchanged since the base, gone since the base
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    deleted: int = 0


@dataclass
class TarCheckpoint:
    offset: int = 0
    last_key: Key | None = None  # the last entry written completely
    cur_key: Key | None = None  # the entry being written, if the stream stopped inside one
    cur_path: bytes = b""
    cur_header: bytes = b""
    cur_size: int = 0  # data size the header announced
    cur_done: int = 0  # bytes of this entry (header + data + padding) already produced
    cur_ident: tuple[int, int, int] = (0, 0, 0)  # (inode, size, mtime_ns) when it was read
    finished: bool = False
    links: dict[tuple[int, int], bytes] = field(default_factory=dict)  # hardlink targets
    stats: TarStats = field(default_factory=TarStats)

    def to_json(self) -> dict:
        return {
            "offset": self.offset,
            "last_key": key_to_json(self.last_key) if self.last_key is not None else None,
            "cur_key": key_to_json(self.cur_key) if self.cur_key is not None else None,
            "cur_path": os.fsdecode(self.cur_path),
            "cur_header": base64.b64encode(self.cur_header).decode(),
            "cur_size": self.cur_size,
            "cur_done": self.cur_done,
            "cur_ident": list(self.cur_ident),
            "finished": self.finished,
            "links": [[d, i, os.fsdecode(n)] for (d, i), n in self.links.items()],
            "stats": asdict(self.stats),
        }

    @classmethod
    def from_json(cls, d: dict) -> TarCheckpoint:
        return cls(
            offset=d["offset"],
            last_key=key_from_json(d["last_key"]) if d["last_key"] is not None else None,
            cur_key=key_from_json(d["cur_key"]) if d["cur_key"] is not None else None,
            cur_path=os.fsencode(d["cur_path"]),
            cur_header=base64.b64decode(d["cur_header"]),
            cur_size=d["cur_size"],
            cur_done=d["cur_done"],
            cur_ident=tuple(d["cur_ident"]),  # type: ignore[arg-type]
            finished=d["finished"],
            links={(dv, ino): os.fsencode(n) for dv, ino, n in d["links"]},
            stats=TarStats(**d["stats"]),
        )


class _Names:
    """uid/gid → name lookups, cached for one stream (they are slow with NSS)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int], bytes] = {}

    def _name(self, kind: str, ident: int, lookup: Callable[[int], str]) -> bytes:
        key = (kind, ident)
        name = self._cache.get(key)
        if name is None:
            try:
                name = os.fsencode(lookup(ident))
            except KeyError:
                name = b""  # no such user/group: the archive keeps the id only
            self._cache[key] = name
        return name

    def user(self, uid: int) -> bytes:
        return self._name("u", uid, lambda i: pwd.getpwuid(i).pw_name)

    def group(self, gid: int) -> bytes:
        return self._name("g", gid, lambda i: grp.getgrgid(i).gr_name)


def _xattrs(target: int | bytes, follow: bool = False) -> list[tuple[bytes, bytes]]:
    """``SCHILY.xattr.<name>`` PAX records, sorted by name, values as raw bytes."""
    try:
        names = (os.listxattr(target, follow_symlinks=follow) if isinstance(target, bytes)
                 else os.listxattr(target))
    except OSError:
        return []
    out = []
    for name in sorted(names):
        try:
            if isinstance(target, bytes):
                value = os.getxattr(target, name, follow_symlinks=follow)
            else:
                value = os.getxattr(target, name)
        except OSError:
            continue
        out.append((b"SCHILY.xattr." + os.fsencode(name), value))
    return out


_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0)


def _open_noatime(path: bytes) -> int:
    try:
        return os.open(path, _OPEN_FLAGS | getattr(os, "O_NOATIME", 0))
    except PermissionError:
        return os.open(path, _OPEN_FLAGS)  # O_NOATIME needs ownership or CAP_FOWNER


class TarStream:
    def __init__(
        self,
        walker: Walker,
        report: Report,
        resume: TarCheckpoint | None = None,
        chunk_size: int = 1 << 20,
        plan: object | None = None,
    ) -> None:
        """``plan``: an :class:`~.incremental.IndexPlan` (dumpdir records, the index, and
        which non-directories an incremental leaves out); None writes a plain full."""
        self.plan = plan
        self.walker = walker
        self.report = report
        self.cp = resume if resume is not None else TarCheckpoint()
        self.chunk_size = chunk_size
        self.names = _Names()
        self._pending: list[bytes] = []  # small pieces not yet yielded
        self._pending_size = 0
        self._direct = max(1, chunk_size // 4)  # pieces at least this big are yielded as they are
        self._scratch = memoryview(bytearray(chunk_size))  # where big reads go (valid until next)

    def checkpoint(self) -> TarCheckpoint:
        """The position after every chunk yielded so far (valid between chunks)."""
        cp = self.cp
        return TarCheckpoint(
            cp.offset, cp.last_key, cp.cur_key, cp.cur_path, cp.cur_header, cp.cur_size,
            cp.cur_done, cp.cur_ident, cp.finished, dict(cp.links), TarStats(**asdict(cp.stats)),
        )

    # -- output -----------------------------------------------------------------------
    def _out(self, data: bytes) -> Iterator[bytes]:
        """Account ``data`` to the stream and the entry in progress; yield full chunks.

        Small pieces (headers, small files, padding) are gathered into chunks; a large
        piece of file data goes out as it is, after what was gathered, so file content
        is never copied on its way to the compressor. Every byte accounted is yielded
        before the next yield, which is what makes the position between chunks a
        checkpoint.
        """
        n = len(data)
        if n >= self._direct:
            if self._pending:
                yield self._take()
            self._account(n)
            yield data
            return
        self._account(n)
        self._pending.append(data)
        self._pending_size += n
        if self._pending_size >= self.chunk_size:
            yield self._take()

    def _account(self, n: int) -> None:
        self.cp.offset += n
        if self.cp.cur_key is not None:
            self.cp.cur_done += n

    def _take(self) -> bytes:
        chunk = b"".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        return chunk

    def __iter__(self) -> Iterator[bytes]:
        cp = self.cp
        if cp.finished:
            return
        if cp.cur_key is not None:
            yield from self._finish_partial()
        for entry in self.walker.walk(after=cp.last_key):
            yield from self._entry(entry)
        # end of archive: two zero blocks, then pad to a full record like GNU tar
        end = 2 * BLOCK
        end += (-(cp.offset + end)) % RECORD
        yield from self._out(bytes(end))
        cp.finished = True
        if self._pending:
            yield self._take()

    # -- entries ----------------------------------------------------------------------
    def _header(self, entry: Entry, st: os.stat_result,
                xattrs: list[tuple[bytes, bytes]]) -> tuple[bytes, int]:
        name = entry.arcname
        linkname = b""
        size = 0
        device = None
        m = st.st_mode
        if stat.S_ISREG(m):
            key = (st.st_dev, st.st_ino)
            target = self.cp.links.get(key) if st.st_nlink > 1 else None
            if target is not None:
                typ, linkname = tarfile.LNKTYPE, target
            else:
                typ, size = tarfile.REGTYPE, st.st_size
                if st.st_nlink > 1:
                    self.cp.links[key] = entry.arcname
        elif stat.S_ISDIR(m):
            typ = tarfile.DIRTYPE
            if not name.endswith(b"/"):
                name += b"/"
        elif stat.S_ISLNK(m):
            typ, linkname = tarfile.SYMTYPE, os.readlink(entry.path)
        elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
            typ = tarfile.CHRTYPE if stat.S_ISCHR(m) else tarfile.BLKTYPE
            device = (os.major(st.st_rdev), os.minor(st.st_rdev))
        elif stat.S_ISFIFO(m):
            typ = tarfile.FIFOTYPE
        else:
            raise ValueError("socket")
        header = encode_header(
            name, stat.S_IMODE(m), st.st_uid, st.st_gid, size, st.st_mtime_ns, typ, linkname,
            self.names.user(st.st_uid), self.names.group(st.st_gid), device, xattrs,
        )
        return header, size

    def _entry(self, entry: Entry) -> Iterator[bytes]:
        cp = self.cp
        st = entry.st
        fd = -1
        try:
            if stat.S_ISSOCK(st.st_mode):
                cp.last_key = entry.key  # sockets cannot be archived; tar skips them too
                return
            plan = self.plan
            is_dir = stat.S_ISDIR(st.st_mode)
            if plan is not None and not is_dir and not plan.wanted(entry, cp.offset):  # type: ignore[attr-defined]
                cp.last_key = entry.key  # unchanged since the base: in an earlier archive
                return
            if stat.S_ISREG(st.st_mode):
                try:
                    fd = _open_noatime(entry.path)
                    st = os.fstat(fd)
                except OSError as e:
                    self._report_oserror(entry.path, e)
                    self._skip(entry)
                    return
                if not stat.S_ISREG(st.st_mode):
                    self.report("changed", entry.path,
                                "replaced by another kind of file while read; skipped")
                    self._skip(entry)
                    return
                xattrs = _xattrs(fd)
            else:
                xattrs = _xattrs(entry.path)
            if plan is not None:
                if is_dir:
                    xattrs = xattrs + plan.directory(entry, cp.offset, xattrs)  # type: ignore[attr-defined]
            try:
                header, size = self._header(entry, st, xattrs)
            except OSError as e:  # readlink of a vanished symlink
                self._report_oserror(entry.path, e)
                self._skip(entry)
                return
            if plan is not None and not is_dir:
                plan.stored(entry, cp.offset, xattrs)  # type: ignore[attr-defined]
            cp.cur_key, cp.cur_path, cp.cur_header = entry.key, entry.path, header
            cp.cur_size, cp.cur_done = size, 0
            cp.cur_ident = (st.st_ino, st.st_size, st.st_mtime_ns)
            yield from self._out(header)
            if size:
                yield from self._data(fd, entry.path, 0, size, st)
            if stat.S_ISREG(st.st_mode):
                cp.stats.files += 1
            elif stat.S_ISDIR(st.st_mode):
                cp.stats.dirs += 1
            else:
                cp.stats.others += 1
            cp.last_key, cp.cur_key = entry.key, None
            cp.cur_header = b""
        finally:
            if fd >= 0:
                os.close(fd)

    def _skip(self, entry: Entry) -> None:
        """An entry that could not be archived; an incremental's next run reads it again."""
        if self.plan is not None and not stat.S_ISDIR(entry.st.st_mode):
            self.plan.failed(entry, self.cp.offset)  # type: ignore[attr-defined]
        self.cp.last_key = entry.key

    def _data(self, fd: int, path: bytes, start: int, size: int,
              st: os.stat_result) -> Iterator[bytes]:
        """File content from ``start`` up to the announced ``size``, then block padding."""
        pos = start
        short = False
        while pos < size:
            n = min(self.chunk_size, size - pos)
            try:
                if fd < 0:
                    data = b""
                elif n >= self._direct:  # yielded as it is: read into the reused buffer
                    got = os.preadv(fd, [self._scratch[:n]], pos)
                    data = self._scratch[:got]
                    if got < self._direct:  # a short read would be gathered (kept): copied
                        data = bytes(data)
                else:
                    data = os.pread(fd, n, pos)
            except OSError as e:
                self.report("unreadable", path,
                            f"read error at byte {pos}: {e.strerror}; rest zero-filled")
                data = b""
            if not data:
                short = True
                data = bytes(n)  # the file shrank: keep the archive valid, report it
            self.cp.stats.data_bytes += len(data)
            pos += len(data)
            yield from self._out(data)
        pad = (-size) % BLOCK
        if pad:
            yield from self._out(bytes(pad))
        if fd >= 0:
            after = os.fstat(fd)
            if short or after.st_size != st.st_size or after.st_mtime_ns != st.st_mtime_ns:
                self.report("changed", path,
                            "changed while it was read; the archived copy may be inconsistent")

    def _finish_partial(self) -> Iterator[bytes]:
        """Resume inside an entry: the rest of its header, then its data from the offset."""
        cp = self.cp
        header = cp.cur_header
        if cp.cur_done < len(header):
            yield from self._out(header[cp.cur_done :])
        size = cp.cur_size
        if size:
            start = cp.cur_done - len(header)
            fd = -1
            ino, old_size, old_mtime = cp.cur_ident
            try:
                fd = _open_noatime(cp.cur_path)
                st = os.fstat(fd)
                if (st.st_ino, st.st_size, st.st_mtime_ns) != (ino, old_size, old_mtime):
                    self.report(
                        "changed", cp.cur_path,
                        "changed between the interruption and the resumed run; "
                        "the archived copy mixes both",
                    )
            except OSError as e:
                self._report_oserror(cp.cur_path, e)
                st = os.stat_result((0,) * 10)
            try:
                data_done = max(0, start)
                if data_done < size:
                    yield from self._data(fd, cp.cur_path, data_done, size, st)
                else:
                    pad_done = start - size
                    pad = (-size) % BLOCK
                    if pad > pad_done:
                        yield from self._out(bytes(pad - pad_done))
            finally:
                if fd >= 0:
                    os.close(fd)
        hdr_type = header[-BLOCK + 156 : -BLOCK + 157]  # the ustar block follows PAX records
        if hdr_type in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.LNKTYPE):
            cp.stats.files += 1
        elif hdr_type == tarfile.DIRTYPE:
            cp.stats.dirs += 1
        else:
            cp.stats.others += 1
        cp.last_key, cp.cur_key, cp.cur_header = cp.cur_key, None, b""

    def _report_oserror(self, path: bytes, e: OSError) -> None:
        if e.errno == errno.ENOENT:
            self.report("vanished", path, "vanished before it could be read")
        elif e.errno == errno.ELOOP:
            self.report("changed", path, "replaced by a symlink while read; skipped")
        else:
            self.report("unreadable", path, e.strerror or str(e))
