"""odctl: the command-line client.

Daemon commands (status, jobs, backup-now, cancel, reload, login, logout) talk to odbackupd
over D-Bus only (odctl/client.py). Offline commands (snapshots, restore, verify, prune,
config) work in this process with the library modules, straight against the destinations;
they need no running daemon. ``jobs`` falls back to the configuration, ``login``/``logout``
to the in-process login (odctl/login.py), and ``snapshots`` asks the daemon only when no
``--config`` is given and the daemon runs (it can read destinations the caller cannot).
Results go to stdout (human tables, or ``--json``), diagnostics to stderr. Exit codes and
D-Bus error names are defined once, in odbackupd/bus/names.py.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Sequence

from odbackupd import __version__

from odbackupd.bus.names import (  # noqa: F401 - re-exported: odctl(1)'s exit codes
    EXIT_ACCESS_DENIED, EXIT_BUSY, EXIT_FAILED, EXIT_INTEGRITY, EXIT_NOT_FOUND,
    EXIT_NOT_LOGGED_IN, EXIT_NOT_RUNNING, EXIT_OK, EXIT_USAGE, exit_codes_epilog)

from . import fleet, lease, monitoring, render, trust
from .errors import CliError




def _config(args: argparse.Namespace):  # noqa: ANN202
    from odbackupd.config import ConfigError
    from odbackupd.main import load

    try:
        return load(args.config, explicit=args.config is not None)
    except ConfigError as e:
        raise CliError(str(e), EXIT_USAGE) from e


def _job(config, name: str):  # noqa: ANN001, ANN202
    """The job config and the snapshot series named on the command line: ``JOB``, or
    ``JOB+drop`` for the one-snapshot-per-file series of JOB's drop directory."""
    from odbackupd.runner import series_config

    job = series_config(config, name)
    if job is None:
        known = ", ".join(sorted(config.jobs)) or "none configured"
        raise CliError(f"no job {name!r} (jobs: {known})", EXIT_NOT_FOUND)
    return job, name


def _destination(config, job, name: str | None, state: bool = False):  # noqa: ANN001, ANN202
    """``state``: give the destination the state database (only prune needs it: it cancels
    the upload sessions of what it deletes); listing, restore and verify never open it."""
    from odbackupd.destinations.factory import open_destination

    if name is None:
        name = job.destinations[0]
    elif name not in job.destinations:
        raise CliError(f"job {job.name!r} does not go to destination {name!r} "
                       f"(it goes to: {', '.join(job.destinations)})", EXIT_USAGE)
    return open_destination(config, name, _state(config) if state else None)


def _state(config):  # noqa: ANN001, ANN202
    """The state database, when this user may read it and it opens (a damaged one is the
    daemon's to move aside; odctl goes on without it)."""
    import sqlite3

    from odbackupd.state import StateStore

    p = config.daemon.state_dir / "state.db"
    if p.exists() and os.access(p, os.R_OK | os.W_OK):
        try:
            return StateStore(p)
        except sqlite3.Error:
            return None
    return None


