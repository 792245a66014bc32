"""Restoring some paths of a snapshot by reading only the volumes that hold them.

``restore_paths(view, target, paths)``: the view (snapshot/view.py) says, from the indexes,
which entries lie under the paths and where the newest copy of each is (which snapshot of
the chain, which volume, which tar offset) and where the entry after it starts. Each run
of wanted entries is read from the volume holding its first byte, skipped to its offset
and cut at its end; volumes in between are never fetched. Directories come from the
snapshot itself (every snapshot stores every directory), files from the snapshot their
index entry names, oldest first, each written once, through the same Extractor (and the
same special-file policy) as a whole restore.

The index is checked against the archive: the member at each offset must be the path the
index names there (else IntegrityError, exit 4); the Extractor refuses names with ``..``
or that would be written through a symlink whatever the index says.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from pathlib import Path

from .extract import Extractor
from .restore_errors import IntegrityError
from .restore_result import RestoreStats, special_policy
from .target import open_target, parse_paths
from .view import Location, SnapshotView


def _runs(
    view: SnapshotView, snapshot: str, wanted: dict[int, str]
) -> list[tuple[Location, int | None]]:
    """(start, end) of each run of wanted entries of one archive; runs that lie in the
    same volume are joined (what lies between is decoded and skipped, never fetched again)."""
    m = next(c for c in view.chain if c.snapshot == snapshot)
    starts = [int(v.get("tar_start", 0)) for v in m.volumes]

    def vol(offset: int) -> int:
        return max(0, bisect.bisect_right(starts, offset) - 1)

    runs: list[list] = []
    for off in sorted(wanted):
        loc = view.location_at(snapshot, off)
        end = view.entry_end(loc)
        if runs and (
            runs[-1][1] == off or (runs[-1][1] is not None and vol(off) == vol(runs[-1][1] - 1))
        ):
            runs[-1][1] = end
        else:
            runs.append([loc, end])
    return [(a, b) for a, b in runs]


def restore_paths(
    view: SnapshotView,
    target: Path,
    paths: Sequence[str],
    *,
    same_owner: bool | None = None,
    authentic: bool = False,
    special_files: bool | None = None,
) -> RestoreStats:
    """Restore ``paths`` (as archived) of the view's snapshot below ``target``.

    ``stats.fetched``: what was downloaded (the view's source's counts: volumes, bytes,
    indexes). A path not in the snapshot is in ``stats.unmatched``."""
    restore_special, why = special_policy(authentic, special_files)
    parse_paths(paths)  # a bad --path is refused before the target is created
    per: dict[str, dict[int, str]] = {}
    for p in paths:
        for n in view.walk(p):
            if n.type == "d" and n.location is None:
                continue  # only implied by a source's path: made as the parent of what is below
            loc = view.location(n)
            per.setdefault(loc.snapshot, {})[loc.offset] = n.path
    unmatched = [p for p in paths if view.lookup(p) is None]
    if paths and len(unmatched) == len(paths):  # nothing to restore: make no target either
        stats = RestoreStats(unmatched=unmatched)
        stats.fetched = _fetched(view)
        return stats
    tgt = open_target(target)
    try:
        ex = Extractor(
            tgt.fd,
            tgt.path,
            paths=paths,
            same_owner=same_owner,
            special_files=restore_special,
            special_reason=why,
        )
        ex.stats.warnings[:0] = tgt.warnings
        stats = ex.stats
        for m in view.chain:  # oldest first; the directories (the view's own snapshot) last
            wanted = per.get(m.snapshot)
            if not wanted:
                continue
            seen: set[int] = set()
            links: list[tuple[str, str]] = []
            names = set(wanted.values())
            for start, end in _runs(view, m.snapshot, wanted):
                ex.select = _Check(m.snapshot, start.offset, wanted, seen, names, links)
                with view.stream(start, end) as reader:
                    stats = ex.extract(reader)
            for link, first in links:  # the data is under a name the paths leave out
                loc = view._stored(m.snapshot).get(first)
                if loc is None:
                    _stop(stats, f"{link} is a hard link to {first}, which snapshot "
                          f"{m.snapshot} lacks")
                ex.select = _Renamed(first, link)
                with view.stream(loc, view.entry_end(loc)) as reader:
                    stats = ex.extract(reader)
            missing = sorted(set(wanted) - seen)
            if missing:
                _stop(
                    stats,
                    f"the index of snapshot {m.snapshot} puts {wanted[missing[0]]} at archive "
                    f"offset {missing[0]}, where no member starts ({len(missing)} such entries): "
                    "refused (the index is damaged or "
                    "was written by someone else)",
                )
    finally:
        os.close(tgt.fd)
    stats.unmatched = unmatched
    stats.fetched = _fetched(view)
    return stats


def _fetched(view: SnapshotView) -> dict:
    """What was downloaded, next to what a full read of the chain fetches."""
    fetched = dict(getattr(view.source, "counts", {}) or {})
    fetched["stored_volumes"] = sum(len(c.volumes) for c in view.chain)
    fetched["stored_bytes"] = sum(c.stored_bytes for c in view.chain)
    return fetched


def _stop(stats: RestoreStats, why: str) -> None:
    """Damage found after members were written: the restore is partial (exit 4, said so)."""
    stats.stopped = why
    e = IntegrityError(why)
    e.stats = stats  # type: ignore[attr-defined]
    raise e


class _Check:
    """The Extractor's select hook for one run: only the members the index named, each the
    path the index gave it."""

    def __init__(
        self,
        snapshot: str,
        base: int,
        wanted: dict[int, str],
        seen: set[int],
        names: set[str],
        links: list[tuple[str, str]],
    ) -> None:
        self.snapshot, self.base, self.wanted, self.seen = snapshot, base, wanted, seen
        self.names, self.links = names, links

    def __call__(self, ti) -> bool:  # noqa: ANN001 - tarfile.TarInfo
        off = self.base + ti.offset
        path = self.wanted.get(off)
        if path is None:
            return False
        if ti.name.strip("/") != path:
            raise IntegrityError(
                f"the index of snapshot {self.snapshot} puts {path} at archive offset {off}, "
                f"where the archive holds {ti.name!r}: refused (the index is damaged or was "
                "written by someone else)"
            )
        self.seen.add(off)
        if ti.islnk() and (target := ti.linkname.strip("/")) not in self.names:
            self.links.append((path, target))  # restored from its target's data, as a file
            return False
        return True


class _Renamed:
    """The one member ``target``, written under the name ``link`` (a hard link whose first
    name is not restored becomes a file of its own)."""

    def __init__(self, target: str, link: str) -> None:
        self.target, self.link, self.done = target, link, False

    def __call__(self, ti) -> bool:  # noqa: ANN001 - tarfile.TarInfo
        if self.done:
            return False
        if ti.name.strip("/") != self.target or not ti.isreg():
            raise IntegrityError(
                f"the index puts the data of {self.link} (a hard link to {self.target}) where the "
                f"archive holds {ti.name!r}: refused"
            )
        ti.name, self.done = self.link, True
        return True
