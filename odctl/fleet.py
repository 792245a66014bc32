"""``odctl fleet-status``: every host's newest snapshot of every series, read from the
destination alone (read-only: a monitoring machine with a read-only login will do).

Layout: ``<root>/<host>/<series>/<snapshot>/`` (and the layout before 0.2,
``<root>/<series>/<snapshot>/``, whose manifests name their host). Per host and series it
reads only the newest complete snapshot's manifest (newest first until one has a
manifest), so fifty hosts cost a few requests each. A series is STALE when its newest
snapshot is older than ``--max-age``, or else than twice the interval of the schedule
this machine's configuration gives a job of that name (fleets share their drop-ins).
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from odbackupd.snapshot.catalog import SNAPSHOT_ID_RE, manifest_in
from odbackupd.snapshot.manifest import Manifest


@dataclass
class SeriesStatus:
    host: str
    series: str
    snapshots: int  # snapshot folders (complete or not)
    newest: Manifest | None
    max_age: float | None

    def row(self, destination: str, now: float) -> dict[str, Any]:
        m = self.newest
        age = now - m.finished if m else None
        out: dict[str, Any] = {"destination": destination, "host": self.host, "series": self.series,
                               "snapshots": self.snapshots}
        if m is not None:
            out.update(snapshot=m.snapshot, finished=m.finished, age_seconds=round(age, 1),
                       stored_bytes=m.stored_bytes, kind=m.kind, encrypted=m.encrypted)
        if self.max_age is not None:
            out["max_age_seconds"] = self.max_age
        out["stale"] = self.max_age is not None and (age is None or age > self.max_age)
        return out


def _newest(dest: Any, folder: str, names: list[str]) -> Manifest | None:
    """The newest complete snapshot among ``names``: ids sort by their start second
    (``20261204T023000Z-…``), so only the newest second that has one is read."""
    by_second: dict[str, list[str]] = {}
    for name in names:
        by_second.setdefault(name[:16], []).append(name)
    for second in sorted(by_second, reverse=True):
        found = [m for name in by_second[second]
                 if (m := _manifest(dest, folder, name)) is not None]
        if found:
            return max(found, key=lambda m: (m.started, m.snapshot))
    return None


def _manifest(dest: Any, folder: str, name: str) -> Manifest | None:
    """The manifest of ``folder/name``; None when there is none (in progress, interrupted)
    or it does not read (catalog.manifest_in: on OneDrive without listing the folder)."""
    m = manifest_in(dest, folder, name)
    return m if isinstance(m, Manifest) else None


def scan(dest: Any, max_age: Callable[[str], float | None]) -> list[SeriesStatus]:
    """Every (host, series) on ``dest`` with its newest complete snapshot."""
    found: dict[tuple[str, str], SeriesStatus] = {}

    def note(host: str, series: str, count: int, m: Manifest | None) -> None:
        st = found.setdefault((host, series), SeriesStatus(host, series, 0, None, max_age(series)))
        st.snapshots += count
        if m is not None and (st.newest is None or (m.started, m.snapshot)
                              > (st.newest.started, st.newest.snapshot)):
            st.newest = m

    for top in dest.list_root():
        children = dest.list_snapshot_dirs(top)
        legacy = [c for c in children if SNAPSHOT_ID_RE.fullmatch(c)]
        for name in legacy:  # the layout before 0.2: the manifest says whose it is
            m = _manifest(dest, top, name)
            if m is not None:
                note(m.host, top, 1, m)
        for series in (c for c in children if not SNAPSHOT_ID_RE.fullmatch(c)):
            folder = f"{top}/{series}"
            snaps = [n for n in dest.list_snapshot_dirs(folder) if SNAPSHOT_ID_RE.fullmatch(n)]
            note(top, series, len(snaps), _newest(dest, folder, snaps))
    return sorted(found.values(), key=lambda s: (s.host, s.series))


def allowed_age(config: Any, override: float | None) -> Callable[[str], float | None]:
    from odbackupd import metrics

    series = metrics.configured_series(config)

    def age(name: str) -> float | None:
        if override is not None:
            return override
        job = series.get(name)
        if job is None or not job.schedule or name != job.name:
            return None
        return 2 * metrics.schedule_interval(job.schedule, job.random_delay)

    return age


def destinations(config: Any, name: str | None) -> list[str]:
    if name is not None:
        if name not in config.destinations:
            known = ", ".join(sorted(config.destinations))
            raise LookupError(f"no destination {name!r} (destinations: {known})")
        return [name]
    used = sorted({d for j in config.jobs.values() for d in j.destinations})
    return used or sorted(config.destinations)


def command(args: argparse.Namespace, cfg: Any, open_state: Callable[[Any], Any]) -> int:
    """``odctl fleet-status``; raises ValueError (a bad --max-age) or LookupError."""
    from odbackupd.bus.names import EXIT_FAILED, EXIT_OK
    from odbackupd.config import parse_duration
    from odbackupd.destinations.factory import open_destination

    from . import render

    try:
        limit = parse_duration(args.max_age) if args.max_age is not None else None
    except ValueError as e:
        raise ValueError(f"--max-age {args.max_age}: {e}") from e
    names = destinations(cfg, args.destination)
    now, rows = time.time(), []
    for name in names:
        d = open_destination(cfg, name, open_state(cfg))
        try:
            rows += [s.row(name, now) for s in scan(d, allowed_age(cfg, limit))]
        finally:
            d.close()
    if args.json:
        render.out_json({"destinations": names, "series": rows})
    else:
        render.table(HEADERS, [_cells(r) for r in rows if not args.quiet or r["stale"]])
    return EXIT_FAILED if any(r["stale"] for r in rows) else EXIT_OK


HEADERS = ["DESTINATION", "HOST", "SERIES", "LAST SNAPSHOT", "AGE", "SIZE", "KIND", "SNAPSHOTS",
           "STATUS"]


def _cells(r: dict[str, Any]) -> list[str]:
    from . import render

    status = "STALE" if r["stale"] else ("ok" if "max_age_seconds" in r else "-")
    return [r["destination"], r["host"], r["series"], r.get("snapshot", "-"),
            render.age(r["age_seconds"]) if "age_seconds" in r else "-",
            render.size(r["stored_bytes"]) if "stored_bytes" in r else "-", r.get("kind", "-"),
            str(r["snapshots"]), status]


def fleet_status(args: argparse.Namespace) -> int:
    from odbackupd.bus.names import EXIT_NOT_FOUND, EXIT_USAGE

    from . import offline
    from .errors import CliError

    try:
        return command(args, offline.config(args), offline.state)
    except ValueError as e:
        raise CliError(str(e), EXIT_USAGE) from e
    except LookupError as e:
        raise CliError(str(e.args[0]), EXIT_NOT_FOUND) from e


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    from .dispatch import declare

    p = sub.add_parser("fleet-status", parents=[common],
                       help="every host's newest snapshots on a destination, and which are overdue",
                       description="Read-only, from the destination alone: per host and series the "
                       "newest complete snapshot, its age, size and kind. Exit status 1 when a "
                       "series is STALE (older than --max-age, or twice its schedule here).")
    p.add_argument("--destination", "-d", metavar="NAME",
                   help="only this [destination.NAME] (default: those the jobs use)")
    p.add_argument("--max-age", metavar="DURATION", default=None,
                   help='flag snapshots older than this, e.g. "26h" (default: twice the schedule '
                   "interval of a job of the same name in this configuration)")
    declare(p, offline=fleet_status)