def _host(args: argparse.Namespace, config) -> str:  # noqa: ANN001
    """Whose snapshots to read: ``--host H`` (another server's, e.g. a dead one's on its
    replacement), else this machine's ``[daemon] hostname``."""
    host = getattr(args, "host", None)
    if host is None:
        return config.daemon.hostname
    from odbackupd.config.schema import _hostname

    try:
        return _hostname(host)
    except ValueError as e:
        raise CliError(f"--host: {e}", EXIT_USAGE) from e


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
    from odbackupd.signing import signed_by

    return {
        "snapshot": m.snapshot,
        "time": render.iso(m.started),
        "host": m.host,
        "kind": m.kind,
        "base": m.base,
        "changes": m.changes,
        "files": m.files,
        "data_bytes": m.data_bytes,
        "stored_bytes": m.stored_bytes,
        "volumes": len(m.volumes),
        "encrypted": m.encrypted,
        "sequence": m.sequence,
        "signed_by": signed_by(m.raw or {}) or "",  # the key's fingerprint, unchecked ("" unsigned)
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
        from odbackupd.config.units import plural

        print(f"{where}: OK ({plural(len(cfg.jobs), 'job')}, {plural(len(cfg.destinations), 'destination')})")
    return EXIT_OK


def cmd_config_sample(args: argparse.Namespace) -> int:
    from odbackupd.config import sample_config

    if args.json:
        render.out_json({"sample": sample_config()})
    else:
        sys.stdout.write(sample_config())
    return EXIT_OK


def cmd_snapshots(args: argparse.Namespace) -> int:
    if args.config is None and args.host is None and _daemon_available():
        job_name, result = _daemon_snapshots(args)
    else:
        job_name, result = _offline_snapshots(args)
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
        rows = [[s["snapshot"], s["time"], s.get("host", "-"), _kind_cell(s), str(s["files"]),
                 render.size(s["data_bytes"]), render.size(s["stored_bytes"]), str(s["volumes"]), s["status"]]
                for s in r["snapshots"]]
        render.table(["SNAPSHOT", "TIME", "HOST", "KIND", "FILES", "SIZE", "STORED", "VOLUMES", "STATUS"], rows)
        if r["incomplete"] and not args.quiet:
            print(f"incomplete (not restorable; the next run resumes or removes it): {', '.join(r['incomplete'])}",
                  file=sys.stderr)
        if r.get("unowned_incomplete") and not args.quiet:
            print("incomplete in the shared layout before 0.2 (no host on record, left alone; delete by "
                  f"hand once no server is uploading there): {', '.join(r['unowned_incomplete'])}",
                  file=sys.stderr)
        for u in r["unreadable"]:
            print(f"warning: {u['folder']}: {u['problem']}", file=sys.stderr)
    return EXIT_OK


def _kind_cell(s: dict) -> str:
    """"full", or "incr <base>": the chain reads down the table."""
    if s.get("kind") == "incremental":
        return f"incr <- {s.get('base') or '?'}"
    return s.get("kind") or "full"


def _daemon_snapshots(args: argparse.Namespace) -> tuple[str, dict]:
    """The daemon's listing (ListSnapshots) in the offline listing's shape."""
    rows = _daemon(lambda c: c.call("ListSnapshots", "s", args.job)) or []
    result: dict[str, dict] = {}
    for r in rows:
        if args.destination and r.get("destination") != args.destination:
            continue
        dest = result.setdefault(r.get("destination", "?"),
                                 {"snapshots": [], "incomplete": [], "unreadable": []})
        row = {"snapshot": r["id"], "time": render.iso(r.get("started", 0)), "files": r.get("files", 0),
               "data_bytes": r.get("data_bytes", 0), "stored_bytes": r.get("stored_bytes", 0),
               "volumes": r.get("volumes", 0),
               # the words the offline listing and the run results use (the daemon says "complete")
               "status": "completed with warnings" if r.get("warnings") else "completed"}
        row.update({k: r[k] for k in ("host", "kind", "encrypted", "warnings", "sequence", "signed_by") if k in r})
        row["kind"], row["base"] = r.get("kind", "full"), r.get("base") or None
        dest["snapshots"].append(row)
    return args.job, result


def _offline_snapshots(args: argparse.Namespace) -> tuple[str, dict]:
    from odbackupd.snapshot.catalog import list_snapshots

    cfg = _config(args)
    job, series = _job(cfg, args.job)
    names = [args.destination] if args.destination else list(job.destinations)
    result = {}
    for name in names:
        d = _destination(cfg, job, name)
        try:
            listing = list_snapshots(d, series, _host(args, cfg))
        finally:
            d.close()
        result[name] = {
            "snapshots": [_manifest_row(m) for m in listing.complete],
            "incomplete": listing.incomplete,
            "unowned_incomplete": listing.legacy_incomplete,
            "unreadable": [{"folder": f, "problem": p} for f, p in listing.unreadable],
        }
    return series, result


def _space(args: argparse.Namespace, names: Sequence[str]) -> dict[str, dict | None]:
    """Each destination's space (OneDrive: with its recycle bin), asked of the destination
    itself; None where it does not say or this user cannot ask (no access to the tokens)."""
    from odbackupd.destinations.base import DestinationError

    try:
        cfg = _config(args)
        job, _ = _job(cfg, args.job)
    except CliError:
        return {}
    out: dict[str, dict | None] = {}
    for name in names:
        try:
            d = _destination(cfg, job, name)
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


def _find(d, series: str, ref, host: str, command: str = "restore"):  # noqa: ANN001, ANN202
    from odbackupd.snapshot.catalog import DamagedLatest, SnapshotNotFound, find_snapshot

    try:
        return find_snapshot(d, series, ref, host)
    except SnapshotNotFound as e:
        raise CliError(str(e), EXIT_NOT_FOUND) from e
    except DamagedLatest as e:
        hint = (f"; the newest intact one is {e.intact.snapshot}: odctl {command} {series} {e.intact.snapshot}"
                if e.intact else "; no intact snapshot is left")
        raise CliError(f"{d.describe()}: {e} so 'latest' is not taken to mean an older snapshot{hint}",
                       EXIT_INTEGRITY) from e


def cmd_restore(args: argparse.Namespace) -> int:
    from odbackupd.destinations.base import DestinationError
    from odbackupd.snapshot.chainrestore import restore_chain
    from odbackupd.snapshot.restore import (BadTarget, IntegrityError, RestoreError, WrongIdentity,
                                            restore_snapshot)

    from .restore_report import report

    from .chaincmd import restore_chain_of

    cfg = _config(args)
    job, series = _job(cfg, args.job)
    ids = _identities(args.identity)
    policy = trust.policy(args, job)
    d = _destination(cfg, job, args.destination)
    try:
        m = _find(d, series, args.snapshot, _host(args, cfg))
        authentic = trust.check(m, policy)
        if m.encrypted and not ids:
            raise CliError(f"snapshot {m.snapshot} is encrypted: give the age identity with --identity FILE",
                           EXIT_USAGE)
        chain = restore_chain_of(d, series, m, args.to, args.allow_nonempty, CliError)
        if chain is not None:  # authentic only when every snapshot of the chain is
            authentic = all([trust.check(c, policy) for c in chain])
        bar = render.Progress(f"restore {m.snapshot}", enabled=not args.quiet and not args.json)
        t0 = time.monotonic()
        try:
            with ExitStack() as held:  # every snapshot the restore reads is leased: no prune deletes it
                for c in chain or [m]:
                    held.enter_context(lease.reading(cfg, d, series, c, args.quiet))
                if chain is not None:
                    stats = restore_chain(d, chain, args.to, identities=ids, paths=args.path,
                                          on_progress=bar.update if bar.enabled else None, authentic=authentic,
                                          special_files=args.special_files)
                else:
                    stats = restore_snapshot(d, m, args.to, identities=ids, paths=args.path,
                                             on_progress=bar.update if bar.enabled else None, authentic=authentic,
                                             special_files=args.special_files)
        except KeyboardInterrupt as e:
            raise CliError(f"interrupted: {args.to} holds a partial restore of {m.snapshot}; run the same "
                           "command again to complete it (files are rewritten whole)", 130) from e
        except BadTarget as e:
            raise CliError(str(e), EXIT_USAGE) from e
        except WrongIdentity as e:
            raise CliError(str(e), EXIT_USAGE) from e
        except (RestoreError, DestinationError) as e:
            bar.close()
            if getattr(e, "stats", None) is None:  # nothing written yet
                code = EXIT_INTEGRITY if isinstance(e, IntegrityError) else EXIT_FAILED
                raise CliError(f"restore of {m.snapshot} failed: {e}", code) from e
            return report(args, m, e.stats, time.monotonic() - t0, stopped_damaged=isinstance(e, IntegrityError))
        finally:
            bar.close()
    finally:
        d.close()
    return report(args, m, stats, time.monotonic() - t0, chain=[c.snapshot for c in chain] if chain else None)


def cmd_verify(args: argparse.Namespace) -> int:
    from odbackupd.snapshot.catalog import list_snapshots
    from odbackupd.snapshot.chainrestore import verify_chain
    from odbackupd.snapshot.restore import WrongIdentity

    cfg = _config(args)
    job, series = _job(cfg, args.job)
    ids = _identities(args.identity)
    policy = trust.policy(args, job)
    names = [args.destination] if args.destination else list(job.destinations)
    reports = []
    for name in names:
        d = _destination(cfg, job, name)
        try:
            found = list_snapshots(d, series, _host(args, cfg))
            listing, unreadable = found.complete, found.unreadable
            if args.snapshot == "all":
                manifests = listing
                reports.extend(_unreadable_reports(name, unreadable))
            else:
                try:
                    manifests = [_find(d, series, args.snapshot, _host(args, cfg), "verify")]
                except CliError as e:
                    if e.code != EXIT_INTEGRITY:
                        raise
                    reports.append({"destination": name, "snapshot": args.snapshot, "ok": False, "volumes": 0,
                                    "bytes": 0, "method": "manifest", "problems": [str(e)]})
                    manifests = []
            seen: set[str] = set()
            for m in manifests:
                try:
                    authentic = trust.check(m, policy)
                except CliError as e:  # untrusted: reported like a damaged snapshot, exit 4
                    reports.append({"destination": name, "snapshot": m.snapshot, "ok": False, "volumes": 0,
                                    "bytes": 0, "method": "manifest checked", "problems": [str(e)]})
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
                                    "volumes": rep.volumes, "bytes": rep.bytes,
                                    "method": rep.method + ("; signed by the trusted key" if authentic else ""),
                                    "problems": rep.problems})
        finally:
            d.close()
    ok = all(r["ok"] for r in reports)
    monitoring.after_verify(cfg, _state(cfg), job, series, reports)
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


