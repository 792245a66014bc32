"""``odbackupd-intake --config /etc/odbackupd/odbackupd.toml``: the write-only intake service.

Listens on the socket systemd hands over (``odbackupd-intake.socket``, ``Accept=no``:
``LISTEN_FDS``), else on ``[intake] listen`` (host:port or a Unix socket path). It reads
the daemon's configuration for ``[intake]``, its users and their jobs' drop directories,
never talks to the daemon and needs no privileges: what it lands, the daemon's drop
directory watcher stores. SIGTERM stops it within a second or two; unfinished resumable
uploads keep their acknowledged offsets.

Exit codes: 0 stopped, 1 failed, 2 configuration problem.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from .. import __version__
from ..config import ConfigError, load_config
from ..journal import setup_logging
from ..service.notify import Notifier

log = logging.getLogger("odbackupd.intake")

SD_LISTEN_FDS_START = 3
READ_BUFSIZE = 1 << 20
SHUTDOWN_TIMEOUT = 1.0  # seconds a running request gets at stop; then it is cancelled


def listen_fds() -> list[socket.socket]:
    """The sockets systemd passed (sd_listen_fds), removed from the environment."""
    pid, fds = os.environ.pop("LISTEN_PID", ""), os.environ.pop("LISTEN_FDS", "")
    os.environ.pop("LISTEN_FDNAMES", None)
    if not fds or pid != str(os.getpid()):
        return []
    out = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(fds)):
        os.set_inheritable(fd, False)
        out.append(socket.socket(fileno=fd))
    return out


def _prepare(config_path: Path, check_only: bool = False):  # noqa: ANN202
    from .store import Store
    from .tokens import Tokens, load_hashes

    config = load_config(config_path)
    if not config.intake.users:
        raise ConfigError([])  # reported by main() with a hint
    store = Store(config.intake, config.jobs)
    store.open(check_only=check_only)
    return config, store, Tokens(load_hashes(config.intake.users))


async def serve(config, store, tokens, sockets: list[socket.socket]) -> None:  # noqa: ANN001
    from aiohttp import web

    from ..config.intake import parse_listen
    from .app import make_app

    app = make_app(config, store, tokens)
    # read_bufsize: the body is read in pieces of up to this much (aiohttp's default of
    # 64 KiB costs a third of the throughput in per-piece overhead)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, read_bufsize=READ_BUFSIZE)
    await runner.setup()
    if sockets:
        sites = [web.SockSite(runner, s, shutdown_timeout=SHUTDOWN_TIMEOUT) for s in sockets]
    else:
        where = parse_listen(config.intake.listen)
        sites = [web.UnixSite(runner, where, shutdown_timeout=SHUTDOWN_TIMEOUT)
                 if isinstance(where, str) else
                 web.TCPSite(runner, where[0], where[1], shutdown_timeout=SHUTDOWN_TIMEOUT)]
    for site in sites:
        await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    notifier = Notifier.from_environment()
    where = ", ".join(site.name for site in sites)
    log.info("odbackupd-intake %s listening on %s for %d users", __version__, where,
             len(store.areas))
    notifier.ready(f"listening on {where}")
    sweep_every = max(1.0, min(60.0, store.expiry / 10))

    async def sweeper() -> None:
        while True:
            for up in store.sweep():
                log.info("intake: unfinished upload of '%s' by %s expired (%d of %d bytes); "
                         "deleted", up.name, up.user, up.offset, up.length,
                         extra={"journal_fields": {"INTAKE_USER": up.user, "INTAKE_NAME": up.name}})
            await asyncio.sleep(sweep_every)

    task = asyncio.create_task(sweeper())
    await stop.wait()
    notifier.stopping()
    task.cancel()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="odbackupd-intake", description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=Path("/etc/odbackupd/odbackupd.toml"),
                    metavar="PATH", help="configuration file (default %(default)s)")
    ap.add_argument("--check-config", action="store_true",
                    help="check the configuration, the token files and the directories, then exit")
    ap.add_argument("--version", action="version", version=f"odbackupd-intake {__version__}")
    args = ap.parse_args(argv)
    setup_logging("odbackupd-intake")
    from .store import SetupError
    from .tokens import TokenError

    try:
        config, store, tokens = _prepare(args.config, args.check_config)
    except ConfigError as e:
        msg = str(e) or f"{args.config}: no [intake.user.NAME] table: nobody could upload " \
            "(add one; odctl intake add-user NAME makes its token)"
        print(f"odbackupd-intake: {msg}", file=sys.stderr)
        return 2
    except (SetupError, TokenError) as e:
        print(f"odbackupd-intake: {e}", file=sys.stderr)
        return 2
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        print("odbackupd-intake: needs aiohttp: apt-get install python3-aiohttp "
              "(dnf install python3-aiohttp)", file=sys.stderr)
        return 1
    if args.check_config:
        print(f"{args.config}: OK, {len(store.areas)} intake users")
        return 0
    try:
        asyncio.run(serve(config, store, tokens, listen_fds()))
    except OSError as e:
        print(f"odbackupd-intake: cannot listen on {config.intake.listen}: {e.strerror or e}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
