"""``odctl snapshots JOB``: a job's complete snapshots per destination, with each
destination's free space. Asked of the daemon when it runs and the command names no other
configuration or host (the daemon can read destinations the caller cannot), else read
from the destinations here; both give the same rows (odbackupd/jobview.py)."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from odbackupd.bus.names import EXIT_OK
from odbackupd.jobview import listing_row, snapshot_entry

from .. import offline, render
from ..dispatch import declare
from ..errors import CliError

HEADERS = ["SNAPSHOT", "TIME", "HOST", "KIND", "FILES", "SIZE", "STORED", "VOLUMES", "STATUS"]


async def from_daemon(c: Any, args: argparse.Namespace) -> int:
    """The daemon's listing (ListSnapshots) in the offline listing's shape."""
    result: dict[str, dict] = {}
    for r in await c.call("ListSnapshots", "s", args.job) or []:
        if args.destination and r.get("destination") != args.destination:
            continue
        dest = result.setdefault(r.get("destination", "?"),
                                 {"snapshots": [], "incomplete": [], "unreadable": []})
        dest["snapshots"].append(listing_row(r, render.iso))
    return show(args, args.job, result)


def from_destinations(args: argparse.Namespace) -> int:
    from odbackupd.snapshot.catalog import list_snapshots

    cfg = offline.config(args)
    job, series = offline.job(cfg, args.job)
    names = [args.destination] if args.destination else list(job.destinations)
    result = {}
    for name in names:
        d = offline.destination(cfg, job, name)
        try:
            listing = list_snapshots(d, series, offline.host(args, cfg))
        finally:
            d.close()
        result[name] = {
            "snapshots": [listing_row(snapshot_entry(m, name), render.iso)
                          for m in listing.complete],
            "incomplete": listing.incomplete,
            "unowned_incomplete": listing.legacy_incomplete,
            "unreadable": [{"folder": f, "problem": p} for f, p in listing.unreadable],
        }
    return show(args, series, result)


def _space(args: argparse.Namespace, names: Sequence[str]) -> dict[str, dict | None]:
    """Each destination's space (OneDrive: with its recycle bin), asked of the destination
    itself; None where it does not say or this user cannot ask (no access to the tokens)."""
    from odbackupd.destinations.base import DestinationError

    try:
        cfg = offline.config(args)
        job, _ = offline.job(cfg, args.job)
    except CliError:
        return {}
    out: dict[str, dict | None] = {}
    for name in names:
        try:
            d = offline.destination(cfg, job, name)
        except (CliError, DestinationError, OSError):
            out[name] = None
            continue
        try:
            out[name] = d.space()
        except (DestinationError, OSError):
            out[name] = None
        finally:
            d.close()
    return out


def _kind_cell(s: dict) -> str:
    """"full", or "incr <base>": the chain reads down the table."""
    if s.get("kind") == "incremental":
        return f"incr <- {s.get('base') or '?'}"
    return s.get("kind") or "full"


def _cells(s: dict) -> list[str]:
    return [s["snapshot"], s["time"], s.get("host", "-"), _kind_cell(s), str(s["files"]),
            render.size(s["data_bytes"]), render.size(s["stored_bytes"]), str(s["volumes"]),
            s["status"]]


def show(args: argparse.Namespace, job_name: str, result: dict[str, dict]) -> int:
    for name, space in _space(args, list(result)).items():
        result[name]["space"] = space
    if args.json:
        render.out_json({"job": job_name, "destinations": result})
        return EXIT_OK
    for name, r in result.items():
        if len(result) > 1 and not args.quiet:
            print(f"{name}:")
        sp = r.get("space")
        if sp and not args.quiet:
            line = f"{name}: {render.size(sp['remaining'])} free of {render.size(sp['total'])}"
            if "deleted" in sp:
                line += f", {render.size(sp['deleted'])} of it held by the recycle bin"
            print(line, file=sys.stderr)
        render.table(HEADERS, [_cells(s) for s in r["snapshots"]])
        if r["incomplete"] and not args.quiet:
            print("incomplete (not restorable; the next run resumes or removes it): "
                  f"{', '.join(r['incomplete'])}", file=sys.stderr)
        if r.get("unowned_incomplete") and not args.quiet:
            print("incomplete in the shared layout before 0.2 (no host on record, left alone; "
                  "delete by hand once no server is uploading there): "
                  f"{', '.join(r['unowned_incomplete'])}", file=sys.stderr)
        for u in r["unreadable"]:
            print(f"warning: {u['folder']}: {u['problem']}", file=sys.stderr)
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("snapshots", parents=[common], help="list a job's complete snapshots")
    p.add_argument("job", metavar="JOB", help=offline.SERIES_HELP)
    p.add_argument("--destination", "-d", metavar="NAME", help="only this destination")
    p.add_argument("--host", metavar="HOST", help=offline.HOST_HELP)
    declare(p, daemon=from_daemon, offline=from_destinations, local_options=("config", "host"))
