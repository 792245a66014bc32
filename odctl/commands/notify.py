"""``odctl notify test NAME``: a test message through a notifier, sent by the daemon when it
runs (its credentials, its network) and no --config is given, else from this process."""
from __future__ import annotations

import argparse
from typing import Any

from odbackupd.bus.names import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_OK

from .. import offline, render
from ..dispatch import declare
from ..errors import CliError


def _show(args: argparse.Namespace, kind: str, where: str) -> int:
    if args.json:
        render.out_json({"notifier": args.name, "type": kind, "delivered": True})
    elif not args.quiet:
        print(f"{args.name}: test message delivered ({kind}, sent {where})")
    return EXIT_OK


async def by_daemon(c: Any, args: argparse.Namespace) -> int:
    result = await c.call("NotifyTest", "s", args.name)
    return _show(args, result.get("type", "?"), "by the daemon")


def from_here(args: argparse.Namespace) -> int:
    from odbackupd.notify.senders import DeliveryError, test_message

    try:
        kind = test_message(offline.config(args), args.name)
    except LookupError as e:
        raise CliError(str(e.args[0]), EXIT_NOT_FOUND) from e
    except DeliveryError as e:
        raise CliError(f"notifier {args.name}: {e}", EXIT_FAILED) from e
    return _show(args, kind, "from odctl")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("notify", parents=[common], help="notifiers ([notify.NAME])")
    nsub = p.add_subparsers(dest="notify_command", metavar="SUBCOMMAND", required=True)
    t = nsub.add_parser("test", parents=[common],
                        help="send a test message through a notifier now")
    t.add_argument("name", metavar="NAME", help="the NAME of a [notify.NAME] table")
    declare(t, daemon=by_daemon, offline=from_here, local_options=("config",))
