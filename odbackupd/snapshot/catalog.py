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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ..destinations.base import MANIFEST_NAME, Destination, DestinationError, NotLoggedIn
from .manifest import Manifest, ManifestError, order_key

log = logging.getLogger("odbackupd.snapshot")
T = TypeVar("T")

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


def manifest_in(dest: Destination, folder: str, name: str) -> Manifest | str | None:
    """The manifest in ``folder/name``; None without one; the problem as text if unreadable.

    A destination with ``read_manifest(folder, snapshot) -> bytes | None`` reads it straight
    away (OneDrive: two requests, no listing of the folder first); on another the folder's
    listing says whether there is one."""
    direct = getattr(dest, "read_manifest", None)
    if direct is None and MANIFEST_NAME not in dest.list_objects(folder, name):
        return None
    try:
        data = direct(folder, name) if direct else dest.read_bytes(folder, name, MANIFEST_NAME)
        if data is None:
            return None
        m = Manifest.loads(data)
    except NotLoggedIn:
        raise  # not a damaged manifest: nothing of the series can be read
    except (ManifestError, DestinationError) as e:
        return str(e)
    m.folder = folder
    return m


# manifests read at once from a network destination (each read is two round trips)
PARALLEL_READS = 4


def _each(dest: Destination, calls: list[Callable[[], T]]) -> list[T]:
    """The results of ``calls`` in order: more than two run side by side on a destination
    that serves requests in parallel (``capabilities.parallel_uploads``: a network service),
    else one after the other (a second connection's handshakes cost more than waiting for
    one answer). The first error is raised once every call has ended."""
    if len(calls) <= 2 or not getattr(dest.capabilities, "parallel_uploads", False):
        return [c() for c in calls]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(PARALLEL_READS, len(calls)),
                            thread_name_prefix="catalog") as pool:
        futures = [pool.submit(c) for c in calls]
    return [f.result() for f in futures]


def list_snapshots(dest: Destination, series: str, host: str | None = None) -> Listing:
    """``host``'s snapshots of ``series`` on ``dest``: its per-host folder, plus those of the
    old shared layout whose manifest names ``host``. ``host`` None: this machine's host name
    (the default of ``[daemon] hostname``; the daemon and odctl always pass the configured one).

    Costs the two folder listings and one manifest read per snapshot folder (on OneDrive two
    requests each), ``PARALLEL_READS`` at a time on a network destination."""
    return Series(dest, series, host).listing()


class Series:
    """``host``'s series on ``dest``, read only as far as a command needs: the two folder
    listings, then the manifests of the folders asked for (``listing()``: every one, as
    :func:`list_snapshots`; ``some(wanted)``: those whose name passes; ``get(id)``: one).
    Each folder's manifest is read once. What counts as complete is the same either way."""

    def __init__(self, dest: Destination, series: str, host: str | None = None) -> None:
        self.dest, self.series = dest, series
        self.host = host or socket.gethostname()
        self.own = series_folder(self.host, series)
        self._names: tuple[list[str], list[str]] | None = None
        self._read: dict[tuple[str, str], Manifest | str | None] = {}
        self._listing: Listing | None = None

    def names(self) -> tuple[list[str], list[str]]:
        """The snapshot folders' names: this host's, and the old layout's."""
        if self._names is None:
            own, old = _each(self.dest, [lambda: self.dest.list_snapshot_dirs(self.own),
                                         lambda: self.dest.list_snapshot_dirs(self.series)])
            # in the old layout's series folder a name of another shape is a host's folder
            self._names = own, [n for n in old if SNAPSHOT_ID_RE.fullmatch(n)]
        return self._names

    def some(self, wanted: Callable[[str], bool]) -> Listing:
        """The Listing of the folders whose name ``wanted`` takes (their manifests only)."""
        own, old = self.names()
        pairs = [(self.own, n) for n in own if wanted(n)] + \
            [(self.series, n) for n in old if wanted(n)]
        todo = [p for p in pairs if p not in self._read]
        for p, m in zip(todo, _each(self.dest, [(lambda f=f, n=n: manifest_in(self.dest, f, n))
                                                 for f, n in todo]), strict=True):
            self._read[p] = m
        return _sort(self.host, self.series,
                     [(n, self._read[f, n]) for f, n in pairs if f == self.own],
                     [(n, self._read[f, n]) for f, n in pairs if f != self.own])

    def listing(self) -> Listing:
        if self._listing is None:
            self._listing = self.some(lambda name: True)
        return self._listing

    def get(self, snapshot: str) -> Manifest | None:
        """The complete snapshot ``snapshot`` (None: not there, or not complete)."""
        found = (self._listing or self.some(lambda name: name == snapshot)).complete
        return next((m for m in reversed(found) if m.snapshot == snapshot), None)

    def bases(self) -> dict[str, Manifest]:
        """For ``incchain.chain_of``: each base read by its id when the chain asks for it."""
        return _Bases(self)


class _Bases(dict):
    """``chain_of``'s snapshots by id, each read when first looked up (``Series.get``)."""

    def __init__(self, series: Series) -> None:
        super().__init__()
        self._series = series

    def get(  # type: ignore[override]
        self, key: str, default: Manifest | None = None
    ) -> Manifest | None:
        if key not in self:
            self[key] = self._series.get(key)
        return dict.get(self, key) or default


def _sort(host: str, series: str, own: list[tuple[str, Manifest | str | None]],
          old: list[tuple[str, Manifest | str | None]]) -> Listing:
    """The Listing of what was read: (folder name, what ``manifest_in`` made of it) per layout."""
    complete: list[Manifest] = []
    incomplete: list[str] = []
    legacy_incomplete: list[str] = []
    bad: list[tuple[str, str]] = []
    for name, m in own:
        if m is None:
            incomplete.append(name)
        elif isinstance(m, str):
            bad.append((name, m))
        elif m.snapshot != name or m.job != series or m.host != host:
            bad.append((name, f"manifest names {m.host}/{m.job}/{m.snapshot}"))
        else:
            complete.append(m)
    for name, m in old:
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
                  listing: Listing | Series | None = None) -> Manifest:
    """``ref``: a snapshot id, a unique prefix of one, or ``latest``/None; ``listing``: the
    series' listing when the caller has it already (one listing costs requests per snapshot),
    or its :class:`Series`: then an id or prefix reads only the manifests of the folders
    whose name starts with it ('latest' still reads every one: the order is the sequence the
    manifests carry, never the folder names' clock)."""
    host = host or socket.gethostname()
    if listing is None:
        listing = Series(dest, series, host)
    if isinstance(listing, Series):
        if ref not in (None, "", "latest"):
            some = listing.some(lambda name: name.startswith(ref))
            if some.complete:  # else the full listing says which error it is
                return _find(dest, series, ref, host, some)
        listing = listing.listing()
    return _find(dest, series, ref, host, listing)


def _find(dest: Destination, series: str, ref: str | None, host: str,
          listing: Listing) -> Manifest:
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
