"""Restore and verify a whole chain: the full, then each incremental up to the one asked for.

The newest snapshot's index names, for every entry, the snapshot of the chain whose archive
holds its data (``origin``). So each archive of the chain is read once, oldest first, and
only the members that are the newest copy of something the asked-for snapshot holds are
written: a file is written once, never once per historical version; deleted and renamed
paths are never written at all; directories come from the newest snapshot (every snapshot
stores every directory), their attributes set last. Of an older archive, only the volumes
that hold such a newest copy are fetched (its own index says where each entry is).
"""
from __future__ import annotations

import bisect
import dataclasses
import heapq
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from ..destinations.base import Destination, DestinationError, StoredObject
from ..destinations.compare import expected_of, mismatches
from .extract import Extractor
from .incchain import BrokenChain, chain_of
from .incremental import NAME, ORIGIN, TYPE, open_tree
from .manifest import Manifest
from .restore import (
    IntegrityError,
    PlainStream,
    RestoreError,
    RestoreStats,
    VerifyReport,
    VolumeFetcher,
    _hash_stream,
    check_identities,
    verify_snapshot,
)
from .restore_result import special_policy
from .target import open_target, parse_paths
from .walk import Key, key_from_json


def fetch_index(dest: Destination, m: Manifest, identities: Sequence[object] | None, into: Path,
                plain: str = "index.plain.zst") -> Path:
    """The snapshot's index object, checked against the manifest, as compressed plain text."""
    if m.index is None:
        raise RestoreError(f"snapshot {m.snapshot} has no index")
    raw = into / f"{m.snapshot}.{m.index['name']}"
    try:
        with dest.open_read(m.location, m.snapshot, m.index["name"]) as src, open(raw, "wb") as out:
            size, sha, _ = _hash_stream(src, out)
    except DestinationError as e:
        raise IntegrityError(f"the index of {m.snapshot}: {e}") from e
    problems = mismatches(StoredObject(m.index["name"], size, sha), expected_of(m.index))
    if problems:
        raise IntegrityError(f"the index of {m.snapshot} ({m.index['name']}) does not match "
                             "its manifest: " + "; ".join(map(str, problems)))
    if not m.index["name"].endswith(".age"):
        return raw
    from ..crypto.age import AgeError, AgeReader

    plain = into / plain
    try:
        with open(raw, "rb") as f, open(plain, "wb") as out:
            r = AgeReader(f, list(identities or ()))
            while b := r.read(1 << 20):
                out.write(b)
    except (AgeError, ValueError) as e:
        raise IntegrityError(f"the index of {m.snapshot} does not decrypt: {e}") from e
    return plain


class _Tree:
    """Lookups of a directory's children in an index, for members arriving in walk order."""

    def __init__(self, path: Path) -> None:
        self._f, self._r = open_tree(path)
        self.roots: list[str] = list(self._r.header.get("roots") or [])
        self._stack: list[tuple[Key, dict]] = []
        self._it = iter(self._r)
        self._peek: tuple[Key, dict] | None = None

    def close(self) -> None:
        self._f.close()

    def record(self, key: Key) -> dict | None:
        while True:
            if self._peek is None:
                self._peek = next(self._it, None)
                if self._peek is None:
                    break
            k, rec = self._peek
            if k > key:
                break
            self._peek = None
            while self._stack and self._stack[-1][0] != k[: len(self._stack[-1][0])]:
                self._stack.pop()
            self._stack.append((k, rec))
        for k, rec in reversed(self._stack):
            if k == key:
                return rec
        return None

    def key_of(self, name: str) -> Key | None:
        """The walk key of a member name (the longest source root it lies under)."""
        best: tuple[int, int] | None = None
        for i, root in enumerate(self.roots):
            if root == "." or name == root or name.startswith(root + "/"):
                n = 0 if root == "." else len(root)
                if best is None or n > best[1]:
                    best = (i, n)
        if best is None:
            return None
        i, n = best
        rest = name[n:].strip("/") if n else name.strip("/")
        if rest in ("", "."):
            return (i,)
        return (i, *(os.fsencode(c) for c in rest.split("/") if c not in ("", ".")))