def _unreadable_reports(dest: str, unreadable: list) -> list[dict]:
    """A snapshot folder whose manifest does not read is damaged, not silently skipped."""
    return [{"destination": dest, "snapshot": folder, "ok": False, "volumes": 0, "bytes": 0,
             "method": "manifest", "problems": [f"manifest: {problem}"]} for folder, problem in unreadable]


def cmd_prune(args: argparse.Namespace) -> int:
    from odbackupd.runner import prune_job

    cfg = _config(args)
    job, series = _job(cfg, args.job)
    plans = prune_job(cfg, job.name, None, dry_run=args.dry_run, series=series)
    if not args.dry_run:
        monitoring.after_prune(cfg, _state(cfg), series, plans)
    if args.json:
        render.out_json({"dry_run": args.dry_run, "destinations": {
            n: {"keep": [m.snapshot for m in p.keep], "delete": [m.snapshot for m in p.delete],
                "deferred": [m.snapshot for m in p.deferred], "reasons": p.reasons} for n, p in plans.items()}})
        return EXIT_OK
    from odbackupd.snapshot.manifest import order_key

    verb = "would delete" if args.dry_run else "deleted"
    for n, p in plans.items():
        rows = [[m.snapshot, render.iso(m.started), render.size(m.stored_bytes),
                 "keep" if m in p.keep else "deferred (being read)" if m in p.deferred else verb,
                 ", ".join(p.reasons.get(m.snapshot, []))]
                for m in sorted(p.keep + p.delete + p.deferred, key=order_key)]  # the series' order
        if not args.quiet:
            print(f"{n}:")
        render.table(["SNAPSHOT", "TIME", "STORED", "ACTION", "WHY"], rows)
    return EXIT_OK


