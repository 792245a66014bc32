"""The read-only FUSE file system of ``odctl mount`` (pyfuse3, low-level API, on trio).

Layout: the mount's root holds one directory per snapshot (its id) and ``latest``, a
symlink to the newest one. A snapshot's directory is what a restore of it into an empty
directory would hold, with the metadata of its index (odbackupd/snapshot/view.py): names
as raw bytes, modes, owners, mtimes, sizes, symlinks, hard links (one inode number, the
link count). A snapshot's view is opened the first time something inside it is looked at
(that fetches its index, and for an incremental its chain's); file data is read from the
volumes that hold it, fetched into the bounded cache (odbackupd/snapshot/volcache.py) when
a read needs them.

Everything that blocks (fetching, decrypting, decompressing) runs in a worker thread
(``trio.to_thread``); the FUSE loop itself never waits on the network. Every request that
would change something is refused with EROFS (the kernel refuses most of them itself: the
file system is mounted ``ro``). Extended attributes are shown, read-only (see below). ``nosuid``
and ``nodev``: a setuid file or a device node
in a snapshot is shown, never honoured.

Reads: a file handle streams its member from where it was opened and serves reads at
increasing offsets; the last 4 MiB read stay in memory for the kernel's reordered
readahead; a read further back, or more than 1 MiB ahead, opens the member again at that
offset (odctl/mountread.py: from a kept decoder, or the volume holding the byte). The
kernel's page cache keeps what was read (``keep_cache``).

Why one module over 400 lines: pyfuse3's operations are one class over one inode table
and handle table; most of the length is the one-line EROFS refusals.
"""
from __future__ import annotations

import errno
import inspect
import os
import stat
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyfuse3
import trio

from .mountview import Adapter, MountNode

TIMEOUT = 3600.0  # a snapshot never changes: the kernel may cache names and attributes
WINDOW = 4 << 20
CHUNK = 1 << 20
JUMP = 1 << 20  # a read further ahead than this opens at it instead of decoding up to it


# A worker still fetching when the mount ends (Ctrl-C during a stalled download) is left to
# finish on its own (trio's worker threads are daemon threads): the unmount never waits on
# the network. trio before 0.23 (Debian 12: 0.22) calls the option ``cancellable``.
_ABANDON = ("abandon_on_cancel"
            if "abandon_on_cancel" in inspect.signature(trio.to_thread.run_sync).parameters
            else "cancellable")


async def _in_thread(fn: Callable, *args: Any) -> Any:
    return await trio.to_thread.run_sync(fn, *args, **{_ABANDON: True})


def _erofs() -> pyfuse3.FUSEError:
    return pyfuse3.FUSEError(errno.EROFS)


@dataclass
class _Snap:
    """One snapshot directory of the root."""

    snapshot: str
    started: float
    inode: int
    open: Callable[[], Adapter]  # blocking: fetches the index(es)
    adapter: Adapter | None = None
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _Ino:
    kind: str  # "root", "latest", "snap", "node"
    snap: _Snap | None = None
    node: MountNode | None = None


class _Handle:
    """An open file: its member streamed forward from the start, a window kept behind."""

    def __init__(self, adapter: Adapter, node: MountNode) -> None:
        self.adapter, self.node = adapter, node
        self.stream: Any = None
        self.pos = 0
        self.tail = bytearray()  # the bytes [pos - len(tail), pos)
        self.lock = threading.Lock()

    def read(self, off: int, size: int) -> bytes:
        with self.lock:
            try:
                return self._read(off, size)
            except BaseException:
                self.close()  # a failed decoder is never read on: the next read starts again
                raise

    def _read(self, off: int, size: int) -> bytes:
        end = min(off + size, self.node.size)
        if off >= end:
            return b""
        if self.stream is None or off < self.pos - len(self.tail) or off > self.pos + JUMP:
            self._reopen(off)  # the decoders kept by the reader decide what that costs
        out = []
        if off < self.pos:  # in the window
            start = len(self.tail) - (self.pos - off)
            out.append(bytes(self.tail[start : start + (end - off)]))
        while self.pos < end:
            want = min(CHUNK, end - self.pos) if self.pos >= off else min(CHUNK, off - self.pos)
            b = self.stream.read(want)
            if not b:
                raise OSError(errno.EIO, f"{self.node.describe()}: the archive ends before the "
                              f"{self.node.size} bytes the index gives")
            if self.pos + len(b) > off:
                out.append(b[max(0, off - self.pos):])
            self.pos += len(b)
            self.tail += b
            if len(self.tail) > 2 * WINDOW:  # amortised: one move per WINDOW bytes read
                del self.tail[: len(self.tail) - WINDOW]
        return b"".join(out)[: end - off]

    def _reopen(self, off: int) -> None:
        self.close()
        self.stream = self.adapter.open_file(self.node, off)
        self.pos, self.tail = off, bytearray()

    def close(self) -> None:
        if self.stream is not None:
            try:
                self.stream.close()
            finally:
                self.stream = None


