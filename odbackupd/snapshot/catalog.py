"""Which snapshots a destination holds: only folders with a readable manifest count."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from ..destinations.base import MANIFEST_NAME, Destination, DestinationError
from .manifest import Manifest, ManifestError, order_key

log = logging.getLogger("odbackupd.snapshot")


class SnapshotNotFound(LookupError):
    pass


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
    complete.sort(key=order_key)
    return Listing(complete, incomplete, bad)


def find_snapshot(dest: Destination, job: str, ref: str | None) -> Manifest:
    """``ref``: a snapshot id, a unique prefix of one, or ``latest``/None."""
    snaps = list_snapshots(dest, job).complete
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


def next_in_series(dests: list[Destination], job: str, snapshot: str) -> tuple[int, str | None]:
    """The sequence number and predecessor of a new snapshot of ``job``: one after the
    highest any destination holds (a counter the snapshots carry, so a clock set back
    cannot make the newest snapshot sort oldest)."""
    best: Manifest | None = None
    for d in dests:
        for m in list_snapshots(d, job).complete:
            if m.snapshot != snapshot and (best is None or order_key(m) > order_key(best)):
                best = m
    if best is None:
        return 1, None
    return (best.sequence or _legacy_count(dests, job)) + 1, best.snapshot


def _legacy_count(dests: list[Destination], job: str) -> int:
    """Snapshots made before there were sequence numbers are numbered by their count."""
    return max((len(list_snapshots(d, job).complete) for d in dests), default=0)
