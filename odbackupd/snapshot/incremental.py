"""Incremental snapshots: the per-snapshot index and the change decision during the walk.

Design
======
A series is a sequence of *chains*: a full snapshot, then incrementals, each based on the
snapshot before it (``manifest.base``). Every snapshot is still one tar stream cut into
volumes, so a chain restores with stock tools by concatenating the chain's streams into one
``tar -x -G -i`` (``../shared/INCREMENTAL-NOTES.md``). What makes an incremental:

- **Every directory** of the sources is stored, with a ``GNU.dumpdir`` PAX record listing its
  children (``D`` a directory, ``Y`` stored in this archive, ``N`` not stored: unchanged),
  sorted by bytes. GNU tar's ``-G`` deletes whatever a restored directory holds that the list
  does not name: that is how deletions and renames reach a restore. Everything is keyed by
  **path**: a renamed file is stored again under its new name; inode numbers are never used
  to infer renames (GNU tar's own ``R``/``T`` codes failed three ways), only as part of
  "the same file".
- **Only new or changed non-directories** are stored. A child is unchanged when its previous
  record has the same type, size, ``mtime_ns``, ``ctime_ns`` (unless ``ignore_ctime``), inode
  (unless ``ignore_inode``; never the device number), mode and owner, and was not *racy*:
  a file whose mtime or ctime was within :data:`RACY_NS` of the moment it was listed may
  change again within the timestamp granularity unnoticed, so the next run reads it again.
  tar has no metadata-only entry: a chmod stores the data again.

The decision for a directory's children is made when the directory is reached, before its
header is written (the dumpdir comes first in the archive): the walk lists and lstats a
directory's children before yielding it (``Entry.children``), and the previous index holds,
per directory, one record with all its children. So the comparison is a **streaming merge**
of two sequences in walk order — the walk's directories and the previous index's directory
records — holding only the records of the directories on the current path (one directory's
children each), never a dict of every path.

The index
---------
One object per snapshot, ``index.zst`` (``index.zst.age`` when the job is encrypted: it
holds file names), beside the volumes, listed in the manifest with its size and SHA-256.
Plain text before compression, one JSON document per line, in this order:

1. a header ``{"format": "odbackupd-index", "version": 1, "snapshot", "base", "roots"}``
   (``roots``: each source's name in the archive, to map a member to its source), and
   ``"frames"``: ``{volume number: frame table}``, where each volume's independent zstd
   frames are (:mod:`.frames`; absent for volumes built as one frame);
2. *tree* records in walk order, one per directory and one per non-directory source:
   ``{"k": key, "o": tar offset of the entry's header, "c": [child, ...]}`` where ``key`` is
   the walk key (source index, then path components; names are ``os.fsdecode`` strings, so
   any byte survives JSON as an escaped surrogate) and each child is
   ``[name, type, size, mtime_ns, ctime_ns, inode, mode, uid, gid, racy, origin]``
   (type ``f`` file, ``d`` directory, ``l`` symlink, ``c``/``b`` device, ``p`` fifo;
   ``origin``: ``""`` = stored in this snapshot, else the id of the snapshot of the chain
   whose archive holds that data). A non-directory source has ``"r": child`` instead of ``c``.
   A symlink's child has a 12th field, its target (``os.fsdecode``d), read when its
   directory was listed, so ``odctl ls -l`` and ``odctl mount`` show it without fetching a
   volume; readers accept 11 fields (an index made before it, or a link that vanished
   before it could be read) and then take the target from the member's tar header
   (:mod:`.view`). A device's (``c``/``b``) 12th field is ``[major, minor]`` of its
   ``st_rdev``; readers take 11 fields (an index made before it) as 0,0.
   A directory's record has ``"x"`` when the directory has xattrs (below). A source
   directory's record has ``"s": child`` (with name ``""``): its own mode, owner and
   times, which no parent's record holds; without it (an index made before it) readers
   show it as 0755 root.
3. ``{"section": "locations"}``, then one line per entry stored in this snapshot:
   ``{"k": key, "o": tar offset, "v": volume index}`` — where its data is — plus ``"x"``
   when the entry has xattrs.

Extended attributes: exactly the ``SCHILY.xattr.*`` records the tar stream wrote in the
entry's header (user.*, security.*, trusted.*, system.posix_acl_*: what ``listxattr``
gives), handed to the plan by the stream (``directory``/``stored``), so recording them
costs no system call. ``"x": {name: base64 value}`` (names ``os.fsdecode``d, values raw
bytes); an entry whose names and values add up to more than :data:`XATTR_CAP` (64 KiB) has
``"xl": total bytes`` instead, and readers take them from its tar header (one volume).
They sit in the directory's own record and in the location records, not in the child
records: the children are listed before their headers (and xattrs) are read, and an
unchanged file's xattrs are in the location record of the snapshot that holds its data
(``origin``), as its data is. The header's ``"xattrs": true`` says the index records them
(an entry without ``"x"`` has none); an index without it records none, and readers show
none (``odctl restore`` restores them from the archive).

All of these are optional fields of format version 1: an older reader ignores them, this
one reads an index without them.

Why one module over 400 lines: this note is a fifth of it; the rest is the format's one
writer (``IndexPlan``) with the field helpers it shares with the readers, one contract.

While a snapshot is built the tree and location records go to two scratch files in the
spool (each record carries its tar offset, so a resumed run keeps exactly the records of
the entries before its checkpoint; both files are fsync'ed with every volume). At the end
they become the index object; its compressed plain text is also cached under
``STATE_DIR/index/`` (0600) for the next run's comparison: the server may hold only the
public key, so it cannot read the stored copy back. A missing or mismatching cache makes
the next run a full, and the run says why.
"""
from __future__ import annotations

