"""Browsing a snapshot without restoring it: the state AT a snapshot, from indexes only.

``open_view(dest, manifest, snapshots, identities)`` downloads the snapshot's index (the
``index.zst[.age]`` object, checked against the manifest) and nothing else: an
incremental's index already describes the whole state at that snapshot (every directory
with all its children, each non-directory naming the snapshot of the chain whose archive
holds its data, ``origin``). The indexes of the older snapshots of the chain are fetched
only when a member's data is read (they say where in their archive each entry is).

A snapshot made before indexes existed (manifest format 1) has no index: its volumes are
streamed once, the tar headers read into the same tree, and ``view.streamed`` is True so
the caller can say so.

Reading a member (``open_member``/``read_member``) fetches only the volume(s) holding it,
through a pluggable :class:`VolumeSource` (``Downloads`` by default; ``odctl mount`` puts an
on-disk cache under it): each volume is checked against the manifest (size and SHA-256)
before it is used, and its chain header (snapshot/chain.py) as it is decoded; decoding
starts at the volume's boundary (volumes are whole zstd frames) and skips to the member's
tar offset. The member found there must be the one the index names.

The index is not trusted more than the archive: a path with ``..``, ``/`` or NUL in a
name, a location outside its volume, an origin outside the chain are
:class:`IntegrityError` (exit 4), before anything is read or written.

Symlink targets: the index holds them (the optional 12th child field, incremental.py);
for an older index ``readlink`` reads the member's tar header (one volume). Device numbers
(``Node.rdev``) likewise, 0 for an older index (a device's getattr never fetches a volume).
Extended attributes (``xattrs(node)``): a directory's from its own record, a file's from
the location record of the snapshot holding its data (its index fetched once, as for
reading data); over the index's cap, from the member's tar header; none from an index
made before they were recorded. A source directory's own attributes come from its record's
``"s"`` (an older index: 0755 root, the snapshot's start time).

Why one module over 400 lines: the tree, the locations and member reading all rest on
the same checks of the index (paths, offsets, origins) and the same lazily parsed
records; split, each part would reach into the others' state.
"""

from __future__ import annotations

import bisect
import io
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from ..destinations.base import Destination, ObjectNotFound
from .framereader import tables as frame_tables
from .frames import FrameTable
from .incremental import (
    CTIME,
    GID,
    INO,
    LINK,
    MODE,
    MTIME,
    NAME,
    ORIGIN,
    RDEV,
    SIZE,
    TYPE,
    UID,
    open_tree,
    xattrs_of,
)
from .manifest import Manifest
from .restore_errors import IntegrityError, RestoreError
from .tarheader import parse_ns
from .tarread import open_tar, read_members

if TYPE_CHECKING:
    from .agevolume import AgeVolume

TYPES = "fdlcbp"
_S_IFMT = {
    "f": stat.S_IFREG,
    "d": stat.S_IFDIR,
    "l": stat.S_IFLNK,
    "c": stat.S_IFCHR,
    "b": stat.S_IFBLK,
    "p": stat.S_IFIFO,
}


@dataclass(frozen=True, slots=True)
class Location:
    snapshot: str  # whose archive holds the entry
    volume: int  # the volume's number (manifest "index", vol.NNNNNN)
    offset: int  # tar offset of the entry's header (its PAX header first)


@dataclass(frozen=True, slots=True)
class Node:
    name: str  # os.fsdecode'd: any byte survives as a surrogate escape
    path: str  # as archived, without a leading "/" ("etc/nginx/sites-available/shop"); "" the root
    type: str  # f d l c b p
    size: int
    mtime_ns: int
    mode: int  # st_mode (with the type bits)
    uid: int
    gid: int
    inode: int = 0  # as on the source (0: not known, a snapshot without an index)
    ctime_ns: int = 0
    origin: str = ""  # the snapshot whose archive holds the data ("" for a directory made up)
    location: Location | None = None  # None: a directory only implied by a source's path
    link: str | None = None  # a symlink's target when the index holds it (else see readlink)
    hardlink: str | None = None  # streamed views: the path this hard link's data is under
    rdev: int = 0  # a device's st_rdev (os.makedev); 0: not a device, or an index made before it


class VolumeSource(Protocol):
    """Where a view gets verified local copies of volumes (``odctl mount`` caches them)."""

    def get(self, m: Manifest, vol: dict) -> Path:
        """A local file holding volume ``vol`` of ``m``, its size and SHA-256 checked."""

    def release(self, m: Manifest, vol: dict, path: Path) -> None:
        """The reader is done with ``path`` (it may be deleted or kept)."""

    def index(self, m: Manifest, identities: Sequence[object] | None) -> Path:
        """``m``'s index as compressed plain text, checked against the manifest (and decrypted)."""


