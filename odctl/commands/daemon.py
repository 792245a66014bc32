"""What only the running daemon does: ``odctl backup-now [--wait]``, ``cancel``, ``reload``."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from odbackupd.bus import names
from odbackupd.bus.names import EXIT_FAILED, EXIT_NOT_LOGGED_IN, EXIT_OK
from odbackupd.jobview import COMPLETED, COMPLETED_WITH_WARNINGS

from .. import render
from ..dispatch import declare

PROPERTIES = "org.freedesktop.DBus.Properties"


def _status_exit(result: dict) -> int:
    """A finished run's exit code: a run that failed for want of a login says so (7)."""
    if result.get("status") in (COMPLETED, COMPLETED_WITH_WARNINGS):
        return EXIT_OK
    return EXIT_NOT_LOGGED_IN if result.get("login_needed") else EXIT_FAILED


async def _start(c: Any, args: argparse.Namespace) -> tuple[int, str, dict | None]:
    """BackupNow; with --wait, follow the run's progress and wait for its RunFinished."""
    import asyncio

    from ..client import DaemonNotRunning, unpack

    job_path = names.job_path(args.job)
    loop = asyncio.get_running_loop()
    finished: dict[int, dict] = {}
    want: dict[str, int] = {}
    done: asyncio.Future = loop.create_future()
    bar = render.Progress(f"{args.job}", enabled=args.wait and not args.quiet and not args.json)

    def on_signal(msg: Any) -> None:
        if msg.member == "RunFinished" and msg.body[0] == args.job:
            finished[int(msg.body[1])] = unpack(msg.body[2])
        elif msg.member == "PropertiesChanged" and msg.path == job_path:
            changed = unpack(msg.body[1])
            if "BytesDone" in changed or "Percent" in changed:
                bar.update(changed.get("BytesDone", 0), changed.get("BytesTotal") or None,
                           rate=changed.get("Rate"), percent=changed.get("Percent"),
                           volume=changed.get("Volume"))
        elif (msg.member == "NameOwnerChanged" and msg.body[0] == names.BUS_NAME
              and not msg.body[2] and not done.done()):
            done.set_exception(DaemonNotRunning("odbackupd stopped before the run finished"))
        if "id" in want and want["id"] in finished and not done.done():
            done.set_result(finished[want["id"]])

    if args.wait:
        await c.subscribe(on_signal, sender=names.BUS_NAME, path=names.ROOT_PATH,
                          interface=names.MANAGER_IFACE, member="RunFinished")
        await c.subscribe(on_signal, sender=names.BUS_NAME, path=job_path,
                          interface=PROPERTIES, member="PropertiesChanged")
        await c.subscribe(on_signal, sender="org.freedesktop.DBus",
                          interface="org.freedesktop.DBus", member="NameOwnerChanged",
                          arg0=names.BUS_NAME)
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


async def backup_now(c: Any, args: argparse.Namespace) -> int:
    run_id, path, result = await _start(c, args)
    if result is None:
        if args.json:
            render.out_json({"job": args.job, "run_id": run_id, "path": path})
        elif not args.quiet:
            print(f"{args.job}: run {run_id} started "
                  f"(odctl backup-now {args.job} --wait follows it)")
        return EXIT_OK
    code = _status_exit(result)
    if args.json:
        render.out_json({"job": args.job, "run_id": run_id, "path": path, "result": result})
    else:
        took = ""
        if result.get("started") and result.get("finished"):
            took = f" in {result['finished'] - result['started']:.1f}s"
        snap = f" snapshot {result['snapshot']}" if result.get("snapshot") else ""
        state = render.coloured_state(result.get("status", "?"))
        line = (f"{args.job}: run {run_id}{snap} {state}{took}"
                + (f": {result['message']}" if result.get("message") else ""))
        print(line, file=sys.stdout if code == EXIT_OK else sys.stderr)
        for problem in result.get("prune_errors") or []:
            print(f"odctl: warning: retention failed on {problem}; the snapshot is complete "
                  "and the next run prunes again", file=sys.stderr)
    return code


async def cancel(c: Any, args: argparse.Namespace) -> int:
    did = await c.call("Cancel", "s", args.job)
    if args.json:
        render.out_json({"job": args.job, "cancelled": bool(did)})
    elif not args.quiet:
        print(f"{args.job}: " + ("cancelling; the next run resumes the snapshot" if did
                                 else "nothing running or queued"))
    return EXIT_OK


async def reload(c: Any, args: argparse.Namespace) -> int:
    warnings = await c.call("Reload") or []
    if args.json:
        render.out_json({"ok": True, "warnings": warnings})
    else:
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
        if not args.quiet:
            print("configuration reloaded")
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("backup-now", parents=[common], help="start a run of a job now")
    p.add_argument("job", metavar="JOB", help="the NAME of a [job.NAME] table")
    p.add_argument("--wait", "-w", action="store_true",
                   help="follow the run with a progress bar; the exit status is the run's result "
                        "(0 completed, 1 failed or cancelled, 7 an account needs odctl login)")
    declare(p, daemon=backup_now)

    p = sub.add_parser("cancel", parents=[common],
                       help="cancel a job's run (it resumes next time) and its queued run")
    p.add_argument("job", metavar="JOB", help="the NAME of a [job.NAME] table")
    declare(p, daemon=cancel)

    p = sub.add_parser("reload", parents=[common], help="make the daemon re-read its configuration")
    declare(p, daemon=reload)