class SnapshotFS(pyfuse3.Operations):
    """``snapshots``: (id, start time, opener) oldest first; the last is ``latest``."""

    enable_writeback_cache = False
    supports_dot_lookup = True

    def __init__(self, snapshots: Sequence[tuple[str, float, Callable[[], Adapter]]], *,
                 uid: int, gid: int, report: Callable[[str], None],
                 permanent: Callable[[BaseException], bool] = lambda e: True) -> None:
        super().__init__()
        self.permanent = permanent
        self.uid, self.gid = uid, gid
        self.report = report  # one line for the operator (stderr)
        self.mounted_at = time.time()
        self._inodes: dict[int, _Ino] = {pyfuse3.ROOT_INODE: _Ino("root")}
        self._keys: dict[tuple, int] = {}
        self._next = pyfuse3.ROOT_INODE + 1
        self._mu = threading.Lock()
        self.snaps: dict[bytes, _Snap] = {}
        for sid, started, opener in snapshots:
            s = _Snap(sid, started, self._alloc(("snap", sid), _Ino("snap")), opener)
            self._inodes[s.inode].snap = s
            self.snaps[os.fsencode(sid)] = s
        self.latest = list(self.snaps.values())[-1].snapshot if self.snaps else None
        self.latest_inode = self._alloc(("latest",), _Ino("latest")) if self.latest else None
        self._handles: dict[int, _Handle] = {}
        self._dirs: dict[int, list[tuple[bytes, int]]] = {}
        self._fh = 0

    # -- inodes ---------------------------------------------------------------------------------
    def _alloc(self, key: tuple, ino: _Ino) -> int:
        with self._mu:
            n = self._keys.get(key)
            if n is None:
                n = self._keys[key] = self._next
                self._next += 1
                self._inodes[n] = ino
            return n

    def _node_inode(self, snap: _Snap, node: MountNode) -> int:
        return self._alloc(("node", snap.snapshot, node.identity), _Ino("node", snap, node))

    def _get(self, inode: int) -> _Ino:
        try:
            return self._inodes[inode]
        except KeyError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None

    async def _adapter(self, snap: _Snap) -> Adapter:
        if snap.adapter is None and snap.error is None:
            await _in_thread(self._open_snap, snap)
        if snap.adapter is None:
            raise pyfuse3.FUSEError(errno.EIO)
        return snap.adapter

    def _open_snap(self, snap: _Snap) -> None:
        with snap.lock:
            if snap.adapter is not None or snap.error is not None:
                return
            try:
                snap.adapter = snap.open()
            except Exception as e:  # noqa: BLE001 - said, then EIO for everything inside
                why = str(e) or type(e).__name__
                if self.permanent(e):  # damage: said once; a lost network: tried again next time
                    snap.error = why
                self.report(f"snapshot {snap.snapshot} cannot be read: {why}")

    # -- attributes -----------------------------------------------------------------------------
    def _attr(self, inode: int, ino: _Ino) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = inode
        a.generation = 0
        a.entry_timeout = a.attr_timeout = TIMEOUT
        a.st_blksize = 128 * 1024
        if ino.kind in ("root", "snap"):
            a.st_mode = stat.S_IFDIR | 0o555
            a.st_nlink = 2 + len(self.snaps) if ino.kind == "root" else 1  # 1: not counted
            a.st_uid, a.st_gid = self.uid, self.gid
            ns = int((ino.snap.started if ino.snap else self.mounted_at) * 1e9)
            a.st_size = 0
        elif ino.kind == "latest":
            a.st_mode = stat.S_IFLNK | 0o777
            a.st_nlink = 1
            a.st_uid, a.st_gid = self.uid, self.gid
            a.st_size = len(self.latest or "")
            ns = int(self.snaps[os.fsencode(self.latest)].started * 1e9) if self.latest else 0
        else:
            n = ino.node
            assert n is not None and ino.snap is not None and ino.snap.adapter is not None
            a.st_mode = n.mode
            a.st_nlink = ino.snap.adapter.nlink(n)
            a.st_uid, a.st_gid = n.uid, n.gid
            a.st_size = n.size
            a.st_rdev = n.rdev
            ns = n.mtime_ns
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = ns
        if ino.kind == "node" and ino.node is not None and ino.node.ctime_ns:
            a.st_ctime_ns = ino.node.ctime_ns  # the source's, as the index recorded it
        a.st_blocks = (a.st_size + 511) // 512
        return a

    async def getattr(self, inode: int, ctx: Any = None) -> pyfuse3.EntryAttributes:
        return self._attr(inode, self._get(inode))

    async def lookup(self, parent_inode: int, name: bytes,
                     ctx: Any = None) -> pyfuse3.EntryAttributes:
        parent = self._get(parent_inode)
        if name == b".":
            return self._attr(parent_inode, parent)
        if parent.kind == "root":
            if name == b"..":
                return self._attr(parent_inode, parent)
            if name == b"latest" and self.latest_inode is not None:
                return self._attr(self.latest_inode, self._inodes[self.latest_inode])
            s = self.snaps.get(name)
            if s is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            return self._attr(s.inode, self._inodes[s.inode])
        if parent.kind not in ("snap", "node") or parent.snap is None:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        snap = parent.snap
        ad = await self._adapter(snap)
        if name == b"..":
            up = ad.parent(parent.node) if parent.node is not None else None
            if parent.kind == "snap":
                return self._attr(pyfuse3.ROOT_INODE, self._inodes[pyfuse3.ROOT_INODE])
            if up is None:
                return self._attr(snap.inode, self._inodes[snap.inode])
            n = self._node_inode(snap, up)
            return self._attr(n, self._inodes[n])
        if parent.node is not None and not parent.node.is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        child = await self._blocking(ad.child, parent.node, name)
        if child is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        n = self._node_inode(snap, child)
        return self._attr(n, self._inodes[n])

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        return  # inode numbers stay valid until the unmount (the same name, the same number)

    async def readlink(self, inode: int, ctx: Any = None) -> bytes:
        ino = self._get(inode)
        if ino.kind == "latest" and self.latest:
            return os.fsencode(self.latest)
        if ino.kind != "node" or ino.node is None or not stat.S_ISLNK(ino.node.mode):
            raise pyfuse3.FUSEError(errno.EINVAL)
        assert ino.snap is not None and ino.snap.adapter is not None
        return await self._blocking(ino.snap.adapter.readlink, ino.node)

    # -- directories ----------------------------------------------------------------------------
    async def opendir(self, inode: int, ctx: Any = None) -> int:
        ino = self._get(inode)
        entries: list[tuple[bytes, int]] = []
        if ino.kind == "root":
            entries = [(name, s.inode) for name, s in self.snaps.items()]
            if self.latest_inode is not None:
                entries.append((b"latest", self.latest_inode))
        elif ino.kind in ("snap", "node") and ino.snap is not None:
            if ino.node is not None and not ino.node.is_dir:
                raise pyfuse3.FUSEError(errno.ENOTDIR)
            ad = await self._adapter(ino.snap)
            kids = await self._blocking(ad.children, ino.node)
            entries = [(k.name, self._node_inode(ino.snap, k)) for k in kids]
        else:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        with self._mu:
            self._fh += 1
            fh = self._fh
            self._dirs[fh] = entries
        return fh

    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        entries = self._dirs.get(fh, [])
        for i in range(start_id, len(entries)):
            name, inode = entries[i]
            attr = self._attr(inode, self._inodes[inode])
            if not pyfuse3.readdir_reply(token, name, attr, i + 1):
                return

    async def releasedir(self, fh: int) -> None:
        self._dirs.pop(fh, None)

    # -- files ----------------------------------------------------------------------------------
    async def open(self, inode: int, flags: int, ctx: Any = None) -> pyfuse3.FileInfo:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
            raise _erofs()
        ino = self._get(inode)
        if ino.kind != "node" or ino.node is None or ino.snap is None or ino.snap.adapter is None:
            raise pyfuse3.FUSEError(errno.EISDIR if ino.kind in ("root", "snap") else errno.EINVAL)
        if not stat.S_ISREG(ino.node.mode):
            raise pyfuse3.FUSEError(errno.EINVAL)
        with self._mu:
            self._fh += 1
            fh = self._fh
            self._handles[fh] = _Handle(ino.snap.adapter, ino.node)
        return pyfuse3.FileInfo(fh=fh, keep_cache=True)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        h = self._handles.get(fh)
        if h is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        return await self._blocking(h.read, off, size)

    async def release(self, fh: int) -> None:
        h = self._handles.pop(fh, None)
        if h is not None:
            await _in_thread(h.close)

    async def _blocking(self, fn: Callable, *args: Any) -> Any:
        """``fn`` in a worker thread; a failure is one line for the operator and EIO."""
        try:
            return await _in_thread(fn, *args)
        except pyfuse3.FUSEError:
            raise
        except Exception as e:  # noqa: BLE001 - damage, a lost network: the reader gets EIO
            owner = getattr(getattr(fn, "__self__", None), "node", None)  # a handle's read
            what = next((a.describe() for a in (*args, owner) if hasattr(a, "describe")), "")
            self.report(f"{what}: {e}" if what else str(e))
            raise pyfuse3.FUSEError(errno.EIO) from None

    # Extended attributes (ACLs too: system.posix_acl_* as the archive holds them) come from
    # the index (odbackupd/snapshot/view.py: ``xattrs``), so ``ls -l``, which asks for some
    # of every file, fetches no volume. The snapshot directories and the root have none.
    async def _xattrs(self, inode: int) -> dict[bytes, bytes]:
        ino = self._get(inode)
        if ino.kind != "node" or ino.node is None or ino.snap is None:
            return {}
        ad = await self._adapter(ino.snap)
        return await self._blocking(ad.xattrs, ino.node)

    async def listxattr(self, inode: int, ctx: Any = None) -> list[bytes]:
        return list(await self._xattrs(inode))

    async def getxattr(self, inode: int, name: bytes, ctx: Any = None) -> bytes:
        value = (await self._xattrs(inode)).get(name)
        if value is None:
            raise pyfuse3.FUSEError(errno.ENODATA)
        return value

    # -- the file system ------------------------------------------------------------------------
    async def statfs(self, ctx: Any = None) -> pyfuse3.StatvfsData:
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = 4096
        s.f_blocks = s.f_bfree = s.f_bavail = 0
        s.f_files = len(self._inodes)
        s.f_ffree = s.f_favail = 0
        s.f_namemax = 255
        return s

    async def access(self, inode: int, mode: int, ctx: Any = None) -> bool:
        if mode & os.W_OK:
            raise _erofs()
        return True

    # everything that would change the snapshot: EROFS
    async def setattr(self, *a: Any) -> Any:
        raise _erofs()

    async def mknod(self, *a: Any) -> Any:
        raise _erofs()

    async def mkdir(self, *a: Any) -> Any:
        raise _erofs()

    async def unlink(self, *a: Any) -> Any:
        raise _erofs()

    async def rmdir(self, *a: Any) -> Any:
        raise _erofs()

    async def symlink(self, *a: Any) -> Any:
        raise _erofs()

    async def rename(self, *a: Any) -> Any:
        raise _erofs()

    async def link(self, *a: Any) -> Any:
        raise _erofs()

    async def write(self, *a: Any) -> Any:
        raise _erofs()

    async def create(self, *a: Any) -> Any:
        raise _erofs()

    async def setxattr(self, *a: Any) -> Any:
        raise _erofs()

    async def removexattr(self, *a: Any) -> Any:
        raise _erofs()

    def adapters(self) -> list[Adapter]:
        """The snapshots opened so far."""
        return [s.adapter for s in self.snaps.values() if s.adapter is not None]

    def close(self) -> None:
        for h in list(self._handles.values()):
            h.close()
        self._handles.clear()


