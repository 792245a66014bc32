"""odbackupd entry point and composition root.

``odbackupd --config PATH --check-config`` validates; ``odbackupd --config PATH --once JOB``
runs one snapshot in the foreground (what cron-only users run); without ``--once`` it is
the system service.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from . import __version__
from .config import ConfigError
from .config.paths import DEFAULT_CONFIG, load, no_such_job

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_BUSY = 75  # EX_TEMPFAIL: the job is already running
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C

log = logging.getLogger("odbackupd")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="odbackupd",
        description="Encrypted, verified, off-site snapshots of this server's directories.",
    )
    ap.add_argument("--config", type=Path, default=None, metavar="PATH",
                    help=f"configuration file (default {DEFAULT_CONFIG}, "
                    "plus PATH.d/*.toml drop-ins)")
    ap.add_argument("--check-config", action="store_true",
                    help="validate the configuration (and that sources are readable) and exit")
    ap.add_argument("--once", metavar="JOB",
                    help="run one snapshot of JOB in the foreground and exit")
    ap.add_argument("--no-dbus", action="store_true",
                    help="run the service without the D-Bus API (foreground use and tests)")
    ap.add_argument("--stop-timeout", type=float, default=None, metavar="SECONDS",
                    help="on SIGTERM, how long runs get to checkpoint before the daemon exits "
                    "(default 45; keep it below the unit's TimeoutStopSec)")
    ap.add_argument("--log-level", choices=["debug", "info", "notice", "warning", "error"],
                    default=None,
                    help="log this and more severe messages (default: the configuration's "
                    "log_level; --once on a terminal: warning)")
    ap.add_argument("--version", action="version", version=f"odbackupd {__version__}")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.umask(0o077)  # everything odbackupd writes (spool, state, volumes) is its own alone
    from .journal import setup_logging

    setup_logging("odbackupd", args.log_level or "info")
    try:
        config = load(args.config, check_sources=args.check_config,
                      explicit=args.config is not None)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return EXIT_CONFIG
    if args.log_level is None:
        setup_logging("odbackupd", config.daemon.log_level)
    for w in config.warnings:
        log.warning("%s", w)

    if args.check_config:
        where = config.path or "the embedded default configuration"
        from .config.paths import check_summary

        print(f"{where}: OK ({check_summary(config)})")
        return EXIT_OK

    if args.once:
        from .journal import under_journald

        if args.log_level is None and not under_journald():
            # on a terminal or from cron: warnings and errors as they happen, then one
            # summary line on stdout — not every info line twice
            setup_logging("odbackupd", "warning")
            # the runner's run summaries (failed, login needed) are what run_once prints
            # itself as its last line: once is enough
            logging.getLogger("odbackupd.run").setLevel(logging.CRITICAL)
        return run_once(config, args.once)

    return run_service(config, args)


def run_service(config, args: argparse.Namespace) -> int:  # noqa: ANN001
    """The composition root of the daemon: controller + loop (service/) + D-Bus (bus/)."""
    from .service.loop import DEFAULT_STOP_TIMEOUT, serve

    make_transport = None
    if not args.no_dbus:
        try:
            from .bus.adapter import BusAdapter
        except ImportError as e:
            print(f"odbackupd: the D-Bus API is not available ({e}); install dbus-fast, "
                  "or run with --no-dbus", file=sys.stderr)
            return EXIT_FAILED

        def make_transport(controller):  # noqa: ANN001, ANN202
            return BusAdapter(controller, bus_address=None)

    stop_timeout = args.stop_timeout if args.stop_timeout is not None else DEFAULT_STOP_TIMEOUT
    return serve(config, args.config or DEFAULT_CONFIG, make_transport=make_transport,
                 stop_timeout=stop_timeout, log_level_fixed=args.log_level is not None)


def run_once(config, job: str) -> int:  # noqa: ANN001
    from .lifecycle import RunRequest, run_now

    if job not in config.jobs:
        print(f"odbackupd: {no_such_job(config, job)}", file=sys.stderr)
        return EXIT_CONFIG
    import sqlite3

    from .notify.deliver import OnceDelivery
    from .ownership import give_back, service_dirs
    from .statefile import StateUnavailable, explain, open_state

    dirs = service_dirs(config, job)
    give_back(dirs)  # what an earlier root run, killed, left behind
    db = config.daemon.state_dir / "state.db"
    try:
        state = open_state(db)
    except StateUnavailable as e:
        print(f"odbackupd: {job}: {e}", file=sys.stderr)
        return EXIT_FAILED
    cancel = _cancel_on_signals()
    try:
        with OnceDelivery(config, state):  # cron users are notified too
            if not config.jobs[job].sources:
                return run_drop_dir_once(config, job, state, cancel)
            run = run_now(config, state, RunRequest(job, "once"), cancel=cancel).run
    except KeyboardInterrupt:  # the second Ctrl-C: stop at once; the checkpoints stay
        print(f"odbackupd: {job}: interrupted; the next run resumes from the last volume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except sqlite3.Error as e:  # the state directory filled up or went read-only during the run
        print(f"odbackupd: {job}: {explain(db, e)}; the earlier snapshots are untouched",
              file=sys.stderr)
        return EXIT_FAILED
    finally:
        state.close()
        # root's --once in the service's directories: the service must use them next
        give_back(dirs)
    return _report_once(job, run, cancel)


def _cancel_on_signals() -> threading.Event:
    """Ctrl-C (SIGINT) or SIGTERM during ``--once`` cancels the run as ``odctl cancel`` does:
    it checkpoints and stops with one clear line instead of a traceback, nothing half made
    is listed, and the next run resumes. A second Ctrl-C stops at once."""
    cancel = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        print(f"odbackupd: {signal.Signals(signum).name}: stopping at the next checkpoint "
              "(Ctrl-C again stops at once)", file=sys.stderr)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    return cancel


def run_drop_dir_once(config, job: str, state, cancel: threading.Event | None = None) -> int:  # noqa: ANN001
    """``--once`` on a job that only has a drop directory (cron users): every file there
    that is complete (service/droppolicy.py: not a temporary name, unchanged for the job's
    quiet_period, open for writing by no process) becomes its own snapshot and is removed
    once stored and verified, by the daemon's rules."""
    from .lifecycle import RunRequest, run_now
    from .series import drop_series
    from .service.droppolicy import file_signature, left_for_later, stored_cleanly, unchanged

    jc = config.jobs[job]
    drop = Path(jc.drop_dir)
    try:
        names = sorted(os.listdir(drop))
    except OSError as e:
        print(f"odbackupd: {job}: cannot read drop_dir {drop}: {e.strerror}", file=sys.stderr)
        return EXIT_FAILED
    worst, taken = EXIT_OK, 0
    for name in names:
        if cancel is not None and cancel.is_set():
            break
        path = drop / name
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        why = left_for_later(path, st, jc.quiet_period, time.time())
        if why is not None:
            if why != "not a complete file":
                print(f"{job}: {name}: {why}; left for the next run")
            continue
        request = RunRequest(job, "once", drop_series(job), (path,))
        run = run_now(config, state, request, cancel=cancel).run
        code = _report_once(job, run, cancel)
        if stored_cleanly(run) and unchanged(file_signature(st), _lstat(path)):
            path.unlink()
            taken += 1
        elif code == EXIT_OK:
            print(f"{job}: {name}: kept (it changed while it was read)", file=sys.stderr)
            code = EXIT_FAILED
        worst = max(worst, code)
    if not taken and worst == EXIT_OK:
        print(f"{job}: nothing complete in {drop}")
    return worst


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except FileNotFoundError:
        return None


def _report_once(job: str, run, cancel: threading.Event | None = None) -> int:  # noqa: ANN001
    r = run.result
    if r.ok:
        print(f"{job}: snapshot {r.snapshot} {r.status}: {r.message}")
        for dest, names in run.pruned.items():
            if names:
                print(f"{job}: pruned from {dest}: {', '.join(names)}")
        for dest, names in run.deferred.items():
            print(f"{job}: not pruned from {dest} while a restore or verify reads it (next run): "
                  f"{', '.join(names)}")
        for problem in run.prune_errors:
            print(f"odbackupd: {job}: warning: retention failed on {problem}; the snapshot is "
                  "complete and the next run prunes again", file=sys.stderr)
        return EXIT_OK
    if cancel is not None and cancel.is_set() and not run.busy:
        print(f"odbackupd: {job}: interrupted; the next run resumes snapshot {r.snapshot}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"odbackupd: {job}: {r.status}: {r.message}", file=sys.stderr)
    return EXIT_BUSY if run.busy else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
