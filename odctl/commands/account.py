"""``odctl login ACCOUNT`` / ``odctl logout ACCOUNT``: through the daemon when it runs (it
owns the tokens), else in this process (odctl/login.py, which needs msal only then)."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from odbackupd.bus import names
from odbackupd.bus.names import EXIT_FAILED, EXIT_OK, EXIT_USAGE

from .. import monitoring, offline, render
from ..dispatch import declare
from ..errors import CliError


async def login_via_daemon(c: Any, args: argparse.Namespace) -> int:
    """StartLogin → show the URL/code → wait for LoginStatusChanged (device flow), or
    read the redirected URL from stdin → CompleteLogin (browser flow)."""
    import asyncio

    from ..client import Variant, unpack

    loop = asyncio.get_running_loop()
    settled: asyncio.Future = loop.create_future()
    flow = "browser" if getattr(args, "browser", False) else "device"

    def on_signal(msg: Any) -> None:
        if msg.member == "LoginStatusChanged" and msg.body[0] == args.account:
            st = unpack(msg.body[1])
            if st.get("state") != "pending" and not settled.done():
                settled.set_result(st)

    await c.subscribe(on_signal, sender=names.BUS_NAME, path=names.ROOT_PATH,
                      interface=names.MANAGER_IFACE, member="LoginStatusChanged")
    info = await c.call("StartLogin", "sa{sv}", args.account, {"flow": Variant("s", flow)})
    if flow == "browser":
        print("Open this URL in a browser, sign in, then paste the address the browser was "
              f"sent to:\n  {info.get('url', '')}", file=sys.stderr)
        url = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if not url:
            raise CliError("no redirected URL given on stdin", EXIT_USAGE)
        status = await c.call("CompleteLogin", "ss", args.account, url)
    else:
        print(info.get("message") or f"To sign in, open {info.get('verification_uri')} and "
              f"enter the code {info.get('user_code')}", file=sys.stderr)
        current = await c.call("GetLoginStatus", "s", args.account)
        status = current if current.get("state") != "pending" else await settled
    ok = status.get("state") == "logged_in"
    if args.json:
        render.out_json(status)
    elif ok:
        if not args.quiet:
            print(f"{args.account}: logged in as {status.get('username', '?')}")
    else:
        print(f"odctl: {args.account}: login {status.get('state')}: "
              f"{status.get('message', '')}", file=sys.stderr)
    return EXIT_OK if ok else EXIT_FAILED


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
    declare(sub.choices["login"], daemon=login_via_daemon, offline=in_process,
            fallback_note="logging in from this process")
    declare(sub.choices["logout"], daemon=logout_via_daemon, offline=in_process,
            fallback_note="logging out from this process")