def cmd_fleet_status(args: argparse.Namespace) -> int:
    try:
        return fleet.command(args, _config(args), _state)
    except ValueError as e:
        raise CliError(str(e), EXIT_USAGE) from e
    except LookupError as e:
        raise CliError(str(e.args[0]), EXIT_NOT_FOUND) from e


def cmd_notify_test(args: argparse.Namespace) -> int:
    """Through the daemon when it runs and no --config is given (its credentials, its
    network), else from here."""
    from odbackupd.notify.senders import DeliveryError, test_message

    from .client import DaemonNotRunning

    try:
        if args.config is not None:
            raise DaemonNotRunning("--config given: sending from odctl")
        result = _daemon(lambda c: c.call("NotifyTest", "s", args.name))
        kind, where = result.get("type", "?"), "by the daemon"
    except DaemonNotRunning:
        try:
            kind, where = test_message(_config(args), args.name), "from odctl"
        except LookupError as e:
            raise CliError(str(e.args[0]), EXIT_NOT_FOUND) from e
        except DeliveryError as e:
            raise CliError(f"notifier {args.name}: {e}", EXIT_FAILED) from e
    if args.json:
        render.out_json({"notifier": args.name, "type": kind, "delivered": True})
    elif not args.quiet:
        print(f"{args.name}: test message delivered ({kind}, sent {where})")
    return EXIT_OK


# -- daemon commands (over D-Bus) -------------------------------------------------------------------
def _daemon(fn, require: bool = True):  # noqa: ANN001, ANN202
    """Run ``fn(client)`` against the daemon (a small asyncio runner per command)."""
    from .client import run

    return run(fn, require_daemon=require)


def _daemon_available() -> bool:
    import asyncio

    from .client import daemon_available

    return asyncio.run(daemon_available())


def _job_row(j: dict) -> list[str]:
    last = j.get("last_run") or {}
    state = j.get("state", "")
    prog = j.get("progress") or {}
    if state == "running" and "percent" in prog:
        state = f"running {prog['percent']:.0f}%"
    if j.get("queued"):
        state += " (+queued)"
    when = render.iso(last["finished"]) if last.get("finished") else "-"
    nxt = render.iso(j["next_run"]) if j.get("next_run") else ("watch" if j.get("watch") else "-")
    return [j.get("name", ""), render.coloured_state(state), when,
            render.coloured_state(last.get("status", "-")), nxt, ", ".join(j.get("destinations", []))]


