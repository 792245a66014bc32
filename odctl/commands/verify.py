"""``odctl verify JOB [SNAPSHOT|all] [--download]``: each snapshot's volumes against its
manifest (an incremental: its whole chain), in this process. A damaged or untrusted
snapshot is reported and makes exit 4; the result goes to the metrics and notifiers
(odctl/monitoring.py)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from odbackupd.bus.names import EXIT_INTEGRITY, EXIT_OK, EXIT_USAGE

from .. import lease, monitoring, offline, render, trust
from ..dispatch import declare
from ..errors import CliError


def _damaged(dest: str, snapshot: str, method: str, problem: str) -> dict:
    return {"destination": dest, "snapshot": snapshot, "ok": False, "volumes": 0, "bytes": 0,
            "index": False, "method": method, "problems": [problem]}


def _verify_one(d: Any, name: str, args: argparse.Namespace, cfg: Any, series: str,
                policy: Any, ids: list) -> list[dict]:
    """The reports of one destination."""
    from odbackupd.snapshot.catalog import list_snapshots
    from odbackupd.snapshot.chainrestore import verify_chain
    from odbackupd.snapshot.restore import WrongIdentity

    reports = []
    host = offline.host(args, cfg)
    found = list_snapshots(d, series, host)
    listing = found.complete
    if args.snapshot == "all":
        manifests = listing
        # a snapshot folder whose manifest does not read is damaged, not silently skipped
        reports += [_damaged(name, folder, "manifest", f"manifest: {problem}")
                    for folder, problem in found.unreadable]
    else:
        try:
            manifests = [offline.find(d, series, args.snapshot, host, "verify", found)]
        except CliError as e:
            if e.code != EXIT_INTEGRITY:
                raise
            reports.append(_damaged(name, args.snapshot, "manifest", str(e)))
            manifests = []
    seen: set[str] = set()
    for m in manifests:
        try:
            authentic = trust.check(m, policy)
        except CliError as e:  # untrusted: reported like a damaged snapshot, exit 4
            reports.append(_damaged(name, m.snapshot, "manifest checked", str(e)))
            continue
        try:
            with lease.reading(cfg, d, series, m, args.quiet):
                # an incremental is only as good as its chain: every base is checked too
                reps = verify_chain(d, m, listing, download=args.download, identities=ids)
        except WrongIdentity as e:
            raise CliError(str(e), EXIT_USAGE) from e
        for rep in reps:
            if rep.snapshot in seen and rep.ok:
                continue
            seen.add(rep.snapshot)
            reports.append({"destination": name, "snapshot": rep.snapshot, "ok": rep.ok,
                            "volumes": rep.volumes, "index": rep.index, "bytes": rep.bytes,
                            "method": rep.method
                            + ("; signed by the trusted key" if authentic else ""),
                            "problems": rep.problems})
    return reports


def verify(args: argparse.Namespace) -> int:
    cfg = offline.config(args)
    job, series = offline.job(cfg, args.job)
    ids = offline.identities(args.identity)
    policy = trust.policy(args, job)
    names = [args.destination] if args.destination else list(job.destinations)
    reports = []
    for name in names:
        d = offline.destination(cfg, job, name)
        try:
            reports += _verify_one(d, name, args, cfg, series, policy, ids)
        finally:
            d.close()
    ok = all(r["ok"] for r in reports)
    monitoring.after_verify(cfg, offline.state(cfg), job, series, reports)
    if args.json:
        render.out_json({"ok": ok, "reports": reports})
    else:
        from odbackupd.config.units import plural

        for r in reports:
            state = "OK" if r["ok"] else "DAMAGED"
            if not args.quiet or not r["ok"]:
                what = plural(r["volumes"], "volume") + (" and the index" if r["index"] else "")
                print(f"{r['destination']}: {r['snapshot']}: {state} ({what}, "
                      f"{render.size(r['bytes'])}, {r['method']})")
            for p in r["problems"]:
                print(f"  {p}", file=sys.stderr)
    return EXIT_OK if ok else EXIT_INTEGRITY


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("verify", parents=[common],
                       help="check a snapshot's volumes against its manifest "
                            "(an incremental: its whole chain)")
    p.add_argument("job", metavar="JOB", help=offline.SERIES_HELP)
    p.add_argument("snapshot", nargs="?", default="latest", metavar="SNAPSHOT",
                   help="snapshot id, prefix, 'latest' or 'all'")
    p.add_argument("--download", action="store_true",
                   help="read everything back (and decrypt with --identity)")
    p.add_argument("--identity", "-i", action="append", type=Path, default=[], metavar="FILE",
                   help="age identity file, to decrypt with --download; repeatable")
    p.add_argument("--destination", "-d", metavar="NAME",
                   help="only this destination (default: all of the job's)")
    p.add_argument("--host", metavar="HOST", help=offline.HOST_HELP)
    trust.add_arguments(p)
    declare(p, offline=verify)