import base64
import binascii
import functools
import io
import json
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from .walk import Entry, Key, key_from_json, key_to_json

INDEX_FORMAT = "odbackupd-index"
INDEX_VERSION = 1
TREE_SCRATCH = "index-tree.jsonl"
LOC_SCRATCH = "index-loc.jsonl"
PLAIN_NAME = "index.plain.zst"
RACY_NS = 1_000_000_000  # "within a second of their read"

# child fields
NAME, TYPE, SIZE, MTIME, CTIME, INO, MODE, UID, GID, RACY, ORIGIN = range(11)
LINK = 11  # optional: a symlink's target
RDEV = 11  # optional: a device's [major, minor]


def _with_link(child: list, path: bytes) -> list:
    """A symlink's child record with its target appended (left as it is when unreadable)."""
    try:
        child.append(os.fsdecode(os.readlink(path)))
    except OSError:
        pass
    return child


def _with_rdev(child: list, st: os.stat_result) -> list:
    """A device's child record with its [major, minor] appended."""
    child.append([os.major(st.st_rdev), os.minor(st.st_rdev)])
    return child


def _extra(child: list, st: os.stat_result, path: bytes) -> list:
    """The type's optional 12th field: a symlink's target, a device's numbers."""
    typ = child[TYPE]
    if typ == "l":
        return _with_link(child, path)
    if typ in "cb":
        return _with_rdev(child, st)
    return child


XATTR_CAP = 64 << 10  # an entry's xattrs (names + values) recorded in the index up to this
_PAX_XATTR = b"SCHILY.xattr."


def xattr_fields(records: Sequence[tuple[bytes, bytes]]) -> dict:
    """The index fields for an entry's xattrs (its ``SCHILY.xattr.*`` PAX records, as the
    tar stream wrote them): ``{}`` for none, ``{"x": {name: base64 value}}``, or ``{"xl":
    total bytes}`` when they are over :data:`XATTR_CAP` (then read from the tar header)."""
    pairs = [(n[len(_PAX_XATTR):], v) for n, v in records if n.startswith(_PAX_XATTR)]
    if not pairs:
        return {}
    total = sum(len(n) + len(v) for n, v in pairs)
    if total > XATTR_CAP:
        return {"xl": total}
    return {"x": {os.fsdecode(n): base64.b64encode(v).decode() for n, v in pairs}}


def _xattr_json(records: Sequence[tuple[bytes, bytes]]) -> bytes:
    """``xattr_fields`` as JSON members (``"x":{...}``; b"" for none). Small sets are cached
    (at most ~1 MiB): on a system that labels every file (SELinux) a few repeat throughout."""
    if sum(len(v) for _, v in records) <= 512:
        return _xattr_json_small(tuple(records))
    return _ENCODE(xattr_fields(records))[1:-1].encode()