class Downloads:
    """Volumes downloaded into a scratch directory, verified, the last ``keep`` kept for
    reuse; ``counts`` what was downloaded (``volumes``, ``volume_bytes``, ``indexes``,
    ``index_bytes``)."""

    def __init__(self, dest: Destination, scratch: Path | None = None, keep: int = 2) -> None:
        self.dest, self.keep = dest, keep
        self.dir = Path(tempfile.mkdtemp(prefix="odbackupd-view-", dir=scratch))
        self._kept: OrderedDict[tuple[str, str], Path] = OrderedDict()
        self._indexes: dict[str, Path] = {}
        self._busy: dict[tuple[str, str], int] = {}  # readers holding a copy (not evicted)
        self._lock = threading.RLock()  # one download at a time; callers may be threads
        self.counts = {"volumes": 0, "volume_bytes": 0, "indexes": 0, "index_bytes": 0}
        self._ranged: set[tuple[str, str]] = set()  # volumes read by ranges (counted once)
        self._ages: dict[tuple[str, str], AgeVolume] = {}  # their age readers (frames.py)

    def get(self, m: Manifest, vol: dict) -> Path:
        with self._lock:
            return self._get(m, vol)

    def _get(self, m: Manifest, vol: dict) -> Path:
        from .restore import _hash_stream, check_volume

        key = (m.snapshot, vol["name"])
        if key in self._kept:
            self._kept.move_to_end(key)
            self._busy[key] = self._busy.get(key, 0) + 1
            return self._kept[key]
        path = self.dir / f"{m.snapshot}.{vol['name']}"
        try:
            with (
                self.dest.open_read(m.location, m.snapshot, vol["name"]) as src,
                open(path, "wb") as out,
            ):
                size, sha, _ = _hash_stream(src, out)
        except ObjectNotFound as e:
            raise IntegrityError(f"{m.snapshot}/{vol['name']} is missing ({e})") from e
        self.counts["volumes"] += 1
        self.counts["volume_bytes"] += size
        try:
            check_volume(vol, size, sha)
        except IntegrityError:
            path.unlink(missing_ok=True)
            raise
        self._kept[key] = path
        self._busy[key] = self._busy.get(key, 0) + 1
        self._evict()
        return path

    def _evict(self) -> None:
        """The oldest copies beyond ``keep`` that no reader holds."""
        for key in [k for k in self._kept if not self._busy.get(k)][
            : max(0, len(self._kept) - self.keep)
        ]:
            self._kept.pop(key).unlink(missing_ok=True)

    def frames(self, m: Manifest, vol: dict, table: FrameTable, first: int, last: int,
               identities: Sequence[object] | None) -> list[bytes]:
        """Frames ``first``..``last`` of ``vol`` in one ranged read, each checked against
        the index (framereader.FrameSource); ``counts`` adds ``ranges`` and the bytes."""
        import hashlib

        fs = table.frames[first : last + 1]
        start = fs[0].z_start
        length = fs[-1].z_start + fs[-1].z_len - start
        name = vol["name"]
        with self._lock:
            try:
                if table.age_prefix_sha256 is None:
                    data = self.dest.read_range(m.location, m.snapshot, name, start, length)
                    fetched = length
                else:
                    age = self._age_range(m, vol, table, identities)
                    before = age.fetched
                    data = age.read(start, length)
                    fetched = age.fetched - before
            except ObjectNotFound as e:
                raise IntegrityError(f"{m.snapshot}/{name} is missing ({e})") from e
            key = (m.snapshot, name)
            if key not in self._ranged:
                self._ranged.add(key)
                self.counts["volumes"] += 1
            self.counts["ranges"] = self.counts.get("ranges", 0) + 1
            self.counts["volume_bytes"] += fetched
        out: list[bytes] = []
        with memoryview(data) as mv:
            for f in fs:
                z = bytes(mv[f.z_start - start : f.z_start - start + f.z_len])
                if f.sha256 is not None and hashlib.sha256(z).digest() != f.sha256:
                    raise IntegrityError(
                        f"{m.snapshot}/{name}: the bytes at {f.z_start}-{f.z_start + f.z_len} "
                        "are not the frame the index names (the volume was changed or replaced)")
                out.append(z)
        return out

    def _age_range(self, m: Manifest, vol: dict, table: FrameTable,
                   identities: Sequence[object] | None) -> AgeVolume:
        """Random access to an encrypted volume's plaintext, its header checked against
        the one the index pins (one per volume, kept: it holds the file key)."""
        from .agevolume import AgeVolume

        key = (m.snapshot, vol["name"])
        r = self._ages.get(key)
        if r is None:
            r = self._ages[key] = AgeVolume(self.dest, m, vol, table, identities)
        return r

    def release(self, m: Manifest, vol: dict, path: Path) -> None:
        """Kept for reuse until pushed out by newer ones, or close()."""
        with self._lock:
            key = (m.snapshot, vol["name"])
            if self._busy.get(key):
                self._busy[key] -= 1
            self._evict()

    def index(self, m: Manifest, identities: Sequence[object] | None) -> Path:
        from .chainrestore import fetch_index

        with self._lock:
            if m.snapshot in self._indexes:
                return self._indexes[m.snapshot]
            p = fetch_index(self.dest, m, identities, self.dir, plain=f"{m.snapshot}.plain.zst")
            self._indexes[m.snapshot] = p
            self.counts["indexes"] += 1
            self.counts["index_bytes"] += int(m.index["size"]) if m.index else 0
            return p

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _name_ok(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name


def _bad_index(m: Manifest, what: str) -> IntegrityError:
    return IntegrityError(
        f"the index of snapshot {m.snapshot} {what}: refused (the index is damaged or was "
        "written by someone else)"
    )


def _mode(typ: str, mode: int) -> int:
    return stat.S_IFMT(mode) and mode or (_S_IFMT.get(typ, 0) | stat.S_IMODE(mode))


class SnapshotView:
    """The tree of one snapshot: ``lookup``, ``children``, ``walk``, and member data."""

    def __init__(
        self,
        manifest: Manifest,
        chain: Sequence[Manifest],
        source: VolumeSource,
        identities: Sequence[object] | None,
    ) -> None:
        self.manifest = manifest
        self.chain = list(chain)
        self.source = source
        self.identities = identities
        self.streamed = False
        self._by_id = {m.snapshot: m for m in self.chain}
        self._nodes: dict[str, Node] = {}
        self._kids: dict[str, list[str]] = {"": []}
        self._has_x: dict[str, bool] = {}  # per snapshot: its index records xattrs
        self._dir_x: dict[str, dict[str, bytes] | None] = {}  # a directory's own xattrs (if any)
        self._streamed_x: dict[str, dict[str, bytes]] = {}  # a streamed view's, from the headers
        self._nodes[""] = Node(
            "", "", "d", 0, int(manifest.started * 1e9), stat.S_IFDIR | 0o755, 0, 0
        )
        self._offsets: dict[str, list[int]] = {}  # per snapshot: every entry's tar offset, sorted
        self._files: dict[
            str, _Stored | dict[str, Location]
        ] = {}  # per snapshot: where its entries are
        self._starts: dict[str, list[int]] = {}  # per snapshot: its volumes' tar offsets
        self._frames: dict[str, dict[str, FrameTable] | None] = {}  # per snapshot (frames.py)
        # The index's directory records are parsed when a directory is first looked into (an
        # ls of one directory of a 100,000-file snapshot makes the nodes of that directory only)
        self._raw: dict[str, str] = {}  # directory path -> its tree record, not yet parsed
        self._dir_at: dict[str, int] = {}  # directory path -> tar offset of its header
        self._open: set[str] = set()  # directories whose children are in _nodes
        self._spans: dict[str, tuple[str, int, int]] = {}  # file path -> where its data is
        # lookups may come from several threads (odctl mount): what they fill in is guarded
        self._lock = threading.RLock()

    # -- building ---------------------------------------------------------------------------------
    def _add(self, node: Node) -> None:
        if node.path in self._nodes and node.path:
            if self._nodes[node.path].location is None:  # a made-up directory, now known
                self._nodes[node.path] = node
            return
        parent = node.path.rpartition("/")[0]
        self._ensure_dir(parent)
        self._nodes[node.path] = node
        self._kids.setdefault(parent, []).append(node.path)
        if node.type == "d":
            self._kids.setdefault(node.path, [])

    def _ensure_dir(self, path: str) -> None:
        if path in self._nodes:
            return
        parent = path.rpartition("/")[0]
        self._ensure_dir(parent)
        n = Node(
            path.rpartition("/")[2],
            path,
            "d",
            0,
            self._nodes[""].mtime_ns,
            stat.S_IFDIR | 0o755,
            0,
            0,
        )
        self._nodes[path] = n
        self._kids.setdefault(parent, []).append(path)
        self._kids.setdefault(path, [])

    def _load_index(self, plain: Path) -> None:
        """Only the keys and offsets of the directory records are read here (see _expand)."""
        m = self.manifest
        f, tree = open_tree(plain)
        try:
            roots = self._roots = _roots(m, tree.header)
            self._has_x[m.snapshot] = tree.header.get("xattrs") is True
            for raw in tree._f:
                line = raw.decode("ascii")  # json.dumps escapes everything else
                if line.startswith('{"section"'):
                    break
                key, o, is_file = _head(line)
                path = _path_of(m, roots, key)
                if is_file:  # a source that is a file
                    rec = json.loads(line)["r"]
                    self._add(
                        self._child(m, path.rpartition("/")[0], rec, name=path.rpartition("/")[2])
                    )
                    continue
                self._dir_at[path] = o
                self._raw[path] = line
                if len(key) == 1:  # a source directory: its attributes are in no parent's record
                    self._ensure_dir(path)
                    node = _replace(
                        self._nodes[path], location=self._loc(m, m.snapshot, o), origin=m.snapshot
                    )
                    own = json.loads(line).get("s")  # an index made before it: 0755 root
                    if isinstance(own, list) and len(own) >= 11 and own[TYPE] == "d":
                        c = self._child(m, path.rpartition("/")[0], own, path.rpartition("/")[2])
                        node = _replace(c, location=node.location, origin=m.snapshot)
                    self._nodes[path] = node
        except (ValueError, TypeError, KeyError, IndexError) as e:
            raise _bad_index(m, f"does not read ({e})") from None
        finally:
            f.close()

    def _expand(self, path: str) -> None:
        """Make the nodes of directory ``path``'s children from its record."""
        if path in self._open:
            return
        with self._lock:
            self._expand_locked(path)

    def _expand_locked(self, path: str) -> None:
        if path in self._open:
            return
        line = self._raw.get(path)
        if line is None:
            self._open.add(path)
            return  # made up (its children are known), or not a directory
        m = self.manifest
        try:
            d = json.loads(line)
            x = xattrs_of(d)
            if x != {}:
                self._dir_x[path] = x
            for c in d.get("c") or ():
                if (
                    not isinstance(c, list)
                    or len(c) < 11
                    or not isinstance(c[NAME], str)
                    or not _name_ok(c[NAME])
                ):
                    raise _bad_index(
                        m,
                        f"names an entry {c[NAME] if isinstance(c, list) and c else c!r} "
                        f"in {path or '/'} that cannot be a file name",
                    )
                n = self._child(m, path, c)
                if n.type == "d" and n.path in self._dir_at:
                    n = _replace(n, location=self._loc(m, m.snapshot, self._dir_at[n.path]))
                self._add(n)
        except (ValueError, TypeError, KeyError, IndexError) as e:
            raise _bad_index(m, f"does not read ({e})") from None
        del self._raw[path]
        self._open.add(path)  # only now: a thread that finds it open finds its children too

    def _child(self, m: Manifest, parent: str, c: list, name: str | None = None) -> Node:
        name = c[NAME] if name is None else name
        typ = c[TYPE]
        if typ not in TYPES:
            raise _bad_index(m, f"gives {name!r} the unknown type {typ!r}")
        origin = c[ORIGIN] or m.snapshot
        if typ != "d" and origin not in self._by_id:
            raise _bad_index(
                m, f"puts the data of {name!r} in snapshot {origin}, which is not in its chain"
            )
        return Node(
            name,
            f"{parent}/{name}" if parent else name,
            typ,
            int(c[SIZE]),
            int(c[MTIME]),
            _mode(typ, int(c[MODE])),
            int(c[UID]),
            int(c[GID]),
            int(c[INO]),
            int(c[CTIME]),
            origin=origin if typ != "d" else m.snapshot,
            link=c[LINK] if typ == "l" and len(c) > LINK and isinstance(c[LINK], str) else None,
            rdev=_rdev(m, name, c[RDEV]) if typ in "cb" and len(c) > RDEV else 0,
        )

    def _loc(self, m: Manifest, snapshot: str, offset: int, volume: int | None = None) -> Location:
        """A location in ``snapshot``'s archive, checked to lie inside its volume."""
        owner = self._by_id[snapshot]
        vols = owner.volumes
        if not vols:
            raise _bad_index(m, f"points into snapshot {snapshot}, which has no volumes")
        starts = self._starts.get(snapshot)
        if starts is None:
            starts = self._starts[snapshot] = [int(v.get("tar_start", 0)) for v in vols]
        pos = bisect.bisect_right(starts, offset) - 1
        end = int(vols[pos].get("tar_end", owner.tar_bytes)) if pos >= 0 else 0
        if (
            offset < 0
            or pos < 0
            or offset >= min(end, owner.tar_bytes)
            or (volume is not None and int(vols[pos].get("index", pos + 1)) != volume)
        ):
            raise _bad_index(
                m,
                f"points at archive offset {offset}"
                + (f" in volume {volume}" if volume is not None else "")
                + f" of snapshot {snapshot}, outside the volume that holds it",
            )
        return Location(snapshot, int(vols[pos].get("index", pos + 1)), offset)

    # -- the tree ---------------------------------------------------------------------------------
    def lookup(self, path: str) -> Node | None:
        p = norm_path(path)
        n = self._nodes.get(p)
        if n is not None or not p:
            return n
        parent = p.rpartition("/")[0]
        pn = self.lookup(parent)
        if pn is None or pn.type != "d":
            return None
        self._expand(parent)
        return self._nodes.get(p)

    def children(self, path: str = "") -> list[Node]:
        n = self.lookup(path)
        if n is None or n.type != "d":
            return []
        self._expand(n.path)
        return sorted(
            (self._nodes[k] for k in self._kids.get(n.path, ())), key=lambda x: os.fsencode(x.name)
        )

    def walk(self, path: str = "") -> Iterator[Node]:
        """``path`` and everything below it, depth first, names in byte order."""
        top = self.lookup(path)
        if top is None:
            return
        stack = [top]
        while stack:
            n = stack.pop()
            yield n
            if n.type == "d":
                stack.extend(reversed(self.children(n.path)))

    # -- where data is ----------------------------------------------------------------------------
    def location(self, node: Node) -> Location:
        """Where ``node``'s entry is (the origin snapshot's index is fetched the first time)."""
        if node.location is not None:
            return node.location
        if node.type == "d":
            raise RestoreError(
                f"{node.path or '/'} is implied by a source's path; it has no entry of its own"
            )
        loc = self._stored(node.origin).get(node.path)
        if loc is None:
            raise _bad_index(self._by_id[node.origin], f"does not say where {node.path} is")
        return loc

    def _stored(self, snapshot: str) -> _Stored | dict[str, Location]:
        """Where each entry stored in ``snapshot``'s archive is (its index read once; a
        location line is parsed only when its path is asked for)."""
        if snapshot in self._files:
            return self._files[snapshot]
        with self._lock:
            if snapshot in self._files:
                return self._files[snapshot]
            return self._read_stored(snapshot)

    def _read_stored(self, snapshot: str) -> _Stored:
        m = self._by_id[snapshot]
        if m.index is None:
            raise RestoreError(f"snapshot {snapshot} has no index to read")
        plain = self.source.index(m, self.identities)
        offsets: list[int] = []
        raw: dict[str, str] | _Lines = {}
        f, tree = open_tree(plain)
        try:
            roots = _roots(m, tree.header)
            self._has_x[snapshot] = tree.header.get("xattrs") is True
            self._frames[snapshot] = frame_tables(m, tree.header)
            lines = iter(tree._f)
            for line in lines:  # the tree records: only their offsets
                text = line.decode("ascii")
                if text.startswith('{"section"'):
                    break
                offsets.append(_head(text)[1])
            # the locations section: {"k":KEY,"o":N,"v":M}, keyed by KEY's text; read in one
            # piece and matched in C (20,000 lines: 4 ms instead of 25 in a Python loop)
            rest = tree._f.read().decode("ascii")
            found = _OFFSET.findall(rest)  # one per line when every line is as we write it
            if len(found) == rest.count("\n"):
                raw = _Lines(rest)  # a line is found when its path is asked for
                offsets.extend(map(int, found))
            else:  # some line written some other way
                for text in rest.splitlines():
                    d = json.loads(text)
                    raw[json.dumps(d["k"], separators=(",", ":"))] = text
                    offsets.append(int(d["o"]))
        except (ValueError, TypeError, KeyError, IndexError) as e:
            raise _bad_index(m, f"does not read ({e})") from None
        finally:
            f.close()
        offsets.sort()
        self._offsets[snapshot] = offsets
        stored = self._files[snapshot] = _Stored(self, m, roots, raw)
        return stored

    def location_at(self, snapshot: str, offset: int) -> Location:
        """The location of tar offset ``offset`` of ``snapshot``'s archive (checked)."""
        return self._loc(self.manifest, snapshot, offset)

    def entry_end(self, loc: Location) -> int | None:
        """Where the entry after ``loc`` starts in its archive (None: the archive's end)."""
        self._stored(loc.snapshot)
        offs = self._offsets[loc.snapshot]
        i = bisect.bisect_right(offs, loc.offset)
        return offs[i] if i < len(offs) else None

    # -- member data ------------------------------------------------------------------------------
    def stream(self, loc: Location, end: int | None = None) -> BinaryIO:
        """The archive of ``loc.snapshot`` from ``loc.offset`` up to ``end`` (then the two zero
        blocks that end a tar archive; None: to the archive's end), volumes fetched as read."""
        from .chainrestore import _Window
        from .framereader import FrameStream
        from .restore import PlainStream

        m = self._by_id[loc.snapshot]
        first = next(i for i, v in enumerate(m.volumes) if int(v.get("index", i + 1)) == loc.volume)
        limit = None if end is None else end - loc.offset
        tables = self._frames.get(loc.snapshot)
        if tables is not None and hasattr(self.source, "frames"):
            # only the frames that hold the stretch (framereader.py)
            raw = FrameStream(m, m.volumes[first:], tables, self.source, self.identities,
                              loc.offset, end)
            return io.BufferedReader(_Window(raw, 0, limit), 1 << 16)  # type: ignore[arg-type]

        def volumes() -> Iterator[tuple[dict, Path]]:
            for vol in m.volumes[first:]:
                path = self.source.get(m, vol)
                try:
                    yield vol, path
                finally:
                    self.source.release(m, vol, path)

        class Closing(_Window):  # closing the reader ends the volumes' stream (and releases them)
            def close(self) -> None:
                self.raw.close()
                super().close()

        stream = PlainStream(volumes(), self.identities, manifest=m, first=first)
        skip = loc.offset - int(m.volumes[first].get("tar_start", 0))
        return io.BufferedReader(Closing(stream, skip, limit), 1 << 16)  # type: ignore[arg-type]

    def _member(self, path: str, loc: Location) -> tuple[tarfile.TarFile, tarfile.TarInfo]:
        """The tar member at ``loc``, which must be ``path`` (else the index lies)."""
        tf = open_tar(self.stream(loc, self.entry_end(loc)))
        try:
            ti = next(read_members(tf), None)
        except BaseException:
            _close_tar(tf)
            raise
        if ti is None or ti.name.strip("/") != path:
            _close_tar(tf)
            raise _bad_index(
                self._by_id[loc.snapshot],
                f"puts {path} at archive offset {loc.offset}, where "
                f"{'the archive ends' if ti is None else 'member ' + repr(ti.name) + ' is'}",
            )
        return tf, ti

    def _data_member(self, node: Node) -> tuple[tarfile.TarFile, tarfile.TarInfo, Location]:
        """The tar member holding a regular file's data (hard links followed), its reader
        positioned at the data, and where the member's header is."""
        if node.type != "f":
            raise RestoreError(f"{node.path} is not a regular file")
        path = node.hardlink if node.hardlink is not None else node.path  # a streamed view knows it
        loc = self.location(node) if path == node.path else self._stored(node.origin).get(path)
        if loc is None:
            raise IntegrityError(f"{node.path} is a hard link to {path}, which the snapshot lacks")
        tf, ti = self._member(path, loc)
        if ti.islnk():  # the data is under the name the archive met first
            target = norm_path(ti.linkname)
            _close_tar(tf)
            loc = self._stored(loc.snapshot).get(target)
            if loc is None:
                raise IntegrityError(
                    f"{node.path} is a hard link to {target}, which is not in the same archive"
                )
            tf, ti = self._member(target, loc)
        if not ti.isreg():
            _close_tar(tf)
            raise IntegrityError(
                f"{node.path}: the archive holds a {ti.type!r} member where the index has a file"
            )
        with self._lock:
            self._spans[node.path] = (
                loc.snapshot,
                loc.offset + ti.offset_data - ti.offset,
                ti.size,
            )
        return tf, ti, loc

    def open_member(self, node: Node) -> BinaryIO:
        """A regular file's data, read from the volume(s) holding it. Close it when done."""
        tf, ti, _ = self._data_member(node)
        src = tf.extractfile(ti)
        assert src is not None
        return _Member(src, tf, ti.size)

    def member_span(self, node: Node) -> tuple[str, int, int]:
        """(snapshot, tar offset of the data, size) of a regular file (its header read once)."""
        span = self._spans.get(node.path)
        if span is None:
            tf, _, _ = self._data_member(node)
            _close_tar(tf)
            span = self._spans[node.path]
        return span

    def read_member(self, node: Node, offset: int, size: int) -> bytes:
        """``size`` bytes of a regular file from ``offset``: decoding starts at the volume
        holding that byte (not at the file's start), so a read deep into a large file costs
        one volume."""
        snapshot, data, total = self.member_span(node)
        n = max(0, min(size, total - offset))
        if n == 0:
            return b""
        start = data + offset
        with self.stream(self.location_at(snapshot, start), start + n) as r:
            out = r.read(n)
        if len(out) != n:
            raise IntegrityError(f"{node.path}: the archive ends inside its data")
        return out

    def readlink(self, node: Node) -> str:
        """A symlink's target: from the index, else from its tar header (one volume)."""
        if node.type != "l":
            raise RestoreError(f"{node.path} is not a symbolic link")
        if node.link is not None:
            return node.link
        tf, ti = self._member(node.path, self.location(node))
        _close_tar(tf)
        if not ti.issym():
            raise IntegrityError(
                f"{node.path}: the archive holds a {ti.type!r} member where the index has a symlink"
            )
        return ti.linkname

    def xattrs(self, node: Node) -> dict[str, bytes]:
        """``node``'s extended attributes as its archive holds them (names as ``os.fsdecode``
        gives them). From the index; an entry whose xattrs were too large for it (``xl``)
        reads them from its tar header (one volume). An index made before xattrs were recorded
        (no ``"xattrs"`` in its header) gives none: odctl restore still restores them."""
        if self.streamed:
            return self._streamed_x.get(node.path, {})
        if node.location is None and node.type == "d" and node.path not in self._dir_at:
            return {}  # only implied by a source's path: no entry of its own
        snapshot = self.manifest.snapshot if node.type == "d" else node.origin
        if node.type == "d":
            self._expand(node.path)
            x = self._dir_x.get(node.path, {})
        else:
            x = self._stored(snapshot).xattrs(node.path)  # type: ignore[union-attr]
        if not self._has_x.get(snapshot):
            return {}
        if x is not None:
            return x
        tf, ti = self._member(node.path, self.location(node))
        _close_tar(tf)
        return _header_xattrs(ti)

    def close(self) -> None:
        close = getattr(self.source, "close", None)
        if close is not None and getattr(self, "_owns_source", False):
            close()

    def __enter__(self) -> SnapshotView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Stored:
    """The locations section of one snapshot's index, looked up by path."""

    def __init__(
        self, view: SnapshotView, m: Manifest, roots: list[str], raw: dict[str, str] | _Lines
    ) -> None:
        self.view, self.m, self.roots, self.raw = view, m, roots, raw

    def get(self, path: str) -> Location | None:
        line = self._line(path)
        if line is None:
            return None
        try:
            d = json.loads(line)
            o, v = d["o"], d["v"]
            if not isinstance(o, int) or not isinstance(v, int):
                raise ValueError(f"location {o!r} in volume {v!r}")
        except (ValueError, TypeError, KeyError) as e:
            raise _bad_index(self.m, f"does not read ({e})") from None
        return self.view._loc(self.view.manifest, self.m.snapshot, o, v)

    def xattrs(self, path: str) -> dict[str, bytes] | None:
        """What the location record of ``path`` says of its xattrs (see ``xattrs_of``)."""
        line = self._line(path)
        if line is None or '"x' not in line:
            return {}
        try:
            return xattrs_of(json.loads(line))
        except ValueError as e:
            raise _bad_index(self.m, f"does not read ({e})") from None

    def _line(self, path: str) -> str | None:
        for i, root in enumerate(self.roots):
            if root == ".":
                comps = path.split("/") if path else []
            elif path == root:
                comps = []
            elif path.startswith(root + "/"):
                comps = path[len(root) + 1 :].split("/")
            else:
                continue
            line = self.raw.get(json.dumps([i, *comps], separators=(",", ":")))
            if line is not None:
                return line
        return None


class _Member(io.RawIOBase):
    def __init__(self, src: BinaryIO, tf: tarfile.TarFile, size: int) -> None:
        self._src, self._tf, self.size = src, tf, size

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # noqa: ANN001
        data = self._src.read(len(b))
        n = len(data)
        b[:n] = data
        return n

    def close(self) -> None:
        if not self.closed:
            _close_tar(self._tf)
        super().close()


def _header_xattrs(ti: tarfile.TarInfo) -> dict[str, bytes]:
    """The ``SCHILY.xattr.*`` records of a tar header (values as the bytes written)."""
    return {
        k[len("SCHILY.xattr.") :]: v.encode("utf-8", "surrogateescape")
        for k, v in sorted(ti.pax_headers.items())
        if k.startswith("SCHILY.xattr.")
    }


def _close_tar(tf: tarfile.TarFile) -> None:
    """The tar reader and the volumes' stream under it (which releases the volumes)."""
    tf.close()
    if tf.fileobj is not None:
        tf.fileobj.close()


_DECODER = json.JSONDecoder()
# the offset of a location line as the builder writes it, the key first: ``],"o":`` cannot
# stand inside a JSON string (its quote would be escaped), so it is found once per line
_OFFSET = re.compile(r'\],"o":(\d+),')


class _Lines:
    """The location lines of an index by their key's text, found in the section's text
    when asked for (20,000 lines: nothing parsed up front, 4 ms saved for one lookup and
    20 for ls of a 20,000-file index); after ``EAGER`` lookups, all of them at once."""

    EAGER = 64

    def __init__(self, text: str) -> None:
        self._text = text
        self._asked = 0
        self._all: dict[str, str] | None = None

    def get(self, key: str) -> str | None:
        if self._all is None:
            self._asked += 1
            if self._asked <= self.EAGER:
                text, needle = self._text, '{"k":' + key + ',"o":'
                i = text.find(needle)
                while i > 0 and text[i - 1] != "\n":
                    i = text.find(needle, i + 1)
                if i < 0:
                    return None
                end = text.find("\n", i)
                return text[i : end if end >= 0 else len(text)]
            self._all = {line[5 : line.find('],"o":') + 1]: line
                         for line in self._text.splitlines()}
        return self._all.get(key)


def _head(line: str) -> tuple[list, int, bool]:
    """The key and tar offset of a tree record, and whether it is a file source's ("r"),
    without parsing its children (the builder writes "k", then "o", first)."""
    key = o = None
    is_file = False
    if line.startswith('{"k":['):
        try:
            key, i = _DECODER.raw_decode(line, 5)
            if line.startswith(',"o":', i):
                o, j = _DECODER.raw_decode(line, i + 5)
                is_file = line.startswith(',"r":', j)
        except ValueError:
            key = None  # written some other way: parsed whole below
    if key is None or o is None:
        d = json.loads(line)
        key, o, is_file = d["k"], d["o"], "r" in d
    if not isinstance(key, list) or not isinstance(o, int) or isinstance(o, bool):
        raise ValueError(f"a tree record with key {key!r} at offset {o!r}")
    return key, o, is_file


def _rdev(m: Manifest, name: str, v: object) -> int:
    if (
        not isinstance(v, list)
        or len(v) != 2
        or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 1 << 32 for x in v)
    ):
        raise _bad_index(m, f"gives the device {name!r} the device numbers {v!r}")
    return os.makedev(v[0], v[1])


