"""``odctl prune JOB [--dry-run]``: the job's retention rules, applied now in this process
(odbackupd.runner.prune_job: the same code a run ends with)."""
from __future__ import annotations

import argparse
from typing import Any

from odbackupd.bus.names import EXIT_OK

from .. import monitoring, offline, render
from ..dispatch import declare


def prune(args: argparse.Namespace) -> int:
    from odbackupd.runner import prune_job
    from odbackupd.snapshot.manifest import order_key

    cfg = offline.config(args)
    job, series = offline.job(cfg, args.job)
    plans = prune_job(cfg, job.name, None, dry_run=args.dry_run, series=series)
    if not args.dry_run:
        monitoring.after_prune(cfg, offline.state(cfg), series, plans)
    if args.json:
        render.out_json({"dry_run": args.dry_run, "destinations": {
            n: {"keep": [m.snapshot for m in p.keep], "delete": [m.snapshot for m in p.delete],
                "deferred": [m.snapshot for m in p.deferred], "reasons": p.reasons}
            for n, p in plans.items()}})
        return EXIT_OK
    verb = "would delete" if args.dry_run else "deleted"
    for n, p in plans.items():
        rows = [[m.snapshot, render.iso(m.started), render.size(m.stored_bytes),
                 "keep" if m in p.keep else "deferred (being read)" if m in p.deferred else verb,
                 ", ".join(p.reasons.get(m.snapshot, []))]
                for m in sorted(p.keep + p.delete + p.deferred, key=order_key)]  # series order
        if not args.quiet:
            print(f"{n}:")
        render.table(["SNAPSHOT", "TIME", "STORED", "ACTION", "WHY"], rows)
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("prune", parents=[common], help="apply the job's retention rules now")
    p.add_argument("job", metavar="JOB", help=offline.SERIES_HELP)
    p.add_argument("--dry-run", "-n", action="store_true", help="show what would be deleted")
    declare(p, offline=prune)
