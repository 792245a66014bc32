"""``odctl login ACCOUNT`` / ``odctl logout ACCOUNT``: through the daemon when it runs (it
owns the tokens), else in this process — one login flow either way (odctl/login.py's
``login_flow``, which needs msal only in process)."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from odbackupd.bus.names import EXIT_OK

from .. import monitoring, offline, render
from ..dispatch import declare


async def logout_via_daemon(c: Any, args: argparse.Namespace) -> int:
    await c.call("Logout", "s", args.account)
    if args.json:
        render.out_json({"account": args.account, "state": "none"})
    elif not args.quiet:
        print(f"{args.account}: logged out")
    return EXIT_OK


def in_process(args: argparse.Namespace) -> int:
    """The login or logout odctl/login.py does here (its parser set ``login_handler``);
    what it changed goes to the metrics when this user may write the state database."""
    from .. import login

    cfg = offline.config(args)
    rc = args.login_handler(args, cfg, sys.stdout, sys.stderr)
    if rc == EXIT_OK:
        monitoring.after_login(cfg, offline.state(cfg), args.account,
                               args.login_handler is login.run_login)
    return rc


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    from .. import login

    login.add_login_parsers(sub, parents=[common])
    declare(sub.choices["login"], daemon=login.login_via_daemon, offline=in_process,
            fallback_note="logging in from this process")
    declare(sub.choices["logout"], daemon=logout_via_daemon, offline=in_process,
            fallback_note="logging out from this process")
