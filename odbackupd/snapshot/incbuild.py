"""The builder's side of incremental runs: full or incremental, the index object, its cache.

See :mod:`.incremental` for the design and the index format, :mod:`.chain` for chains.
"""
from __future__ import annotations

import bisect
import hashlib
import io
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import zstandard

from ..config.units import human_size, plural
from ..destinations.base import Destination, DestinationError, Expected
from ..destinations.compare import check_stored
from .catalog import list_snapshots
from .incchain import BrokenChain, Decision, chain_of, decide, restore_text
from .incremental import (
    INDEX_FORMAT,
    INDEX_VERSION,
    LOC_SCRATCH,
    NAME,
    PLAIN_NAME,
    RACY,
    TREE_SCRATCH,
    _dumps,
    index_name,
)
from .manifest import Manifest

RESTORE_NAME = "RESTORE.txt"


@dataclass(frozen=True)
class BuiltIndex:
    path: Path  # the object to store (encrypted when the job is)
    plain: Path  # its compressed plain text (what the cache keeps)
    name: str
    size: int
    sha256: str


def _failed(loc: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    with open(loc, "rb") as f:
        for line in f:
            if b'"failed"' in line:
                k = json.loads(line)["k"]
                out.setdefault(json.dumps(k[:-1]), set()).add(k[-1])
    return out


def build_index(spool: Path, snapshot: str, base: str | None, roots: Sequence[str],
                volumes: Sequence[dict], recipients: Sequence[object]) -> BuiltIndex:
    """The index object from the scratch records (again from scratch if called twice)."""
    starts = [int(v["tar_start"]) for v in volumes]
    indexes = [int(v["index"]) for v in volumes]
    plain = spool / PLAIN_NAME
    cctx = zstandard.ZstdCompressor(level=3, write_checksum=True)
    with open(plain, "wb") as raw, cctx.stream_writer(raw, closefd=False) as zw, \
            io.BufferedWriter(zw, 1 << 20) as out:  # a record is a line: one write each cost more
        head = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "snapshot": snapshot,
                "base": base, "roots": list(roots),
                "xattrs": True}  # every entry with xattrs says so (incremental.py)
        frames = {str(v["index"]): v["frames"] for v in volumes if v.get("frames")}
        if frames and len(frames) == len(volumes):  # where each volume's frames are (frames.py)
            head["frames"] = frames
        out.write(_dumps(head))
        failed = _failed(spool / LOC_SCRATCH)  # {parent key: {child names}}: as few as the warnings
        with open(spool / TREE_SCRATCH, "rb") as f:
            for line in f:
                if failed:
                    d = json.loads(line)
                    names = failed.get(json.dumps(d["k"]))
                    if names:
                        for c in d.get("c", []):
                            if c[NAME] in names:
                                c[RACY] = 1
                        line = _dumps(d)
                out.write(line)
        out.write(_dumps({"section": "locations"}))
        with open(spool / LOC_SCRATCH, "rb") as f:
            for line in f:
                d = json.loads(line)
                if d.get("failed"):
                    continue
                d["v"] = indexes[max(0, bisect.bisect_right(starts, d["o"]) - 1)] if starts else 0
                out.write(_dumps(d))
    name = index_name(bool(recipients))
    path = spool / name
    sha = hashlib.sha256()
    size = 0
    if recipients:
        from ..crypto.age import AgeWriter

        with open(plain, "rb") as src, open(path, "wb") as dst:
            class _Hashing:
                def write(self, b: bytes) -> int:
                    nonlocal size
                    sha.update(b)
                    size += len(b)
                    return dst.write(b)

            w = AgeWriter(_Hashing(), list(recipients))  # type: ignore[arg-type]
            while b := src.read(1 << 20):
                w.write(b)
            w.close()
    else:
        path = plain.with_name(name)
        with open(plain, "rb") as src, open(path, "wb") as dst:
            while b := src.read(1 << 20):
                sha.update(b)
                size += len(b)
                dst.write(b)
    os.chmod(path, 0o600)
    return BuiltIndex(path, plain, name, size, sha.hexdigest())


# -- the local cache of the latest index ---------------------------------------------------------
class IndexCache:
    """``STATE_DIR/index/SERIES.zst`` (the latest snapshot's index, compressed plain text)
    and ``SERIES.json`` (which snapshot, and the SHA-256 of the stored object)."""

    def __init__(self, root: Path, series: str) -> None:
        self.dir = Path(root)
        self.data = self.dir / f"{series}.zst"
        self.meta = self.dir / f"{series}.json"

    def describe(self) -> str:
        return str(self.data)

    def read_meta(self) -> dict | None:
        """What the cache is of (``damaged``: its data does not match the checksum stored
        with it, and a damaged cache would fail every run that reads it), None when missing."""
        try:
            d = json.loads(self.meta.read_text())
            sha = hashlib.sha256()
            with open(self.data, "rb") as f:
                while b := f.read(1 << 20):
                    sha.update(b)
        except (OSError, ValueError):
            return None
        if not isinstance(d, dict):
            return None
        d["damaged"] = d.get("plain_sha256") != sha.hexdigest()
        return d

    def store(self, built: BuiltIndex, snapshot: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.data.with_suffix(".zst.tmp")
        sha = hashlib.sha256()
        with open(built.plain, "rb") as src, os.fdopen(
                os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600),
                "wb") as dst:
            while b := src.read(1 << 20):
                sha.update(b)
                dst.write(b)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, self.data)
        mtmp = self.meta.with_suffix(".json.tmp")
        fd = os.open(mtmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"snapshot": snapshot, "sha256": built.sha256,
                       "plain_sha256": sha.hexdigest()}, f)
        os.replace(mtmp, self.meta)

    def drop(self) -> None:
        self.meta.unlink(missing_ok=True)
        self.data.unlink(missing_ok=True)