def _skip(f: BinaryIO, n: int) -> None:
    while n > 0:
        b = f.read(min(n, 1 << 20))
        if not b:
            return
        n -= len(b)


def _replace(n: Node, **kw: object) -> Node:
    import dataclasses

    return dataclasses.replace(n, **kw)  # type: ignore[arg-type]


def norm_path(path: str) -> str:
    """An archived path as given by a user ("/etc/ssh/", "etc//ssh") in the view's form."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise RestoreError(
            f"{path}: '..' names nothing in a snapshot; give the path as archived, e.g. etc/ssh"
        )
    return "/".join(parts)


def _roots(m: Manifest, header: dict) -> list[str]:
    roots = header.get("roots")
    if not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
        raise _bad_index(m, "has no list of source roots")
    for r in roots:
        if r != "." and not all(_name_ok(p) for p in r.split("/")):
            raise _bad_index(m, f"names the source root {r!r}, which is not a relative path")
    return roots


def _path_of(m: Manifest, roots: list[str], key: tuple) -> str:
    if not key or not isinstance(key[0], int) or not 0 <= key[0] < len(roots):
        raise _bad_index(
            m, f"holds an entry of source {key[0] if key else '?'}, which it does not list"
        )
    parts = [os.fsdecode(c) for c in key[1:]]
    if not all(_name_ok(p) for p in parts):
        raise _bad_index(
            m, f"names the path {'/'.join(parts)!r}, with '..', '/' or an empty name in it"
        )
    root = roots[key[0]]
    return "/".join(([] if root == "." else [root]) + parts)


# -- snapshots without an index -------------------------------------------------------------------
def _load_streamed(view: SnapshotView, dest: Destination, scratch: Path | None) -> None:
    """A format-1 snapshot: its volumes streamed once, the tree taken from the tar headers."""
    from .restore import PlainStream, VolumeFetcher

    m = view.manifest
    starts = [int(v.get("tar_start", 0)) for v in m.volumes]
    fetched = VolumeFetcher(dest, m, scratch)
    counts = getattr(view.source, "counts", None)

    def counted() -> Iterator[tuple[dict, Path]]:
        for vol, path in fetched:
            if counts is not None:
                counts["volumes"] += 1
                counts["volume_bytes"] += int(vol["size"])
            yield vol, path

    stream = PlainStream(counted(), view.identities, manifest=m)
    offsets: list[int] = []
    try:
        with open_tar(io.BufferedReader(stream, 1 << 20)) as tf:  # type: ignore[arg-type]
            for ti in read_members(tf):
                path = norm_path(ti.name) if ".." not in ti.name.split("/") else None
                if not path:
                    continue  # "." (a source "/"), or a name the restore would refuse too
                pos = max(0, bisect.bisect_right(starts, ti.offset) - 1)
                loc = Location(m.snapshot, int(m.volumes[pos].get("index", pos + 1)), ti.offset)
                offsets.append(ti.offset)
                raw = ti.pax_headers.get("mtime")
                mtime = parse_ns(raw) if raw else int(ti.mtime) * 1_000_000_000
                typ, size, hard = "f", ti.size, None
                if ti.isdir():
                    typ, size = "d", 0
                elif ti.issym():
                    typ, size = "l", len(os.fsencode(ti.linkname))
                elif ti.islnk():
                    hard = norm_path(ti.linkname)
                    t = view.lookup(hard)
                    size = t.size if t is not None else 0
                elif ti.ischr() or ti.isblk():
                    typ, size = "c" if ti.ischr() else "b", 0
                elif ti.isfifo():
                    typ, size = "p", 0
                x = _header_xattrs(ti)
                if x:
                    view._streamed_x[path] = x
                view._add(
                    Node(
                        path.rpartition("/")[2],
                        path,
                        typ,
                        size,
                        mtime,
                        _mode(typ, ti.mode),
                        ti.uid,
                        ti.gid,
                        origin=m.snapshot,
                        location=loc,
                        link=ti.linkname if typ == "l" else None,
                        hardlink=hard,
                        rdev=os.makedev(ti.devmajor, ti.devminor) if typ in "cb" else 0,
                    )
                )
    finally:
        stream.close()
    view._offsets[m.snapshot] = offsets
    view._files[m.snapshot] = {
        n.path: n.location for n in view._nodes.values() if n.location is not None
    }
    view.streamed = True


# -- the entry point ------------------------------------------------------------------------------
def open_view(
    dest: Destination,
    manifest: Manifest,
    snapshots: Sequence[Manifest] = (),
    *,
    identities: Sequence[object] | None = None,
    source: VolumeSource | None = None,
    scratch: Path | None = None,
) -> SnapshotView:
    """The state at ``manifest`` (an incremental: its chain, resolved from ``snapshots``).

    Downloads the snapshot's index only (a format-1 snapshot: its volumes, once; then
    ``view.streamed``). ``source``: where volumes come from (default: ``Downloads``, closed
    with the view). Raises BrokenChain, RestoreError (encrypted without ``identities``,
    WrongIdentity), IntegrityError (a damaged or hostile index) and DestinationError."""
    from .incchain import chain_of
    from .restore import check_identities

    chain = chain_of(manifest, snapshots) if manifest.kind == "incremental" else [manifest]
    for m in chain:
        if m.encrypted and not identities:
            raise RestoreError(
                f"snapshot {m.snapshot} is encrypted (its index too): give the age identity "
                "file with --identity"
            )
        check_identities(m, identities)
    owns = source is None
    src: VolumeSource = source if source is not None else Downloads(dest, scratch)
    view = SnapshotView(manifest, chain, src, identities)
    view._owns_source = owns  # type: ignore[attr-defined]
    try:
        if manifest.index is None:
            _load_streamed(view, dest, scratch)
        else:
            view._load_index(src.index(manifest, identities))
    except BaseException:
        view.close()
        raise
    return view


__all__ = [
    "Downloads",
    "Location",
    "Node",
    "SnapshotView",
    "VolumeSource",
    "norm_path",
    "open_view",
]
