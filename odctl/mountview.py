"""What ``odctl mount`` (odctl/mountfs.py) needs of a snapshot, on top of
odbackupd/snapshot/view.py: names as bytes, inode identities that hard links share, link
counts, and member data.

Hard links: two paths are links of one file when the index gives them the same inode
number under the same source root and the same attributes (size, times, mode, owner: a
hard link's are its file's), so a source walked across file systems
(``one_file_system = false``) cannot make two files one. A snapshot without an index
names the path a link's data is under (``Node.hardlink``).
"""
from __future__ import annotations

import os
import stat
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from odbackupd.snapshot.incbuild import source_roots
from odbackupd.snapshot.view import Node, SnapshotView

from .mountread import Decoders, MemberReader


@dataclass(frozen=True)
class MountNode:
    node: Node
    snapshot: str
    identity: tuple  # what makes an inode: ("p", path), or ("h", ...) shared by hard links
    # the snapshot's start: the mtime of directories only implied by a source's path
    started_ns: int = 0

    @property
    def name(self) -> bytes:
        return os.fsencode(self.node.name)

    @property
    def mode(self) -> int:
        return self.node.mode

    @property
    def uid(self) -> int:
        return self.node.uid

    @property
    def gid(self) -> int:
        return self.node.gid

    @property
    def size(self) -> int:
        return self.node.size

    @property
    def mtime_ns(self) -> int:
        if self.node.type == "d" and self.node.location is None and not self.node.mtime_ns:
            return self.started_ns  # e.g. "srv" above a source /srv/data: no entry of its own
        return self.node.mtime_ns

    @property
    def ctime_ns(self) -> int:
        return self.node.ctime_ns  # 0: not known (a snapshot without an index)

    @property
    def rdev(self) -> int:
        return self.node.rdev  # shown; never usable (the mount is nodev); 0 from an older index

    @property
    def is_dir(self) -> bool:
        return self.node.type == "d"

    def describe(self) -> str:
        return f"{self.snapshot}/{self.node.path}"


class Adapter:
    """One snapshot's view, as the file system asks for it (directories by node, None = the
    snapshot's top)."""

    def __init__(self, view: SnapshotView, decoders: Decoders,
                 report: Callable[[str], None] = lambda line: None) -> None:
        self.view = view
        self.snapshot = view.manifest.snapshot
        self.started_ns = int(view.manifest.started * 1e9)
        roots = enumerate(source_roots(view.manifest.sources))
        self.roots = sorted(roots, key=lambda r: -len(r[1]))
        self._subdirs: dict[str, int] = {}
        self.reader = MemberReader(view, decoders)
        self.report = report
        # Link counts need the whole tree (a file's other names may be anywhere in it): made
        # in the background, so entering a snapshot of millions of files shows its
        # directories at once; a file waits for them (about 6 us a file, 50,000 in 0.3 s).
        self._links: Counter = Counter()
        self._counted = threading.Event()
        threading.Thread(target=self._count_links, name=f"links-{self.snapshot}",
                         daemon=True).start()

    def _count_links(self) -> None:
        try:
            # two passes: inode numbers alone first (small), the full key only where they repeat
            seen: Counter = Counter(n.inode or n.hardlink or n.path
                                    for n in self.view.walk() if n.type == "f")
            links: Counter = Counter()
            for n in self.view.walk():
                if n.type == "f" and (n.hardlink is not None or seen[n.inode or n.path] > 1):
                    links[self._link_key(n)] += 1
            self._links = links
        except Exception as e:  # noqa: BLE001 - a damaged directory record: said; its files read on
            self.report(f"snapshot {self.snapshot}: hard links are not all known (each name shows "
                        f"as a file of its own): {e}")
        finally:
            self._counted.set()

    def _root_of(self, path: str) -> int:
        for i, root in self.roots:
            if root == "." or path == root or path.startswith(root + "/"):
                return i
        return -1

    def _link_key(self, n: Node) -> tuple:
        if n.hardlink is not None:
            return ("h", n.hardlink)
        if n.inode:
            return ("h", self._root_of(n.path), n.inode, n.size, n.mtime_ns, n.ctime_ns, n.mode,
                    n.uid, n.gid)
        return ("h", n.path)  # a streamed snapshot's file: its links name it

    def wrap(self, n: Node) -> MountNode:
        if n.type == "f":
            self._counted.wait()
            key = self._link_key(n)
            if self._links[key] > 1:
                return MountNode(n, self.snapshot, key, self.started_ns)
        return MountNode(n, self.snapshot, ("p", n.path), self.started_ns)

    def child(self, parent: MountNode | None, name: bytes) -> MountNode | None:
        base = parent.node.path if parent is not None else ""
        sname = os.fsdecode(name)
        if not sname or "/" in sname or sname in (".", ".."):
            return None
        n = self.view.lookup(f"{base}/{sname}" if base else sname)
        return self.wrap(n) if n is not None else None

    def children(self, node: MountNode | None) -> list[MountNode]:
        path = node.node.path if node is not None else ""
        return [self.wrap(n) for n in self.view.children(path)]

    def parent(self, node: MountNode | None) -> MountNode | None:
        """None: the snapshot's top."""
        if node is None or "/" not in node.node.path:
            return None
        n = self.view.lookup(node.node.path.rpartition("/")[0])
        return self.wrap(n) if n is not None else None

    def nlink(self, node: MountNode) -> int:
        n = node.node
        if n.type == "d":
            count = self._subdirs.get(n.path)
            if count is None:
                kids = self.view.children(n.path)
                count = self._subdirs[n.path] = sum(1 for k in kids if k.type == "d")
            return 2 + count
        if n.type == "f":
            return max(1, self._links[self._link_key(n)])
        return 1

    def readlink(self, node: MountNode) -> bytes:
        return os.fsencode(self.view.readlink(node.node))

    def xattrs(self, node: MountNode) -> dict[bytes, bytes]:
        """``node``'s extended attributes (blocking: may fetch an index, or for xattrs too
        large for the index, the volume holding its tar header)."""
        return {os.fsencode(k): v for k, v in self.view.xattrs(node.node).items()}

    def open_file(self, node: MountNode, offset: int = 0) -> BinaryIO:
        """``node``'s data from ``offset`` on."""
        if not stat.S_ISREG(node.mode):
            raise OSError(f"{node.describe()} is not a regular file")
        return self.reader.open(node.node, offset)

    def close(self) -> None:
        self.view.close()
