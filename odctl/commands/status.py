"""``odctl status`` (the daemon's state and its jobs) and ``odctl jobs`` (the jobs: from the
daemon, else from the configuration, the state database and the jobs' locks)."""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from odbackupd.bus.names import EXIT_OK

from .. import offline, render
from ..dispatch import declare

JOB_HEADERS = ["JOB", "STATE", "LAST RUN", "RESULT", "NEXT RUN", "DESTINATIONS"]


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
            render.coloured_state(last.get("status", "-")), nxt,
            ", ".join(j.get("destinations", []))]


async def status(c: Any, args: argparse.Namespace) -> int:
    props = await c.properties()
    jobs = await c.call("ListJobs")
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
        print(f"odbackupd {daemon.get('version', '?')}: {render.coloured_state(state)}"
              + (f"; {line}" if line else ""))
        if daemon.get("config_path"):
            print(f"config: {daemon['config_path']}")
        if daemon.get("started"):
            print(f"since:  {render.iso(daemon['started'])}")
        print()
        render.table(JOB_HEADERS, [_job_row(j) for j in jobs])
    fail = daemon.get("last_failure")
    if fail:
        print(f"last failure: {fail.get('job')} (run {fail.get('run_id')}): "
              f"{fail.get('message', '')}", file=sys.stderr)
    return EXIT_OK


def _show_jobs(args: argparse.Namespace, jobs: list[dict], running: bool) -> int:
    if args.json:
        render.out_json({"daemon_running": running, "jobs": jobs})
    elif not args.quiet:
        render.table(JOB_HEADERS, [_job_row(j) for j in jobs])
    return EXIT_OK


async def jobs_from_daemon(c: Any, args: argparse.Namespace) -> int:
    return _show_jobs(args, await c.call("ListJobs"), True)


def jobs_offline(args: argparse.Namespace) -> int:
    """The configured jobs with what can be known without the daemon: the last run from
    the state database, whether a run (e.g. ``odbackupd --once`` from cron) holds the
    job's lock, and the next time the schedule names (before any random_delay)."""
    from odbackupd import jobview

    cfg = offline.config(args)
    state = offline.state(cfg)
    now = time.time()
    try:
        jobs = [jobview.job_info(name, job, state=_lock_state(cfg, name),
                                 next_run=jobview.next_fire(job.schedule, now) if job.schedule
                                 else None,
                                 last=jobview.last_run(state.last_runs(name, 5)) if state else None)
                for name, job in sorted(cfg.jobs.items())]
    finally:
        if state:
            state.close()
    return _show_jobs(args, jobs, False)


def _lock_state(cfg: Any, job: str) -> str:
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


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("status", parents=[common], help="the daemon's state and its jobs")
    declare(p, daemon=status)

    p = sub.add_parser("jobs", parents=[common],
                       help="list the jobs (from the configuration if the daemon is down)")
    declare(p, daemon=jobs_from_daemon, offline=jobs_offline,
            fallback_note="showing the configured jobs, their last runs and schedules "
                          "(no live state)")