class _Select:
    """Which members of one archive of the chain a restore writes."""

    def __init__(self, tree: _Tree, snapshot: str, newest: str) -> None:
        self.tree, self.snapshot, self.newest = tree, snapshot, newest
        self._children: tuple[Key, dict[str, list]] | None = None

    def __call__(self, ti) -> bool:  # noqa: ANN001 - tarfile.TarInfo
        key = self.tree.key_of(ti.name)
        if ti.isdir() or key is None:
            return self.snapshot == self.newest
        return self.wanted(key)

    def wanted(self, key: Key) -> bool:
        """Whether the non-directory at ``key`` of this archive is the newest copy."""
        if len(key) == 1:  # a source that is a file: in every archive, taken from the newest
            return self.snapshot == self.newest
        parent = key[:-1]
        if self._children is None or self._children[0] != parent:
            rec = self.tree.record(parent)
            self._children = (parent, {c[NAME]: c for c in (rec or {}).get("c", [])})
        child = self._children[1].get(os.fsdecode(key[-1]))
        if child is None or child[TYPE] == "d":
            return False
        return (child[ORIGIN] or self.newest) == self.snapshot


def _entries(index: Path) -> Iterator[tuple[int, int, Key]]:
    """(tar offset, 1 for a stored non-directory else 0, key) of every entry of an archive,
    by offset: its index's tree records (directories) merged with its locations."""
    f1, tree = open_tree(index)
    f2, rest = open_tree(index)
    try:
        for _ in rest:  # to the locations section
            pass

        def locations() -> Iterator[tuple[int, int, Key]]:
            for line in rest._f:
                d = json.loads(line)
                yield d["o"], 1, key_from_json(d["k"])

        # a file source is in the locations too
        dirs = ((d["o"], 0, k) for k, d in tree if "c" in d)
        yield from heapq.merge(dirs, locations())
    finally:
        f1.close()
        f2.close()


def segments(index: Path, m: Manifest, select: _Select) -> list[tuple[int, int, int, int | None]]:
    """The parts of an older archive of the chain that hold a newest copy of something:
    ``(first volume, last volume, start offset, end offset or None for the archive's end)``.
    The volumes between them are neither fetched nor read."""
    vols = m.volumes
    starts = [int(v["tar_start"]) for v in vols]

    def vol(offset: int) -> int:
        return max(0, bisect.bisect_right(starts, offset) - 1)

    out: list[list] = []
    pending: int | None = None

    def add(start: int, end: int | None) -> None:
        a, b = vol(start), (vol(end - 1) if end is not None else len(vols) - 1)
        if out and a <= out[-1][1] + 1:
            out[-1][1], out[-1][3] = max(out[-1][1], b), end
        else:
            out.append([a, b, start, end])

    for offset, stored, key in _entries(index):
        if pending is not None:
            add(pending, offset)
            pending = None
        if stored and select.wanted(key):
            pending = offset
    if pending is not None:
        add(pending, None)
    return [tuple(x) for x in out]  # type: ignore[misc]


class _Window(io.RawIOBase):
    """``skip`` bytes of a stream dropped, then ``limit`` bytes (None: all) and, after a
    limit, the two zero blocks that end a tar archive."""

    def __init__(self, raw: io.RawIOBase, skip: int, limit: int | None) -> None:
        self.raw, self.skip, self.left = raw, skip, limit
        self.tail = b"" if limit is None else bytes(1024)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # noqa: ANN001
        while self.skip:
            n = self.raw.readinto(memoryview(bytearray(min(self.skip, 1 << 20))))
            if not n:
                return 0
            self.skip -= n
        if self.left is not None and self.left <= 0:
            n = min(len(b), len(self.tail))
            b[:n], self.tail = self.tail[:n], self.tail[n:]
            return n
        view = memoryview(b)
        if self.left is not None:
            view = view[: self.left]
        n = self.raw.readinto(view) or 0
        if self.left is not None:
            self.left -= n
        return n


def is_empty_dir(path: Path) -> bool:
    """Whether a restore into ``path`` mixes nothing in: it is missing or an empty directory.
    A ``path`` that is (or lies below) a file counts as empty: the restore's target check
    refuses it then, with the message a full snapshot's restore gives."""
    try:
        with os.scandir(path) as it:
            return next(it, None) is None
    except (FileNotFoundError, NotADirectoryError):
        return True


