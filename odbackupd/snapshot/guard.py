"""The source guard: the reasons a run makes no snapshot at all.

An unmounted disk, a mistyped path or an emptied mount point would give an empty
"successful" snapshot that retention counts, pushing the good ones out. So before anything
is made, every source is checked; a refusal leaves the earlier snapshots untouched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..config.checks import symlinked_dir_source
from ..state import StateStore
from .mounts import unmounted_sources
from .spec import JobSpec

UNTOUCHED = "nothing was backed up and the earlier snapshots are untouched"


@dataclass(frozen=True)
class SourceCheck:
    refusal: str | None  # why no snapshot is made; None: go on
    nonempty: list[
        str
    ]  # source directories with entries now (recorded when the snapshot completes)



def check_sources(job: JobSpec, state: StateStore, fstab: Path, mountinfo: Path) -> SourceCheck:
    missing = [str(p) for p in job.sources if not os.path.lexists(p)]
    if missing:
        return SourceCheck(
            f"source {', '.join(missing)} does not exist (not mounted? moved?); {UNTOUCHED}", []
        )
    linked = [m for m in map(symlinked_dir_source, job.sources) if m]
    if linked:
        return SourceCheck("; ".join(linked) + f"; {UNTOUCHED}", [])
    unmounted = unmounted_sources(job.sources, fstab, mountinfo)
    if unmounted:
        return SourceCheck(
            "; ".join(
                f"source {src} is on {point}, which /etc/fstab lists but is not mounted"
                for src, point in unmounted
            )
            + f"; {UNTOUCHED}",
            [],
        )
    # A disk mounted by hand or by a script leaves an empty directory when it is not:
    # a source directory that had entries at the last snapshot and has none now fails
    # the run (retention would count an empty snapshot), unless the job allows it.
    empty = {str(p): _is_empty_dir(p) for p in job.sources}  # one scandir each
    nonempty = [p for p, e in empty.items() if e is False]
    had = set(state.nonempty_sources(job.name))
    emptied = [p for p, e in empty.items() if e and p in had]
    if emptied and not job.allow_empty_sources:
        return SourceCheck(
            f"source {', '.join(emptied)} is empty but had files at the last snapshot (is its "
            f"disk mounted?); {UNTOUCHED}. If it was emptied on purpose, set "
            f"allow_empty_sources = true in [job.{job.name}]",
            nonempty,
        )
    return SourceCheck(None, nonempty)


def _is_empty_dir(path: Path) -> bool | None:
    """True for a directory (not a symlink) with no entries, False for one with entries,
    None when it is not a directory or cannot be read (the walk reports that itself)."""
    try:
        if os.path.islink(path) or not os.path.isdir(path):
            return None
        with os.scandir(path) as it:
            return next(it, None) is None
    except OSError:
        return None