JOB_HEADERS = ["JOB", "STATE", "LAST RUN", "RESULT", "NEXT RUN", "DESTINATIONS"]


def _offline_jobs(args: argparse.Namespace) -> list[dict]:
    """The configured jobs with what can be known without the daemon: the last run from
    the state database, whether a run (e.g. ``odbackupd --once`` from cron) holds the job's
    lock, and the next time the schedule names (before any random_delay)."""
    cfg = _config(args)
    state = _state(cfg)
    out = []
    try:
        for name, job in sorted(cfg.jobs.items()):
            j = {"name": name, "state": _offline_state(cfg, name), "queued": False,
                 "sources": [str(s) for s in job.sources], "destinations": list(job.destinations),
                 "encrypted": bool(job.recipients), "watch": bool(job.watch)}
            if job.schedule:
                import datetime

                from croniter import croniter

                j["schedule"] = job.schedule
                # cron times are the machine's local time, as the daemon's scheduler reads them
                start = datetime.datetime.fromtimestamp(time.time())
                j["next_run"] = croniter(job.schedule, start).get_next(datetime.datetime).timestamp()
            if job.drop_dir is not None:
                j["drop_dir"] = str(job.drop_dir)
            done = [r for r in (state.last_runs(name, 5) if state else []) if r.get("finished")]
            if done:
                r = done[0]
                j["last_run"] = {k: v for k, v in (
                    ("run_id", r["id"]), ("status", r["status"]), ("message", r["message"] or ""),
                    ("snapshot", r["snapshot"]), ("trigger", r["trigger"]), ("started", r["started"]),
                    ("finished", r["finished"])) if v is not None}
            out.append(j)
    finally:
        if state:
            state.close()
    return out


def _offline_state(cfg, job: str) -> str:  # noqa: ANN001
    from odbackupd.runner import JobBusy, job_lock

    if not (cfg.daemon.state_dir / "locks").is_dir():
        return "idle"
    try:
        with job_lock(cfg.daemon.state_dir, job):
            return "idle"
    except JobBusy:
        return "running"
    except OSError:
        return "unknown"  # not ours to look at (run odctl as root)


def cmd_status(args: argparse.Namespace) -> int:
    async def go(c):  # noqa: ANN001, ANN202
        return await c.call("GetAll", "s", _names().MANAGER_IFACE, interface="org.freedesktop.DBus.Properties"), \
            await c.call("ListJobs")

    props, jobs = _daemon(go)
    daemon = props["Daemon"]
    daemon["interface_version"] = props["InterfaceVersion"]
    if args.json:
        render.out_json({"daemon_running": True, "daemon": daemon, "jobs": jobs})
        return EXIT_OK
    if not args.quiet:
        state = daemon.get("state", "?")
        line = daemon.get("status_line", "")
        if line.startswith(state):  # "idle; 3 jobs; next: …" — do not say "idle" twice
            line = line[len(state):].lstrip("; ")
        print(f"odbackupd {daemon.get('version', '?')}: {render.coloured_state(state)}" + (f"; {line}" if line else ""))
        if daemon.get("config_path"):
            print(f"config: {daemon['config_path']}")
        if daemon.get("started"):
            print(f"since:  {render.iso(daemon['started'])}")
        print()
        render.table(JOB_HEADERS, [_job_row(j) for j in jobs])
    fail = daemon.get("last_failure")
    if fail:
        print(f"last failure: {fail.get('job')} (run {fail.get('run_id')}): {fail.get('message', '')}",
              file=sys.stderr)
    return EXIT_OK


def _names():  # noqa: ANN202
    from odbackupd.bus import names

    return names


def cmd_jobs(args: argparse.Namespace) -> int:
    from .client import DaemonNotRunning

    try:
        jobs = _daemon(lambda c: c.call("ListJobs"))
        running = True
    except DaemonNotRunning as e:
        print(f"odctl: {e}\nodctl: showing the configured jobs, their last runs and schedules (no live state)", file=sys.stderr)
        jobs = _offline_jobs(args)
        running = False
    if args.json:
        render.out_json({"daemon_running": running, "jobs": jobs})
    elif not args.quiet:
        render.table(JOB_HEADERS, [_job_row(j) for j in jobs])
    return EXIT_OK


def _status_exit(result: dict) -> int:
    """A finished run's exit code: a run that failed for want of a login says so (7)."""
    if result.get("status") in ("completed", "completed with warnings"):
        return EXIT_OK
    return EXIT_NOT_LOGGED_IN if result.get("login_needed") else EXIT_FAILED