@functools.lru_cache(maxsize=1024)
def _xattr_json_small(records: tuple[tuple[bytes, bytes], ...]) -> bytes:
    return _ENCODE(xattr_fields(records))[1:-1].encode()


def xattrs_of(record: dict) -> dict[str, bytes] | None:
    """An index record's xattrs ({} for none); None: too large for the index (``xl``).
    Raises ValueError for a field that is not what :func:`xattr_fields` writes."""
    if "xl" in record:
        return None
    x = record.get("x")
    if x is None:
        return {}
    if not isinstance(x, dict) or not all(isinstance(k, str) and k and isinstance(v, str)
                                          for k, v in x.items()):
        raise ValueError(f"xattrs {x!r}")
    try:
        return {k: base64.b64decode(v, validate=True) for k, v in x.items()}
    except binascii.Error as e:
        raise ValueError(f"an xattr value that is not base64 ({e})") from None


def index_name(encrypted: bool) -> str:
    return "index.zst" + (".age" if encrypted else "")


def file_type(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "f"
    if stat.S_ISDIR(mode):
        return "d"
    if stat.S_ISLNK(mode):
        return "l"
    if stat.S_ISCHR(mode):
        return "c"
    if stat.S_ISBLK(mode):
        return "b"
    if stat.S_ISFIFO(mode):
        return "p"
    return "s"  # a socket: tar cannot archive it; never listed


# json.dumps(...) makes an encoder per call
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode
_ENCODE_STR = json.encoder.encode_basestring_ascii  # how _ENCODE writes a string (ensure_ascii)


def _dumps(d: dict) -> bytes:
    return _ENCODE(d).encode() + b"\n"


@dataclass(frozen=True)
class Compare:
    ignore_inode: bool = False
    ignore_ctime: bool = False

    def unchanged(self, prev: list, st: os.stat_result, typ: str) -> bool:
        return (
            prev[TYPE] == typ and not prev[RACY]
            and prev[SIZE] == (st.st_size if typ in "fl" else 0)
            and prev[MTIME] == st.st_mtime_ns
            and (self.ignore_ctime or prev[CTIME] == st.st_ctime_ns)
            and (self.ignore_inode or prev[INO] == st.st_ino)
            and prev[MODE] == st.st_mode and prev[UID] == st.st_uid and prev[GID] == st.st_gid
        )


class TreeReader:
    """The tree records of an index (compressed plain text), one at a time, in walk order."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = io.BufferedReader(
            zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True), 1 << 20)
        head = json.loads(self._f.readline() or b"{}")
        if head.get("format") != INDEX_FORMAT or int(head.get("version", 0)) > INDEX_VERSION:
            raise ValueError("not an odbackupd index (or one newer than this odbackupd)")
        self.header = head
        self._peek: tuple[Key, dict] | None = None
        self._done = False

    def _next(self) -> tuple[Key, dict] | None:
        if self._peek is not None:
            r, self._peek = self._peek, None
            return r
        if self._done:
            return None
        line = self._f.readline()
        if not line:
            self._done = True
            return None
        d = json.loads(line)
        if "section" in d:
            self._done = True
            return None
        return key_from_json(d["k"]), d

    def __iter__(self) -> Iterator[tuple[Key, dict]]:
        while (r := self._next()) is not None:
            yield r

    def seek(self, key: Key) -> tuple[dict | None, list[dict]]:
        """The record of ``key`` (or None) and the records skipped before it."""
        skipped = []
        while (r := self._next()) is not None:
            if r[0] < key:
                skipped.append(r[1])
                continue
            if r[0] == key:
                return r[1], skipped
            self._peek = r
            break
        return None, skipped


def open_tree(path: Path) -> tuple[BinaryIO, TreeReader]:
    f = open(path, "rb")
    try:
        return f, TreeReader(f)
    except BaseException:
        f.close()
        raise


def _kept_size(path: Path, keep, each=None) -> int:  # noqa: ANN001
    """Bytes of a scratch file up to the first record ``keep`` refuses (or a torn one);
    ``each(record)`` sees every kept record, one at a time."""
    size = 0
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            try:
                d = json.loads(line)
            except ValueError:
                break
            if not keep(d):
                break
            if each is not None:
                each(d)
            size += len(line)
    return size


class IndexPlan:
    """The TarStream's hook: decides per entry, writes the scratch index records.

    ``prev``: the previous snapshot's index (cached copy) for an incremental, None for a
    full (everything is new). ``counts``: the TarStats the checkpoints carry.
    """

    def __init__(self, spool: Path, snapshot: str, prev: Path | None, prev_snapshot: str | None,
                 compare: Compare, clock_ns, stats, resume=None) -> None:  # noqa: ANN001
        self.spool = spool
        self.snapshot = snapshot
        self.prev_snapshot = prev_snapshot or ""
        self.compare = compare
        self.clock_ns = clock_ns
        self.stats = stats
        self._prev_f: BinaryIO | None = None
        self.prev: TreeReader | None = None
        if prev is not None:
            self._prev_f, self.prev = open_tree(prev)
        # the directories on the current path: (key, {child name: stored}) each
        self._stack: list[tuple[Key, dict[bytes, bool]]] = []
        tree, loc = spool / TREE_SCRATCH, spool / LOC_SCRATCH
        if resume is None:
            tree.unlink(missing_ok=True)
            loc.unlink(missing_ok=True)
        else:
            cur = key_to_json(resume.cur_key) if resume.cur_key is not None else None

            def keep(d: dict) -> bool:
                return d["o"] < resume.offset or d["k"] == cur

            last: list[Key] = []

            def again(d: dict) -> None:  # the directories on the path of the resume point
                k = key_from_json(d["k"])
                self._push(k, d.get("c", []))
                last[:] = [k]

            _truncate(tree, _kept_size(tree, keep, again))
            _truncate(loc, _kept_size(loc, keep))
            if self.prev is not None and last:
                self.prev.seek(last[0])  # already compared: its counts are in the checkpoint
        self._tree = open(tree, "ab")
        self._loc = open(loc, "ab")
        self._loc_parent: Key | None = None  # stored(): the directory whose prefix is encoded
        self._loc_prefix = b""

    def _push(self, key: Key, children: list, decisions: dict[bytes, bool] | None = None) -> None:
        while self._stack and self._stack[-1][0] != key[: len(self._stack[-1][0])]:
            self._stack.pop()
        if decisions is None:
            decisions = {os.fsencode(c[NAME]): c[ORIGIN] == "" and c[TYPE] != "d" for c in children}
        self._stack.append((key, decisions))

    def _count_deleted(self, records: list[dict]) -> None:
        for r in records:
            if "r" in r:
                self.stats.deleted += 1
            else:
                self.stats.deleted += sum(1 for c in r["c"] if c[TYPE] != "d")

    def directory(self, entry: Entry, offset: int,
                  xattrs: Sequence[tuple[bytes, bytes]] = ()) -> list[tuple[bytes, bytes]]:
        """Called just before a directory's header (``xattrs``: its SCHILY.xattr records):
        its tree record and dumpdir record."""
        prev_children: dict[str, list] = {}
        if self.prev is not None:
            rec, skipped = self.prev.seek(entry.key)
            self._count_deleted(skipped)
            if rec is not None and "c" in rec:
                prev_children = {c[NAME]: c for c in rec["c"]}
        racy_after = self.clock_ns() - RACY_NS
        kids, dump = [], []
        decisions: dict[bytes, bool] = {}
        unchanged = self.compare.unchanged
        stats = self.stats
        for name, st in entry.children or ():
            typ = file_type(st.st_mode)
            if typ == "s":
                continue
            sname = os.fsdecode(name)
            p = prev_children.pop(sname, None) if prev_children else None
            racy = int(st.st_mtime_ns >= racy_after or st.st_ctime_ns >= racy_after)
            if typ == "d":
                code, origin = b"D", ""
            else:
                if p is not None and unchanged(p, st, typ):
                    code, origin = b"N", p[ORIGIN] or self.prev_snapshot
                    stats.unchanged += 1
                    decisions[name] = False
                else:
                    code, origin = b"Y", ""
                    decisions[name] = True
                    if p is None or p[TYPE] == "d":
                        stats.new += 1
                    else:
                        stats.changed += 1
            size = st.st_size if typ in "fl" else 0
            kid = [sname, typ, size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode,
                   st.st_uid, st.st_gid, racy, origin]
            kids.append(_extra(kid, st, os.path.join(entry.path, name)) if typ in "lcb" else kid)
            dump.append(code + name + b"\0")
        self.stats.deleted += sum(1 for p in prev_children.values() if p[TYPE] != "d")
        rec = {"k": key_to_json(entry.key), "o": offset, "c": kids, **xattr_fields(xattrs)}
        if len(entry.key) == 1:  # a source directory: its own attributes are in no parent's record
            st = entry.st
            rec["s"] = ["", "d", 0, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode,
                        st.st_uid, st.st_gid, 0, ""]
        _write(self._tree, _dumps(rec))
        self._push(entry.key, kids, decisions)
        return [(b"GNU.dumpdir", b"".join(dump) + b"\0")]

    def wanted(self, entry: Entry, offset: int) -> bool:
        """Whether a non-directory is stored (decided when its directory was reached)."""
        if len(entry.key) == 1:  # a source that is a file: always stored
            if self.prev is not None:
                rec, skipped = self.prev.seek(entry.key)
                self._count_deleted(skipped)
                self.stats.changed += rec is not None
                self.stats.new += rec is None
            st = entry.st
            rec = ["", file_type(st.st_mode), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino,
                   st.st_mode, st.st_uid, st.st_gid, 1, ""]
            _extra(rec, st, entry.path)
            _write(self._tree, _dumps({"k": key_to_json(entry.key), "o": offset, "r": rec}))
            return True
        parent = entry.key[:-1]
        while self._stack and self._stack[-1][0] != parent:
            self._stack.pop()
        if not self._stack:
            return True  # cannot happen in walk order; storing is always safe
        return self._stack[-1][1].get(entry.key[-1], True)

    def stored(self, entry: Entry, offset: int, xattrs: Sequence[tuple[bytes, bytes]] = ()) -> None:
        """A non-directory's header is written at ``offset`` (``xattrs``: its SCHILY.xattr
        records): its location record."""
        key = entry.key
        if len(key) == 1:  # a source that is a file
            _write(self._loc, _dumps({"k": key_to_json(key), "o": offset, **xattr_fields(xattrs)}))
            return
        # what _dumps({"k": key_to_json(key), "o": offset}) gives, byte for byte, with the
        # parent's part encoded once per directory: one record per file stored was a tenth
        # of the builder thread's time on a tree of small files
        parent = key[:-1]
        if parent != self._loc_parent:
            self._loc_parent = parent
            self._loc_prefix = _ENCODE({"k": key_to_json(parent)})[:-2].encode()  # '{"k":[0,"a"'
        name = _ENCODE_STR(os.fsdecode(key[-1])).encode()
        if xattrs:  # after "o": readers take the offset from the text before it
            x = _xattr_json(xattrs)
            _write(self._loc, b'%s,%s],"o":%d%s%s}\n'
                   % (self._loc_prefix, name, offset, b"," if x else b"", x))
        else:
            _write(self._loc, b'%s,%s],"o":%d}\n' % (self._loc_prefix, name, offset))

    def failed(self, entry: Entry, offset: int) -> None:
        """A non-directory meant to be stored that could not be read (vanished, unreadable):
        the index marks it racy, so the next run tries again instead of taking it for
        unchanged."""
        _write(self._loc, _dumps({"k": key_to_json(entry.key), "o": offset, "failed": 1}))

    def sync(self) -> None:
        """At every volume checkpoint: the records before it are on disk."""
        for f in (self._tree, self._loc):
            try:
                f.flush()
                os.fsync(f.fileno())
            except OSError as e:
                e.filename = e.filename or f.name
                raise

    def close(self) -> None:
        self._tree.close()
        self._loc.close()
        if self._prev_f is not None:
            self._prev_f.close()


def _write(f: BinaryIO, data: bytes) -> None:
    """A write error names the scratch file (a full spool is then reported as such)."""
    try:
        f.write(data)
    except OSError as e:
        e.filename = e.filename or f.name
        raise


def _truncate(path: Path, size: int) -> None:
    if path.exists():
        os.truncate(path, size)
