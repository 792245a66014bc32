"""Which snapshots a destination holds: only folders with a readable manifest count."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from ..destinations.base import MANIFEST_NAME, Destination, DestinationError
from .manifest import Manifest, ManifestError

log = logging.getLogger("odbackupd.snapshot")


class SnapshotNotFound(LookupError):
    pass


class DamagedLatest(Exception):
    """``latest`` was asked for, but the newest snapshot folder has a manifest that does not
    read: taking the newest intact one instead would quietly restore older data."""

    def __init__(self, folder: str, problem: str, intact: "Manifest | None") -> None:
        super().__init__(f"the newest snapshot, {folder}, has a damaged manifest ({problem})")
        self.folder, self.problem, self.intact = folder, problem, intact


@dataclass(frozen=True)
class Listing:
    complete: list[Manifest]  # oldest first
    incomplete: list[str]  # folders without a manifest (interrupted or in progress)
    unreadable: list[tuple[str, str]]  # (folder, why): a manifest that does not parse


def list_snapshots(dest: Destination, job: str) -> Listing:
    complete: list[Manifest] = []
    incomplete: list[str] = []
    bad: list[tuple[str, str]] = []
    for name in dest.list_snapshot_dirs(job):
        objs = dest.list_objects(job, name)
        if MANIFEST_NAME not in objs:
            incomplete.append(name)
            continue
        try:
            m = Manifest.loads(dest.read_bytes(job, name, MANIFEST_NAME))
        except (ManifestError, DestinationError) as e:
            bad.append((name, str(e)))
            continue
        if m.snapshot != name or m.job != job:
            bad.append((name, f"manifest names {m.job}/{m.snapshot}"))
            continue
        complete.append(m)
    complete.sort(key=lambda m: (m.started, m.snapshot))
    return Listing(complete, incomplete, bad)


def find_snapshot(dest: Destination, job: str, ref: str | None) -> Manifest:
    """``ref``: a snapshot id, a unique prefix of one, or ``latest``/None."""
    listing = list_snapshots(dest, job)
    snaps = listing.complete
    if ref in (None, "", "latest"):
        newer = [(f, p) for f, p in listing.unreadable if not snaps or f > snaps[-1].snapshot]
        if newer:
            raise DamagedLatest(*max(newer), snaps[-1] if snaps else None)
    if not snaps:
        raise SnapshotNotFound(f"{dest.describe()} holds no complete snapshot of job {job!r}")
    if ref in (None, "", "latest"):
        return snaps[-1]
    exact = [m for m in snaps if m.snapshot == ref]
    if exact:
        return exact[0]
    matches = [m for m in snaps if m.snapshot.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise SnapshotNotFound(f"no snapshot {ref!r} of job {job!r} on {dest.describe()}")
    raise SnapshotNotFound(
        f"{ref!r} matches {len(matches)} snapshots of job {job!r}: "
        + ", ".join(m.snapshot for m in matches[:5])
    )