def cmd_backup_now(args: argparse.Namespace) -> int:
    names = _names()
    job_path = names.job_path(args.job)

    async def go(c):  # noqa: ANN001, ANN202
        import asyncio

        from .client import DaemonNotRunning, unpack

        loop = asyncio.get_running_loop()
        finished: dict[int, dict] = {}
        want: dict[str, int] = {}
        done: asyncio.Future = loop.create_future()
        bar = render.Progress(f"{args.job}", enabled=args.wait and not args.quiet and not args.json)

        def on_signal(msg) -> None:  # noqa: ANN001
            if msg.member == "RunFinished" and msg.body[0] == args.job:
                finished[int(msg.body[1])] = unpack(msg.body[2])
            elif msg.member == "PropertiesChanged" and msg.path == job_path:
                changed = unpack(msg.body[1])
                if "BytesDone" in changed or "Percent" in changed:
                    bar.update(changed.get("BytesDone", 0), changed.get("BytesTotal") or None,
                               rate=changed.get("Rate"), percent=changed.get("Percent"),
                               volume=changed.get("Volume"))
            elif msg.member == "NameOwnerChanged" and msg.body[0] == names.BUS_NAME and not msg.body[2]:
                if not done.done():
                    done.set_exception(DaemonNotRunning("odbackupd stopped before the run finished"))
            if "id" in want and want["id"] in finished and not done.done():
                done.set_result(finished[want["id"]])

        if args.wait:
            await c.subscribe(on_signal, sender=names.BUS_NAME, path=names.ROOT_PATH,
                              interface=names.MANAGER_IFACE, member="RunFinished")
            await c.subscribe(on_signal, sender=names.BUS_NAME, path=job_path,
                              interface="org.freedesktop.DBus.Properties", member="PropertiesChanged")
            await c.subscribe(on_signal, sender="org.freedesktop.DBus", interface="org.freedesktop.DBus",
                              member="NameOwnerChanged", arg0=names.BUS_NAME)
        path = await c.call("BackupNow", "s", args.job)
        run_id = names.run_id_from_path(path)
        if not args.wait:
            return run_id, path, None
        want["id"] = run_id
        if run_id in finished:
            done.set_result(finished[run_id])
        try:
            result = await done
        finally:
            bar.close()
        return run_id, path, result

    run_id, path, result = _daemon(go)
    if result is None:
        if args.json:
            render.out_json({"job": args.job, "run_id": run_id, "path": path})
        elif not args.quiet:
            print(f"{args.job}: run {run_id} started (odctl backup-now {args.job} --wait follows it)")
        return EXIT_OK
    code = _status_exit(result)
    if args.json:
        render.out_json({"job": args.job, "run_id": run_id, "path": path, "result": result})
    else:
        took = ""
        if result.get("started") and result.get("finished"):
            took = f" in {result['finished'] - result['started']:.1f}s"
        snap = f" snapshot {result['snapshot']}" if result.get("snapshot") else ""
        line = (f"{args.job}: run {run_id}{snap} {render.coloured_state(result.get('status', '?'))}{took}"
                + (f": {result['message']}" if result.get("message") else ""))
        print(line, file=sys.stdout if code == EXIT_OK else sys.stderr)
        for problem in result.get("prune_errors") or []:
            print(f"odctl: warning: retention failed on {problem}; the snapshot is complete and the "
                  "next run prunes again", file=sys.stderr)
    return code


def cmd_cancel(args: argparse.Namespace) -> int:
    did = _daemon(lambda c: c.call("Cancel", "s", args.job))
    if args.json:
        render.out_json({"job": args.job, "cancelled": bool(did)})
    elif not args.quiet:
        print(f"{args.job}: " + ("cancelling; the next run resumes the snapshot" if did
                                 else "nothing running or queued"))
    return EXIT_OK


def cmd_reload(args: argparse.Namespace) -> int:
    warnings = _daemon(lambda c: c.call("Reload")) or []
    if args.json:
        render.out_json({"ok": True, "warnings": warnings})
    else:
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
        if not args.quiet:
            print("configuration reloaded")
    return EXIT_OK


def _login_module():  # noqa: ANN202
    """odctl/login.py, the in-process login (imported only when a login is asked for)."""
    from . import login

    return login


def cmd_login(args: argparse.Namespace) -> int:
    from .client import DaemonNotRunning

    try:
        return _daemon(lambda c: _login_module().login_via_daemon(c, args))
    except DaemonNotRunning as e:
        return _login_offline(args, e, "run_login")


