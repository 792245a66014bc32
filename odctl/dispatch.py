"""How an odctl command runs: with the daemon, in this process, or the daemon if it runs.

Each command declares (:func:`declare`) what it can do: a ``daemon`` coroutine, given the
D-Bus client (odctl/client.py), and/or an ``offline`` function that works in this process
with the library modules. :func:`run` applies one rule to every command:

- only ``offline``: it runs here; no bus is touched.
- only ``daemon``: it needs the daemon; if none runs, exit 6 (NotRunning).
- both: odctl asks the daemon when one owns its name on the bus, unless the command line
  gives one of the command's ``local_options`` (``--config``, ``--host``: what only this
  process can read, so the command runs here). When no daemon runs, the command runs here
  after a note on stderr (``fallback_note``, unless ``-q``). Only the connection decides:
  an error once the daemon answered is the daemon's answer, never a reason to fall back.

:func:`main_errors` turns what a command raises into the message and exit code odctl(1)
documents (odbackupd/bus/names.py).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from odbackupd.bus.names import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_NOT_LOGGED_IN

from . import render
from .errors import CliError

DaemonFn = Callable[[Any, argparse.Namespace], Awaitable[int]]
OfflineFn = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    daemon: DaemonFn | None = None
    offline: OfflineFn | None = None
    local_options: tuple[str, ...] = ()
    fallback_note: str | None = None


def declare(parser: argparse.ArgumentParser, *, daemon: DaemonFn | None = None,
            offline: OfflineFn | None = None, local_options: tuple[str, ...] = (),
            fallback_note: str | None = None) -> None:
    """Make ``parser``'s command run ``daemon`` and/or ``offline`` by the rule above."""
    if daemon is None and offline is None:
        raise ValueError(f"{parser.prog}: a command needs a daemon or an offline function")
    parser.set_defaults(odctl_command=Command(daemon, offline, tuple(local_options),
                                              fallback_note))


def how_it_runs(parser: argparse.ArgumentParser) -> str:
    """The sentence odctl(1) says about a command's need of the daemon (man/generate.py)."""
    cmd = parser.get_default("odctl_command")
    if cmd is None or cmd.daemon is None:
        return "Works without the daemon."
    if cmd.offline is None:
        return "Needs the running daemon (exit 6 without it)."
    local = " or ".join(f"--{o}" for o in cmd.local_options)
    return ("Asks the daemon when it runs, else works in odctl's own process"
            + (" (and says so on standard error)" if cmd.fallback_note else "")
            + (f"; given {local}, always in odctl's process." if local else "."))


class _NoDaemon:
    """What :func:`_ask_daemon` returns when nobody serves the bus name."""

    def __init__(self, why: Exception) -> None:
        self.why = why


async def _ask_daemon(cmd: Command, args: argparse.Namespace) -> Any:
    from .client import Client, DaemonNotRunning

    try:
        client = await Client.connect()
    except DaemonNotRunning as e:
        if cmd.offline is None:
            raise
        return _NoDaemon(e)
    try:
        return await cmd.daemon(client, args)
    finally:
        client.close()


def run(args: argparse.Namespace) -> int:
    """Run the command ``args`` names, by the one rule (module docstring)."""
    cmd: Command = args.odctl_command
    if cmd.daemon is None or any(getattr(args, o, None) is not None for o in cmd.local_options):
        return cmd.offline(args)
    import asyncio  # only for a command that may talk to the daemon

    result = asyncio.run(_ask_daemon(cmd, args))
    if not isinstance(result, _NoDaemon):
        return result
    if cmd.fallback_note and not args.quiet:
        print(f"odctl: {result.why}\nodctl: {cmd.fallback_note}", file=sys.stderr)
    return cmd.offline(args)


def check_names(args: argparse.Namespace) -> None:
    """Job and account names come from the (UTF-8) configuration: one that is not UTF-8
    names nothing, and must not reach the bus (D-Bus strings are UTF-8) or a JSON encoder."""
    for attr, table in (("job", "job"), ("account", "account")):
        value = getattr(args, attr, None)
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise CliError(f"no {table} {value!r}: the name is not valid UTF-8, and every "
                               f"[{table}.NAME] in the configuration is", EXIT_NOT_FOUND) from None


def main_errors(args: argparse.Namespace) -> int:
    """:func:`run`, with every error a command may end in as one line and its exit code
    (and ``{"ok": false, ...}`` on stdout with ``--json``), never a traceback."""
    from odbackupd.destinations.base import DestinationError, NotLoggedIn

    from .client import DaemonError, DaemonNotRunning

    try:
        check_names(args)
        return run(args)
    except CliError as e:
        return fail(args, str(e), e.code)
    except NotLoggedIn as e:
        return fail(args, str(e), EXIT_NOT_LOGGED_IN, "NotLoggedIn")
    except DestinationError as e:  # an unmounted disk, an unreachable drive: one line
        return fail(args, str(e), EXIT_FAILED)
    except DaemonNotRunning as e:
        return fail(args, str(e), e.exit, "NotRunning")
    except DaemonError as e:
        return fail(args, str(e), e.exit, e.code)
    except KeyboardInterrupt:
        print("odctl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `odctl jobs --json | head`: the reader has gone; no traceback, and no second
        # error when Python flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # as if killed by SIGPIPE, what a shell shows for `yes | head`


def fail(args: argparse.Namespace, message: str, code: int, name: str | None = None) -> int:
    if args.json:
        out: dict[str, Any] = {"ok": False, "error": message, "exit": code}
        if name:
            out["error_name"] = name
        render.out_json(out)
    print(f"odctl: {message}", file=sys.stderr)
    return code
