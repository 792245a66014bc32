"""``odctl login ACCOUNT`` and ``odctl logout ACCOUNT``, done in this process.

odctl's main module uses these when no daemon is running (when one is, it asks the daemon
over D-Bus, which runs the same :class:`~odbackupd.graph.auth.Authenticator` steps). Both
write the account's token cache in the state directory, so odctl must run as root or as
the daemon's user; the daemon picks up a new login on its next token request.

* default / ``--device-code``: prints Microsoft's URL and a code, waits for the sign-in
  (from any browser, on any machine); made for servers without a browser.
* ``--browser``: prints a sign-in URL; the user signs in and pastes back the address the
  browser ended on. Needed for personal accounts when Microsoft refuses device codes to
  third-party apps; odctl switches to it by itself when the service refuses a device code
  (unless ``--device-code`` was given).
* app-only accounts (``client_secret_file``/``certificate_file``): nothing to sign in;
  odctl gets a token with the credential to prove it works.

Prompts go to ``err`` (stderr), results to ``out`` (stdout; one JSON object with
``--json``). Exit codes: 0 ok, 1 failed, 2 configuration or usage problem, 3 no such
account, 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from odbackupd.graph.errors import GraphError

if TYPE_CHECKING:  # graph.auth imports msal: only when a login is run, not to build odctl's parser
    from odbackupd.graph.auth import Authenticator

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_INTERRUPTED = 130


def add_login_parsers(subparsers: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Add ``login`` and ``logout`` to odctl's subparsers.

    ``parents``: odctl's common options (--config, --json, -q); ``--json`` is added here
    when they do not provide it. Each parser sets ``login_handler`` to the function to
    call as ``args.login_handler(args, config, stdout, stderr)``.
    """
    has_json = any("--json" in a.option_strings for p in parents for a in p._actions)

    p = subparsers.add_parser(
        "login", parents=list(parents), help="log in to a OneDrive account",
        description="Log in to the OneDrive account [account.ACCOUNT] and store its tokens "
                    "(0600) in the state directory. Default: the device-code flow (a URL "
                    "and a code to enter in any browser).")
    p.add_argument("account", metavar="ACCOUNT", help="the NAME of an [account.NAME] table")
    flow = p.add_mutually_exclusive_group()
    flow.add_argument("--device-code", action="store_true",
                      help="device-code flow only (no fallback to --browser)")
    flow.add_argument("--browser", action="store_true",
                      help="open a URL in any browser, then paste back the address it ends "
                           "on (personal accounts whose device code is refused)")
    if not has_json:
        p.add_argument("--json", action="store_true", help="result as JSON on stdout")
    p.set_defaults(login_handler=run_login)

    p = subparsers.add_parser(
        "logout", parents=list(parents), help="forget an account's login",
        description="Delete the account's stored tokens. Backups to it fail with 'not "
                    "logged in' until the next odctl login.")
    p.add_argument("account", metavar="ACCOUNT", help="the NAME of an [account.NAME] table")
    if not has_json:
        p.add_argument("--json", action="store_true", help="result as JSON on stdout")
    p.set_defaults(login_handler=run_logout)


class _Reply:
    """Writes the outcome once: a line for people, or one JSON object."""

    def __init__(self, args: argparse.Namespace, out: IO[str], err: IO[str]) -> None:
        self.json = bool(getattr(args, "json", False))
        self.quiet = bool(getattr(args, "quiet", False))
        self.out, self.err = out, err
        self.account = args.account

    def say(self, text: str) -> None:
        """A prompt or progress note for the person at the terminal (stderr)."""
        print(text, file=self.err, flush=True)

    def ok(self, text: str, **fields: Any) -> int:
        if self.json:
            self._json({"ok": True, "account": self.account, **fields})
        elif not self.quiet:
            print(text, file=self.out, flush=True)
        return EXIT_OK

    def fail(self, message: str, code: int = EXIT_FAILED) -> int:
        if self.json:
            self._json({"ok": False, "account": self.account, "error": message})
        print(f"odctl: {message}", file=self.err, flush=True)
        return code

    def _json(self, obj: dict) -> None:
        json.dump(obj, self.out, indent=2, sort_keys=True)
        self.out.write("\n")
        self.out.flush()