class ChainPlanner:
    """What a new snapshot of a series builds on, from the destinations' listings."""

    def __init__(self, dests: Sequence[Destination], series: str, host: str) -> None:
        self.dests, self.series, self.host = list(dests), series, host
        self._listings: list[list[Manifest]] | None = None

    def listings(self) -> list[list[Manifest]]:
        if self._listings is None:
            self._listings = [list_snapshots(d, self.series, self.host).complete
                              for d in self.dests]
        return self._listings

    def decide(self, cache: IndexCache, now: float, *, full_every: int,
               full_if_older_than: float | None, sources: Sequence[str],
               encryption: dict | None) -> Decision:
        listings = self.listings()
        meta = cache.read_meta()
        return decide([ms[-1] if ms else None for ms in listings], listings[0],
                      full_every=full_every, full_if_older_than=full_if_older_than, now=now,
                      sources=sources, encryption=encryption, cache_meta=meta,
                      cache_path=cache.describe())

    def base(self, snapshot: str) -> Manifest | None:
        """The base of an interrupted incremental, when every destination still has it complete."""
        found = [next((m for m in ms if m.snapshot == snapshot), None) for ms in self.listings()]
        return found[0] if all(found) else None

    def restore_text(self, manifest: Manifest, encrypted: bool) -> bytes:
        chain = [manifest]
        if manifest.base is not None:
            base = self.base(manifest.base)
            try:
                chain = [*chain_of(base, self.listings()[0]), manifest] if base else chain
            except BrokenChain:
                pass
        return restore_text(chain, encrypted=encrypted).encode()


def store_index(dests: Sequence[Destination], folder: str, manifest: Manifest, spool: Path,
                roots: Sequence[str], volumes: Sequence[dict], recipients: Sequence[object],
                abort: threading.Event) -> BuiltIndex:
    """Build the index object, store it on every destination (checked as volumes are) and
    list it in the manifest."""
    from ..hashes import quickxor_file

    built = build_index(spool, manifest.snapshot, manifest.base, roots, volumes, recipients)
    qx = quickxor_file(built.path)
    expected = Expected(built.size, built.sha256, qx)
    for d in dests:
        obj = d.put_file(folder, manifest.snapshot, built.name, built.path, expected,
                         lambda n: None, abort)
        check_stored(d, built.name, obj, expected)
    manifest.index = {"name": built.name, "size": built.size, "sha256": built.sha256,
                      "quickxor": qx}
    return built


def adopt_index(cache: IndexCache, dest: Destination, folder: str, snapshot: str,
                spool: Path) -> bool:
    """A snapshot completed by a run killed before it cached its index: cache the index the
    spool still holds, when it is the one the stored manifest lists."""
    from ..destinations.base import MANIFEST_NAME

    try:
        m = Manifest.loads(dest.read_bytes(folder, snapshot, MANIFEST_NAME))
        if m.index is None:
            return False
        stored, plain = spool / m.index["name"], spool / PLAIN_NAME
        sha = hashlib.sha256()
        with open(stored, "rb") as f:
            while b := f.read(1 << 20):
                sha.update(b)
        if sha.hexdigest() != m.index["sha256"] or not plain.is_file():
            return False
        cache.store(BuiltIndex(stored, plain, m.index["name"], int(m.index["size"]),
                               m.index["sha256"]), snapshot)
        return True
    except (OSError, ValueError, DestinationError):
        return False  # the next run is a full, and says why


def source_roots(sources: Sequence[Path]) -> list[str]:
    """Each source's name in the archive (what a member name is matched against)."""
    return [os.fsdecode(os.path.normpath(os.fsencode(str(p))).lstrip(b"/") or b".")
            for p in sources]


def summary(m: Manifest, full_reason: str = "") -> str:
    """The one-line result of a run: kind, counts, sizes (and why a full, when it matters)."""
    out = f"{m.kind}"
    if m.base:
        out += f" on {m.base}"
    if full_reason:
        out += f" ({full_reason})"
    out += f": {plural(m.files, 'file')}"
    if m.changes is not None and m.kind == "incremental":
        c = m.changes
        out += (f" ({c['new']} new, {c['changed']} changed, {c['unchanged']} unchanged, "
                f"{c['deleted']} deleted)")
    return out + (f", {human_size(m.data_bytes)} read, {plural(len(m.volumes), 'volume')}, "
                  f"{human_size(m.stored_bytes)} stored")


def without_chain(params: dict) -> dict:
    """Resume parameters without the kind/base the run recorded with them."""
    return {k: v for k, v in params.items() if k not in ("kind", "base")}


def scratch_sizes(spool: Path) -> dict[str, int]:
    return {n: (spool / n).stat().st_size if (spool / n).exists() else 0
            for n in (TREE_SCRATCH, LOC_SCRATCH)}


def scratch_intact(spool: Path, checkpoint: dict) -> bool:
    """The spool still holds the index records a volume checkpoint covers."""
    want = checkpoint.get("index")
    if want is None:
        return False
    have = scratch_sizes(spool)
    return all(have.get(n, 0) >= size for n, size in want.items())


def drop_scratch(spool: Path) -> None:
    for n in (TREE_SCRATCH, LOC_SCRATCH):
        (spool / n).unlink(missing_ok=True)