def cmd_logout(args: argparse.Namespace) -> int:
    from .client import DaemonNotRunning

    try:
        _daemon(lambda c: c.call("Logout", "s", args.account))
    except DaemonNotRunning as e:
        return _login_offline(args, e, "run_logout")
    if args.json:
        render.out_json({"account": args.account, "state": "none"})
    elif not args.quiet:
        print(f"{args.account}: logged out")
    return EXIT_OK


def _login_offline(args: argparse.Namespace, why: Exception, fn: str) -> int:
    mod = _login_module()
    if not args.quiet:
        print("odctl: the daemon is not running; logging in from this process", file=sys.stderr)
    cfg = _config(args)
    rc = getattr(mod, fn)(args, cfg, sys.stdout, sys.stderr)
    if rc == EXIT_OK:
        monitoring.after_login(cfg, _state(cfg), args.account, fn == "run_login")
    return rc


# -- parser ------------------------------------------------------------------------------------------
SERIES_HELP = "the NAME of a [job.NAME] table, or NAME+drop for its drop-directory snapshots"
HOST_HELP = ("read the snapshots another server made (its [daemon] hostname) on the same destination, "
             "e.g. to restore a dead server's backup on its replacement; default: this host's")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS, metavar="PATH",
                        help="configuration file (default /etc/odbackupd/odbackupd.toml)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output on stdout")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="print only problems")

    ap = argparse.ArgumentParser(prog="odctl", parents=[common],
                                 description="Control odbackupd and work with its snapshots.",
                                 epilog=exit_codes_epilog(),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"odctl {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("status", parents=[common], help="the daemon's state and its jobs")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("jobs", parents=[common], help="list the jobs (from the configuration if the daemon is down)")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("backup-now", parents=[common], help="start a run of a job now")
    p.add_argument("job", metavar="JOB", help="the NAME of a [job.NAME] table")
    p.add_argument("--wait", "-w", action="store_true",
                   help="follow the run with a progress bar; the exit status is the run's result "
                        "(0 completed, 1 failed or cancelled, 7 an account needs odctl login)")
    p.set_defaults(func=cmd_backup_now)

    p = sub.add_parser("cancel", parents=[common], help="cancel a job's run (it resumes next time) and its queued run")
    p.add_argument("job", metavar="JOB", help="the NAME of a [job.NAME] table")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("reload", parents=[common], help="make the daemon re-read its configuration")
    p.set_defaults(func=cmd_reload)

    _add_login_parsers(sub, common)

    p = sub.add_parser("config", parents=[common], help="check or generate the configuration")
    csub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    csub.add_parser("check", parents=[common], help="validate the configuration").set_defaults(func=cmd_config_check)
    csub.add_parser("sample", parents=[common], help="print a commented sample configuration").set_defaults(
        func=cmd_config_sample)

    p = sub.add_parser("snapshots", parents=[common], help="list a job's complete snapshots")
    p.add_argument("job", metavar="JOB", help=SERIES_HELP)
    p.add_argument("--destination", "-d", metavar="NAME", help="only this destination")
    p.add_argument("--host", metavar="HOST", help=HOST_HELP)
    p.set_defaults(func=cmd_snapshots)

    p = sub.add_parser("restore", parents=[common], help="restore a snapshot into a directory",
                       description="Restore a snapshot below DIR (created if missing): an archived path "
                       "etc/ssh lands in DIR/etc/ssh. Files and symlinks already there with the same "
                       "name are replaced (never followed); other files in DIR are left alone; a "
                       "directory where the snapshot has a file is refused and reported. Restore into "
                       "an empty directory to compare before copying anything back. An incremental snapshot "
                       "restores its whole chain, each file written once, and needs an empty DIR "
                       "(or --allow-nonempty). A restore that "
                       "did not put back everything says what is missing and exits non-zero; see "
                       "RESTORE SAFETY in odctl(1) for what a restore trusts.")
    p.add_argument("job", metavar="JOB", help=SERIES_HELP)
    p.add_argument("snapshot", nargs="?", default="latest", metavar="SNAPSHOT", help="snapshot id, unique prefix, or 'latest'")
    p.add_argument("--to", type=Path, required=True, metavar="DIR",
                   help="directory to restore into (existing files of the same name are replaced)")
    p.add_argument("--path", action="append", default=[], metavar="P",
                   help="restore only this path (as archived, e.g. etc/ssh); repeatable; "
                        "a path not in the snapshot is an error (exit 3)")
    p.add_argument("--identity", "-i", action="append", type=Path, default=[], metavar="FILE",
                   help="age identity file for encrypted snapshots; repeatable")
    p.add_argument("--destination", "-d", metavar="NAME",
                   help="restore from this destination (default: the job's first)")
    sp = p.add_mutually_exclusive_group()
    sp.add_argument("--special-files", dest="special_files", action="store_true", default=None,
                    help="as root, restore setuid/setgid bits, file capabilities and device nodes even "
                         "from a snapshot not verified authentic (default: only from an authentic one)")
    sp.add_argument("--no-special-files", dest="special_files", action="store_false",
                    help="leave setuid/setgid bits, file capabilities and device nodes out (counted)")
    p.add_argument("--host", metavar="HOST", help=HOST_HELP)
    trust.add_arguments(p)
    p.add_argument("--allow-nonempty", action="store_true",
                   help="restore an incremental snapshot into a directory that is not empty (what it "
                        "already holds stays, mixed with the snapshot's state)")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("verify", parents=[common],
                       help="check a snapshot's volumes against its manifest (an incremental: its whole chain)")
    p.add_argument("job", metavar="JOB", help=SERIES_HELP)
    p.add_argument("snapshot", nargs="?", default="latest", metavar="SNAPSHOT", help="snapshot id, prefix, 'latest' or 'all'")
    p.add_argument("--download", action="store_true", help="read everything back (and decrypt with --identity)")
    p.add_argument("--identity", "-i", action="append", type=Path, default=[], metavar="FILE",
                   help="age identity file, to decrypt with --download; repeatable")
    p.add_argument("--destination", "-d", metavar="NAME", help="only this destination (default: all of the job's)")
    p.add_argument("--host", metavar="HOST", help=HOST_HELP)
    trust.add_arguments(p)
    p.set_defaults(func=cmd_verify)

    monitoring.add_parsers(sub, common, cmd_notify_test)
    fleet.add_parser(sub, common, cmd_fleet_status)

    p = sub.add_parser("prune", parents=[common], help="apply the job's retention rules now")
    p.add_argument("job", metavar="JOB", help=SERIES_HELP)
    p.add_argument("--dry-run", "-n", action="store_true", help="show what would be deleted")
    p.set_defaults(func=cmd_prune)

    trust.add_key_parser(sub, common, lambda args: trust.key_export(_config(args), args))

    from .intake import add_intake_parsers

    add_intake_parsers(sub, common)
    return ap


def _add_login_parsers(sub, common: argparse.ArgumentParser) -> None:  # noqa: ANN001
    """login/logout: parsers from odctl/login.py (which needs msal only when a login runs);
    the command goes through the daemon when it runs and falls back to the in-process login."""
    _login_module().add_login_parsers(sub, parents=[common])
    sub.choices["login"].set_defaults(func=cmd_login)
    sub.choices["logout"].set_defaults(func=cmd_logout)


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    for name, default in (("config", None), ("json", False), ("quiet", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    from odbackupd.destinations.base import DestinationError, NotLoggedIn

    from .client import DaemonError, DaemonNotRunning

    try:
        _check_names(args)
        return args.func(args)
    except CliError as e:
        return _fail(args, str(e), e.code)
    except NotLoggedIn as e:
        return _fail(args, str(e), EXIT_NOT_LOGGED_IN, "NotLoggedIn")
    except DestinationError as e:  # an unmounted disk, an unreachable drive: one line, no traceback
        return _fail(args, str(e), EXIT_FAILED)
    except DaemonNotRunning as e:
        return _fail(args, str(e), e.exit, "NotRunning")
    except DaemonError as e:
        return _fail(args, str(e), e.exit, e.code)
    except KeyboardInterrupt:
        print("odctl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `odctl jobs --json | head`: the reader has gone; no traceback, and no second
        # error when Python flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # as if killed by SIGPIPE, what a shell shows for `yes | head`


def _check_names(args: argparse.Namespace) -> None:
    """Job and account names come from the (UTF-8) configuration: one that is not UTF-8 names
    nothing, and must not reach the bus (D-Bus strings are UTF-8) or a JSON encoder."""
    for attr, table in (("job", "job"), ("account", "account")):
        value = getattr(args, attr, None)
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise CliError(f"no {table} {value!r}: the name is not valid UTF-8, and every "
                               f"[{table}.NAME] in the configuration is", EXIT_NOT_FOUND) from None


def _fail(args: argparse.Namespace, message: str, code: int, name: str | None = None) -> int:
    if args.json:
        out: dict[str, Any] = {"ok": False, "error": message, "exit": code}
        if name:
            out["error_name"] = name
        render.out_json(out)
    print(f"odctl: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