def restore_chain(
    dest: Destination,
    chain: Sequence[Manifest],
    target: Path,
    *,
    identities: Sequence[object] | None = None,
    paths: Sequence[str] = (),
    scratch: Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    same_owner: bool | None = None,
    authentic: bool = False,
    special_files: bool | None = None,
) -> RestoreStats:
    """Restore the state of ``chain[-1]`` (an incremental) by applying ``chain``.

    ``authentic``/``special_files``: as for restore_snapshot (``authentic``: every manifest
    of the chain was verified against a trusted key). An archive read whole has its
    volumes' chain headers and end marker checked (snapshot/chain.py); of an older one read
    in parts, each volume is checked against its manifest's SHA-256 (the headers link each
    volume to the one before it, which a part skips). The counts are not compared with a
    manifest: no one manifest describes what a chain restore writes."""
    newest = chain[-1]
    for m in chain:
        if m.encrypted and not identities:
            raise RestoreError(
                f"snapshot {m.snapshot} is encrypted: give the age identity file with --identity"
            )
        check_identities(m, identities)
    restore_special, why = special_policy(authentic, special_files)
    parse_paths(paths)  # a bad --path is refused before the target is created
    tgt = open_target(target)
    tmp = Path(tempfile.mkdtemp(prefix="odbackupd-chain-", dir=scratch))
    total = sum(m.tar_bytes for m in chain)
    done = 0
    try:
        index = fetch_index(dest, newest, identities, tmp)
        ex = Extractor(tgt.fd, tgt.path, paths=paths, same_owner=same_owner,
                       special_files=restore_special, special_reason=why)
        ex.stats.warnings[:0] = tgt.warnings
        stats = ex.stats
        for m in chain:
            parts: list[tuple[int, int, int, int | None]] = [(0, len(m.volumes) - 1, 0, None)]
            if m is not newest and m.index is not None and m.volumes:
                tree = _Tree(index)
                try:
                    parts = segments(
                        fetch_index(dest, m, identities, tmp, plain=f"{m.snapshot}.plain.zst"),
                        m,
                        _Select(tree, m.snapshot, newest.snapshot),
                    )
                finally:
                    tree.close()
            for first, last, start, end in parts:
                part = dataclasses.replace(m, volumes=m.volumes[first : last + 1])
                tree = _Tree(index)
                ex.select = _Select(tree, m.snapshot, newest.snapshot)
                whole = first == 0 and last == len(m.volumes) - 1 and start == 0 and end is None
                stream = PlainStream(iter(VolumeFetcher(dest, part, scratch)), identities,
                                     manifest=m if whole else None)
                skip = start - int(part.volumes[0].get("tar_start", 0)) if part.volumes else 0
                raw = _Window(stream, skip, None if end is None else end - start)
                reader: BinaryIO = io.BufferedReader(raw, 1 << 20)  # type: ignore[arg-type]
                if on_progress is not None:
                    base = done
                    reader = _Progress(  # type: ignore[assignment]
                        reader, lambda n, b=base: on_progress(b + n, total))
                try:
                    stats = ex.extract(reader)
                    if whole:
                        while reader.read(1 << 20):  # to the end, where the end marker is checked
                            pass
                finally:
                    stream.close()
                    tree.close()
            done += m.tar_bytes
        return stats
    finally:
        os.close(tgt.fd)
        shutil.rmtree(tmp, ignore_errors=True)


class _Progress:
    def __init__(self, f: BinaryIO, cb: Callable[[int], None]) -> None:
        self.f, self.cb, self.n = f, cb, 0

    def read(self, n: int = -1) -> bytes:
        b = self.f.read(n)
        self.n += len(b)
        self.cb(self.n)
        return b


def verify_chain(
    dest: Destination,
    target: Manifest,
    snapshots: Sequence[Manifest],
    *,
    download: bool = False,
    identities: Sequence[object] | None = None,
) -> list[VerifyReport]:
    """``verify_snapshot`` of ``target`` and of every snapshot its restore needs; a missing
    base is a problem of ``target``'s report, naming the broken link."""
    try:
        chain = chain_of(target, snapshots)
    except BrokenChain as e:
        rep = verify_snapshot(dest, target, download=download, identities=identities)
        rep.problems.append(f"chain broken: {e}")
        return [rep]
    reports = []
    for m in chain:
        rep = verify_snapshot(dest, m, download=download, identities=identities)
        if m is not target and not rep.ok:
            rep.problems = [f"base of {target.snapshot}: {p}" for p in rep.problems]
        reports.append(rep)
    return reports