def serve(fs: SnapshotFS, mountpoint: str, options: set[str], on_ready: Callable[[], None]) -> str:
    """Mount, call ``on_ready``, serve until unmounted (``fusermount3 -u``) or SIGINT/SIGTERM/
    SIGHUP (then unmount). Returns how it ended: "unmounted" or the signal's name."""
    import signal

    pyfuse3.init(fs, mountpoint, options)
    how = "unmounted"

    async def run() -> None:
        nonlocal how
        async with trio.open_nursery() as nursery:
            async def signals() -> None:
                nonlocal how
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as rx:
                    async for sig in rx:
                        how = signal.Signals(sig).name
                        nursery.cancel_scope.cancel()
                        return

            nursery.start_soon(signals)
            on_ready()
            await pyfuse3.main()
            nursery.cancel_scope.cancel()  # unmounted from outside: the signal task ends too

    try:
        trio.run(run)
    except BaseException:
        pyfuse3.close(unmount=True)
        fs.close()
        raise
    pyfuse3.close(unmount=how != "unmounted")
    fs.close()
    return how


FUSE_DEVICE = os.makedev(10, 229)  # the misc device the kernel's fuse module registers


def fuse_problem() -> str | None:
    """Why FUSE cannot work here, or None."""
    try:
        st = os.stat("/dev/fuse")
    except FileNotFoundError:
        return ("/dev/fuse does not exist: load the module (modprobe fuse), or give the container "
                "the device (e.g. --device /dev/fuse)")
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != FUSE_DEVICE:
        return ("/dev/fuse is not the FUSE device (character device 10,229): load the module "
                "(modprobe fuse)")
    try:
        fd = os.open("/dev/fuse", os.O_RDWR)
    except OSError as e:
        return (f"/dev/fuse cannot be opened ({os.strerror(e.errno or 0)}): run as root, or allow "
                "FUSE here")
    os.close(fd)
    return None
