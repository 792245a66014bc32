"""odctl: the command-line client.

Offline commands (snapshots, restore, verify, prune, config) work in this process with the
library modules, straight against the destinations; they need no running daemon.
Results go to stdout (human tables, or ``--json``), diagnostics to stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from odbackupd import __version__

from . import render

# documented exit codes (odctl(1))
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_INTEGRITY = 4


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def _config(args: argparse.Namespace):  # noqa: ANN202
    from odbackupd.config import ConfigError
    from odbackupd.main import load

    try:
        return load(args.config, explicit=args.config is not None)
    except ConfigError as e:
        raise CliError(str(e), EXIT_USAGE) from e


def _job(config, name: str):  # noqa: ANN001, ANN202
    if name not in config.jobs:
        known = ", ".join(sorted(config.jobs)) or "none configured"
        raise CliError(f"no job {name!r} (jobs: {known})", EXIT_NOT_FOUND)
    return config.jobs[name]


def _destination(config, job, name: str | None):  # noqa: ANN001, ANN202
    from odbackupd.destinations.factory import open_destination

    if name is None:
        name = job.destinations[0]
    elif name not in job.destinations:
        raise CliError(f"job {job.name!r} does not go to destination {name!r} "
                       f"(it goes to: {', '.join(job.destinations)})", EXIT_USAGE)
    return open_destination(config, name, _state(config))


def _state(config):  # noqa: ANN001, ANN202
    """The state database, when this user may read it (tokens live there for OneDrive)."""
    from odbackupd.state import StateStore

    p = config.daemon.state_dir / "state.db"
    if p.exists() and os.access(p, os.R_OK | os.W_OK):
        return StateStore(p)
    return None


def _identities(paths: Sequence[Path]) -> list:
    from odbackupd.crypto.age import AgeError, load_identities

    out = []
    for p in paths:
        try:
            out.extend(load_identities(p))
        except (AgeError, OSError) as e:
            raise CliError(f"--identity {p}: {e}", EXIT_USAGE) from e
    return out


def _manifest_row(m) -> dict[str, Any]:  # noqa: ANN001
    return {
        "snapshot": m.snapshot,
        "time": render.iso(m.started),
        "host": m.host,
        "kind": m.kind,
        "files": m.files,
        "data_bytes": m.data_bytes,
        "stored_bytes": m.stored_bytes,
        "volumes": len(m.volumes),
        "encrypted": m.encrypted,
        "status": "completed with warnings" if m.warnings else "completed",
        "warnings": m.warnings,
    }


# -- commands ------------------------------------------------------------------------------------
def cmd_config_check(args: argparse.Namespace) -> int:
    from odbackupd.config import ConfigError
    from odbackupd.main import load

    try:
        cfg = load(args.config, check_sources=True, explicit=args.config is not None)
    except ConfigError as e:
        if args.json:
            render.out_json({"ok": False, "problems": [str(p) for p in e.problems]})
        else:
            print(str(e), file=sys.stderr)
        return EXIT_USAGE
    where = str(cfg.path) if cfg.path else "embedded default"
    if args.json:
        render.out_json({"ok": True, "path": where, "jobs": sorted(cfg.jobs),
                         "destinations": sorted(cfg.destinations), "warnings": list(cfg.warnings)})
    elif not args.quiet:
        for w in cfg.warnings:
            print(f"warning: {w}", file=sys.stderr)
        print(f"{where}: OK ({len(cfg.jobs)} jobs, {len(cfg.destinations)} destinations)")
    return EXIT_OK


def cmd_config_sample(args: argparse.Namespace) -> int:
    from odbackupd.config import sample_config

    sys.stdout.write(sample_config())
    return EXIT_OK


def cmd_snapshots(args: argparse.Namespace) -> int:
    from odbackupd.snapshot.catalog import list_snapshots

    cfg = _config(args)
    job = _job(cfg, args.job)
    names = [args.destination] if args.destination else list(job.destinations)
    result = {}
    for name in names:
        d = _destination(cfg, job, name)
        try:
            listing = list_snapshots(d, job.name)
        finally:
            d.close()
        result[name] = {
            "snapshots": [_manifest_row(m) for m in listing.complete],
            "incomplete": listing.incomplete,
            "unreadable": [{"folder": f, "problem": p} for f, p in listing.unreadable],
        }
    if args.json:
        render.out_json({"job": job.name, "destinations": result})
        return EXIT_OK
    for name, r in result.items():
        if len(result) > 1 and not args.quiet:
            print(f"{name}:")
        rows = [[s["snapshot"], s["time"], s["host"], str(s["files"]), render.size(s["data_bytes"]),
                 render.size(s["stored_bytes"]), str(s["volumes"]), s["status"]] for s in r["snapshots"]]
        render.table(["SNAPSHOT", "TIME", "HOST", "FILES", "SIZE", "STORED", "VOLUMES", "STATUS"], rows)
        if r["incomplete"] and not args.quiet:
            print(f"incomplete (not restorable, removed by the next run): {', '.join(r['incomplete'])}",
                  file=sys.stderr)
        for u in r["unreadable"]:
            print(f"warning: {u['folder']}: {u['problem']}", file=sys.stderr)
    return EXIT_OK


def _find(d, job, ref):  # noqa: ANN001, ANN202
    from odbackupd.snapshot.catalog import SnapshotNotFound, find_snapshot

    try:
        return find_snapshot(d, job.name, ref)
    except SnapshotNotFound as e:
        raise CliError(str(e), EXIT_NOT_FOUND) from e


def cmd_restore(args: argparse.Namespace) -> int:
    from odbackupd.destinations.base import DestinationError
    from odbackupd.snapshot.restore import IntegrityError, RestoreError, restore_snapshot

    cfg = _config(args)
    job = _job(cfg, args.job)
    ids = _identities(args.identity)
    d = _destination(cfg, job, args.destination)
    try:
        m = _find(d, job, args.snapshot)
        if m.encrypted and not ids:
            raise CliError(f"snapshot {m.snapshot} is encrypted: give the age identity with --identity FILE",
                           EXIT_USAGE)
        bar = render.Progress(f"restore {m.snapshot}", enabled=not args.quiet and not args.json)
        t0 = time.monotonic()
        try:
            stats = restore_snapshot(d, m, args.to, identities=ids, paths=args.path,
                                     on_progress=bar.update if bar.enabled else None)
        except IntegrityError as e:
            raise CliError(f"restore of {m.snapshot} failed, the stored data is damaged: {e}",
                           EXIT_INTEGRITY) from e
        except (RestoreError, DestinationError) as e:
            raise CliError(f"restore of {m.snapshot} failed: {e}") from e
        finally:
            bar.close()
    finally:
        d.close()
    took = time.monotonic() - t0
    out = {"snapshot": m.snapshot, "to": str(args.to), "files": stats.files, "dirs": stats.dirs,
           "links": stats.links, "others": stats.others, "bytes": stats.bytes,
           "seconds": round(took, 3), "refused": stats.refused, "warnings": stats.warnings}
    if args.json:
        render.out_json(out)
    else:
        for w in stats.warnings:
            print(f"warning: {w}", file=sys.stderr)
        if not args.quiet:
            print(f"restored {m.snapshot} to {args.to}: {stats.files} files, {stats.dirs} directories, "
                  f"{render.size(stats.bytes)} in {took:.1f}s")
    return EXIT_INTEGRITY if stats.refused else EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from odbackupd.snapshot.catalog import list_snapshots
    from odbackupd.snapshot.restore import verify_snapshot

    cfg = _config(args)
    job = _job(cfg, args.job)
    ids = _identities(args.identity)
    names = [args.destination] if args.destination else list(job.destinations)
    reports = []
    for name in names:
        d = _destination(cfg, job, name)
        try:
            if args.snapshot == "all":
                manifests = list_snapshots(d, job.name).complete
            else:
                manifests = [_find(d, job, args.snapshot)]
            for m in manifests:
                rep = verify_snapshot(d, m, download=args.download, identities=ids)
                reports.append({"destination": name, "snapshot": m.snapshot, "ok": rep.ok,
                                "volumes": rep.volumes, "bytes": rep.bytes, "method": rep.method,
                                "problems": rep.problems})
        finally:
            d.close()
    ok = all(r["ok"] for r in reports)
    if args.json:
        render.out_json({"ok": ok, "reports": reports})
    else:
        for r in reports:
            state = "OK" if r["ok"] else "DAMAGED"
            if not args.quiet or not r["ok"]:
                print(f"{r['destination']}: {r['snapshot']}: {state} ({r['volumes']} volumes, "
                      f"{render.size(r['bytes'])}, {r['method']})")
            for p in r["problems"]:
                print(f"  {p}", file=sys.stderr)
    return EXIT_OK if ok else EXIT_INTEGRITY


def cmd_prune(args: argparse.Namespace) -> int:
    from odbackupd.runner import prune_job

    cfg = _config(args)
    job = _job(cfg, args.job)
    plans = prune_job(cfg, job.name, None, dry_run=args.dry_run)
    if args.json:
        render.out_json({"dry_run": args.dry_run, "destinations": {
            n: {"keep": [m.snapshot for m in p.keep], "delete": [m.snapshot for m in p.delete],
                "reasons": p.reasons} for n, p in plans.items()}})
        return EXIT_OK
    verb = "would delete" if args.dry_run else "deleted"
    for n, p in plans.items():
        rows = [[m.snapshot, render.iso(m.started), render.size(m.stored_bytes),
                 "keep" if m in p.keep else verb, ", ".join(p.reasons.get(m.snapshot, []))]
                for m in p.keep + p.delete]
        rows.sort()
        if not args.quiet:
            print(f"{n}:")
        render.table(["SNAPSHOT", "TIME", "STORED", "ACTION", "WHY"], rows)
    return EXIT_OK


# -- parser ------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS, metavar="PATH",
                        help="configuration file (default /etc/odbackupd/odbackupd.toml)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output on stdout")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="print only problems")

    ap = argparse.ArgumentParser(prog="odctl", parents=[common],
                                 description="Control odbackupd and work with its snapshots.")
    ap.add_argument("--version", action="version", version=f"odctl {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("config", parents=[common], help="check or generate the configuration")
    csub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    csub.add_parser("check", parents=[common], help="validate the configuration").set_defaults(func=cmd_config_check)
    csub.add_parser("sample", parents=[common], help="print a commented sample configuration").set_defaults(
        func=cmd_config_sample)

    p = sub.add_parser("snapshots", parents=[common], help="list a job's complete snapshots")
    p.add_argument("job")
    p.add_argument("--destination", "-d", help="only this destination")
    p.set_defaults(func=cmd_snapshots)

    p = sub.add_parser("restore", parents=[common], help="restore a snapshot into a directory")
    p.add_argument("job")
    p.add_argument("snapshot", nargs="?", default="latest", help="snapshot id, unique prefix, or 'latest'")
    p.add_argument("--to", type=Path, required=True, metavar="DIR", help="directory to restore into")
    p.add_argument("--path", action="append", default=[], metavar="P",
                   help="restore only this path (as archived, e.g. etc/ssh); repeatable")
    p.add_argument("--identity", "-i", action="append", type=Path, default=[], metavar="FILE",
                   help="age identity file for encrypted snapshots; repeatable")
    p.add_argument("--destination", "-d", help="restore from this destination (default: the job's first)")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("verify", parents=[common], help="check a snapshot's volumes against its manifest")
    p.add_argument("job")
    p.add_argument("snapshot", nargs="?", default="latest", help="snapshot id, prefix, 'latest' or 'all'")
    p.add_argument("--download", action="store_true", help="read everything back (and decrypt with --identity)")
    p.add_argument("--identity", "-i", action="append", type=Path, default=[], metavar="FILE")
    p.add_argument("--destination", "-d")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("prune", parents=[common], help="apply the job's retention rules now")
    p.add_argument("job")
    p.add_argument("--dry-run", "-n", action="store_true", help="show what would be deleted")
    p.set_defaults(func=cmd_prune)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    for name, default in (("config", None), ("json", False), ("quiet", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    try:
        return args.func(args)
    except CliError as e:
        if args.json:
            render.out_json({"ok": False, "error": str(e)})
        print(f"odctl: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("odctl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
