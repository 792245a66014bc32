"""Which snapshots a destination holds for one host's series: only folders with a readable
manifest count.

Layout (since 0.2): ``<root>/<host>/<series>/<snapshot>/``, so servers sharing a destination
(and a job name such as ``etc``) never see, prune or clean up each other's snapshots. The
layout before it, ``<root>/<series>/<snapshot>/``, is still read: a snapshot there counts
for the host its manifest names (listed, restorable, pruned by that host's retention), and
an incomplete folder there (no manifest, so no owner on record) is left alone unless the
state database of this host knows it made it. New snapshots always go to the per-host
folder, so the old layout empties itself as retention ages its snapshots out.
"""
from __future__ import annotations

import logging
import re
import socket
from dataclasses import dataclass, field

from ..destinations.base import MANIFEST_NAME, Destination, DestinationError
from .manifest import Manifest, ManifestError, order_key

log = logging.getLogger("odbackupd.snapshot")

# 20261123T101500Z-3fa2c1 (manifest.new_snapshot_id): in the old layout's series folder a
# name of another shape is a host's folder of the new layout, not a snapshot
SNAPSHOT_ID_RE = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")


class SnapshotNotFound(LookupError):
    pass


class DamagedLatest(Exception):
    """``latest`` was asked for, but the newest snapshot folder has a manifest that does not
    read: taking the newest intact one instead would quietly restore older data."""

    def __init__(self, folder: str, problem: str, intact: Manifest | None) -> None:
        super().__init__(f"the newest snapshot, {folder}, has a damaged manifest ({problem})")
        self.folder, self.problem, self.intact = folder, problem, intact


def series_folder(host: str, series: str) -> str:
    """The folder holding the snapshot folders of ``host``'s series ``series``."""
    return f"{host}/{series}"


@dataclass(frozen=True)
class Listing:
    complete: list[Manifest]  # oldest first; each with .folder set
    incomplete: list[str]  # folders of this host without a manifest (interrupted or in progress)
    unreadable: list[tuple[str, str]]  # (folder, why): a manifest that does not parse
    # folders without a manifest in the old shared layout: nobody's on record (another
    # host's upload in progress, or an interrupted run from before the per-host layout)
    legacy_incomplete: list[str] = field(default_factory=list)


def _read(dest: Destination, folder: str, name: str) -> Manifest | str | None:
    """The manifest in ``folder/name``; None without one; the problem as text if unreadable."""
    objs = dest.list_objects(folder, name)
    if MANIFEST_NAME not in objs:
        return None
    try:
        m = Manifest.loads(dest.read_bytes(folder, name, MANIFEST_NAME))
    except (ManifestError, DestinationError) as e:
        return str(e)
    m.folder = folder
    return m


def list_snapshots(dest: Destination, series: str, host: str | None = None) -> Listing:
    """``host``'s snapshots of ``series`` on ``dest``: its per-host folder, plus those of the
    old shared layout whose manifest names ``host``. ``host`` None: this machine's host name
    (the default of ``[daemon] hostname``; the daemon and odctl always pass the configured one)."""
    host = host or socket.gethostname()
    complete: list[Manifest] = []
    incomplete: list[str] = []
    legacy_incomplete: list[str] = []
    bad: list[tuple[str, str]] = []
    own = series_folder(host, series)
    for name in dest.list_snapshot_dirs(own):
        m = _read(dest, own, name)
        if m is None:
            incomplete.append(name)
        elif isinstance(m, str):
            bad.append((name, m))
        elif m.snapshot != name or m.job != series or m.host != host:
            bad.append((name, f"manifest names {m.host}/{m.job}/{m.snapshot}"))
        else:
            complete.append(m)
    for name in dest.list_snapshot_dirs(series):
        if not SNAPSHOT_ID_RE.fullmatch(name):
            continue
        m = _read(dest, series, name)
        if m is None:
            legacy_incomplete.append(name)
        elif isinstance(m, str):
            bad.append((f"{series}/{name}", m))
        elif m.host != host:
            continue  # another server's snapshot: not ours to list, prune or clean up
        elif m.snapshot != name or m.job != series:
            bad.append((f"{series}/{name}", f"manifest names {m.job}/{m.snapshot}"))
        else:
            complete.append(m)
    complete.sort(key=order_key)
    return Listing(complete, incomplete, bad, legacy_incomplete)


def find_snapshot(dest: Destination, series: str, ref: str | None, host: str | None = None,
                  listing: Listing | None = None) -> Manifest:
    """``ref``: a snapshot id, a unique prefix of one, or ``latest``/None; ``listing``: the
    series' listing when the caller has it already (one listing costs requests per snapshot)."""
    host = host or socket.gethostname()
    listing = listing if listing is not None else list_snapshots(dest, series, host)
    snaps = listing.complete
    if ref in (None, "", "latest"):
        # this host's own folders only: a damaged manifest in the old shared layout may be
        # another host's (verify all still reports it)
        newer = [(f, p) for f, p in listing.unreadable
                 if "/" not in f and (not snaps or f > snaps[-1].snapshot)]
        if newer:
            raise DamagedLatest(*max(newer), snaps[-1] if snaps else None)
    if not snaps:
        raise SnapshotNotFound(
            f"{dest.describe()} holds no complete snapshot of job {series!r} made by host {host!r}"
            " (another host's: --host NAME)")
    if ref in (None, "", "latest"):
        return snaps[-1]
    exact = [m for m in snaps if m.snapshot == ref]
    if exact:
        return exact[0]
    matches = [m for m in snaps if m.snapshot.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise SnapshotNotFound(
            f"no snapshot {ref!r} of job {series!r} by host {host!r} on {dest.describe()}"
        )
    raise SnapshotNotFound(
        f"{ref!r} matches {len(matches)} snapshots of job {series!r}: "
        + ", ".join(m.snapshot for m in matches[:5])
    )


def next_in_series(
    dests: list[Destination], job: str, snapshot: str, host: str | None = None
) -> tuple[int, str | None]:
    """The sequence number and predecessor of a new snapshot of ``job``: one after the
    highest any destination holds (a counter the snapshots carry, so a clock set back
    cannot make the newest snapshot sort oldest)."""
    best: Manifest | None = None
    for d in dests:
        for m in list_snapshots(d, job, host).complete:
            if m.snapshot != snapshot and (best is None or order_key(m) > order_key(best)):
                best = m
    if best is None:
        return 1, None
    return (best.sequence or _legacy_count(dests, job, host)) + 1, best.snapshot


def _legacy_count(dests: list[Destination], job: str, host: str | None) -> int:
    """Snapshots made before there were sequence numbers are numbered by their count."""
    return max((len(list_snapshots(d, job, host).complete) for d in dests), default=0)
