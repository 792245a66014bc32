"""Restore and verify a whole chain: the full, then each incremental up to the one asked for.

The newest snapshot's index names, for every entry, the snapshot of the chain whose archive
holds its data (``origin``). So each archive of the chain is read once, oldest first, and
only the members that are the newest copy of something the asked-for snapshot holds are
written: a file is written once, never once per historical version; deleted and renamed
paths are never written at all; directories come from the newest snapshot (every snapshot
stores every directory), their attributes set last.
"""
from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Sequence

from ..destinations.base import Destination, DestinationError
from .chain import BrokenChain, chain_of
from .incremental import NAME, ORIGIN, TYPE, open_tree
from .manifest import Manifest
from .restore import (
    Extractor, IntegrityError, PlainStream, RestoreError, RestoreStats, VerifyReport, VolumeFetcher,
    _hash_stream, check_identities, verify_snapshot,
)
from .walk import Key


def fetch_index(dest: Destination, m: Manifest, identities: Sequence[object] | None, into: Path) -> Path:
    """The snapshot's index object, checked against the manifest, as compressed plain text."""
    if m.index is None:
        raise RestoreError(f"snapshot {m.snapshot} has no index")
    raw = into / m.index["name"]
    try:
        with dest.open_read(m.location, m.snapshot, m.index["name"]) as src, open(raw, "wb") as out:
            size, sha, _ = _hash_stream(src, out)
    except DestinationError as e:
        raise IntegrityError(f"the index of {m.snapshot}: {e}") from e
    if size != int(m.index["size"]) or sha != m.index["sha256"]:
        raise IntegrityError(f"the index of {m.snapshot} ({m.index['name']}) does not match its manifest")
    if not m.index["name"].endswith(".age"):
        return raw
    from ..crypto.age import AgeError, AgeReader

    plain = into / "index.plain.zst"
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
        last = self.snapshot == self.newest
        key = self.tree.key_of(ti.name)
        if ti.isdir() or key is None or len(key) == 1:
            return last
        parent = key[:-1]
        if self._children is None or self._children[0] != parent:
            rec = self.tree.record(parent)
            self._children = (parent, {c[NAME]: c for c in (rec or {}).get("c", [])})
        child = self._children[1].get(os.fsdecode(key[-1]))
        if child is None or child[TYPE] == "d":
            return False
        return (child[ORIGIN] or self.newest) == self.snapshot


def is_empty_dir(path: Path) -> bool:
    try:
        with os.scandir(path) as it:
            return next(it, None) is None
    except FileNotFoundError:
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
) -> RestoreStats:
    """Restore the state of ``chain[-1]`` (an incremental) by applying ``chain``."""
    newest = chain[-1]
    for m in chain:
        if m.encrypted and not identities:
            raise RestoreError(f"snapshot {m.snapshot} is encrypted: give the age identity file with --identity")
        check_identities(m, identities)
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="odbackupd-chain-", dir=scratch))
    total = sum(m.tar_bytes for m in chain)
    done = 0
    try:
        index = fetch_index(dest, newest, identities, tmp)
        ex = Extractor(target, paths=paths, same_owner=same_owner)
        for m in chain:
            tree = _Tree(index)
            ex.select = _Select(tree, m.snapshot, newest.snapshot)
            stream = PlainStream(iter(VolumeFetcher(dest, m, scratch)), identities)
            reader: BinaryIO = io.BufferedReader(stream, 1 << 20)  # type: ignore[arg-type]
            if on_progress is not None:
                base = done
                reader = _Progress(reader, lambda n, b=base: on_progress(b + n, total))  # type: ignore[assignment]
            try:
                stats = ex.extract(reader)
            finally:
                stream.close()
                tree.close()
            done += m.tar_bytes
        return stats
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _Progress:
    def __init__(self, f: BinaryIO, cb: Callable[[int], None]) -> None:
        self.f, self.cb, self.n = f, cb, 0

    def read(self, n: int = -1) -> bytes:
        b = self.f.read(n)
        self.n += len(b)
        self.cb(self.n)
        return b


def verify_chain(dest: Destination, target: Manifest, snapshots: Sequence[Manifest], *, download: bool = False,
                 identities: Sequence[object] | None = None) -> list[VerifyReport]:
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