def _authenticator(args: argparse.Namespace, config: Any, reply: _Reply) -> Authenticator | int:
    name = args.account
    if name not in config.accounts:
        known = ", ".join(sorted(config.accounts)) or "none configured"
        return reply.fail(f"no account '{name}' in {config.path} (accounts: {known})",
                          EXIT_NOT_FOUND)
    from odbackupd.graph.auth import Authenticator

    return Authenticator(name, config.accounts[name], config.daemon.state_dir)


def run_login(args: argparse.Namespace, config: Any, out: IO[str], err: IO[str]) -> int:
    """``odctl login ACCOUNT [--device-code | --browser] [--json]`` in this process."""
    from odbackupd.graph.auth import CredentialUnavailable, DeviceCodeRefused

    reply = _Reply(args, out, err)
    auth = _authenticator(args, config, reply)
    if isinstance(auth, int):
        return auth
    try:
        if auth.app_only:
            auth.access_token(force_refresh=True)
            return reply.ok(f"account '{auth.name}': the app-only credential works (client "
                            f"{auth.account.client_id}, tenant {auth.account.tenant})",
                            username=None, app_only=True)
        if getattr(args, "browser", False):
            username = _browser_login(auth, reply)
        else:
            try:
                username = _device_login(auth, reply)
            except DeviceCodeRefused as e:
                if getattr(args, "device_code", False):
                    raise
                reply.say(f"{e}\nTrying the browser flow instead.")
                username = _browser_login(auth, reply)
    except CredentialUnavailable as e:
        return reply.fail(str(e), EXIT_USAGE)
    except GraphError as e:
        return reply.fail(str(e))
    except KeyboardInterrupt:
        return reply.fail("login interrupted; nothing was changed", EXIT_INTERRUPTED)
    return reply.ok(f"account '{auth.name}': logged in as {username}",
                    username=username, app_only=False)


def _device_login(auth: Authenticator, reply: _Reply) -> str:
    login = auth.begin_device_login()
    minutes = max(1, round((login.expires_at - time.time()) / 60))
    reply.say(f"account '{auth.name}': {login.message}\n"
              f"Waiting for the sign-in (the code is valid for {minutes} minutes; Ctrl-C "
              f"gives up)...")
    return auth.complete_device_login(login)


def _browser_login(auth: Authenticator, reply: _Reply) -> str:
    login = auth.begin_browser_login()
    reply.say(f"account '{auth.name}': open this address in a browser (on any machine), "
              f"sign in and allow access:\n\n  {login.url}\n\n"
              f"The browser then shows a blank page. Copy the whole address from its address "
              f"bar (it starts with {login.redirect_uri}?code=) and paste it here:")
    line = sys.stdin.readline()
    if not line.strip():
        raise GraphError(f"account '{auth.name}': no address was pasted; run odctl login "
                         f"{auth.name} --browser again")
    return auth.complete_browser_login(login, line)


def run_logout(args: argparse.Namespace, config: Any, out: IO[str], err: IO[str]) -> int:
    """``odctl logout ACCOUNT [--json]``: delete the stored tokens."""
    reply = _Reply(args, out, err)
    auth = _authenticator(args, config, reply)
    if isinstance(auth, int):
        return auth
    if auth.app_only:
        return reply.ok(f"account '{auth.name}' logs in as an application; no login is "
                        f"stored (remove its credential to revoke access)",
                        was_logged_in=False, app_only=True)
    try:
        before = auth.status()
        auth.logout()
    except GraphError as e:
        return reply.fail(str(e))
    if before["logged_in"]:
        text = f"account '{auth.name}': logged out ({before['username']}); tokens deleted"
    else:
        text = f"account '{auth.name}' was not logged in"
    return reply.ok(text, was_logged_in=before["logged_in"], username=before["username"],
                    app_only=False)


def main(argv: list[str] | None = None) -> int:
    """``python -m odctl.login login|logout ACCOUNT [--config PATH]``: the in-process
    commands on their own (what odctl runs when no daemon answers)."""
    from odbackupd.config import ConfigError, load_config

    ap = argparse.ArgumentParser(prog="odctl")
    ap.add_argument("--config", type=Path, default=Path("/etc/odbackupd/odbackupd.toml"),
                    metavar="PATH", help="configuration file")
    add_login_parsers(ap.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = ap.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        print(f"odctl: {args.config}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    return args.login_handler(args, config, sys.stdout, sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
