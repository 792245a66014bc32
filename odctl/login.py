"""``odctl login ACCOUNT`` and ``odctl logout ACCOUNT``, done in this process.

One login flow, rendered the same whichever does the steps: :func:`login_flow` over a
:class:`Steps` — :class:`InProcess` (:class:`odbackupd.accounts.AccountLogin` in this
process, when no daemon runs) or :class:`ViaDaemon` (StartLogin / LoginStatusChanged /
CompleteLogin over D-Bus, the daemon running the same account steps). In-process logins
write the account's token cache in the state directory, so odctl must run as root or as
the daemon's user; the daemon picks up a new login on its next token request.

* default / ``--device-code``: prints Microsoft's URL and a code, waits for the sign-in
  (from any browser, on any machine); made for servers without a browser.
* ``--browser``: prints a sign-in URL; the user signs in and pastes back the address the
  browser ended on. Needed for personal accounts when Microsoft refuses device codes to
  third-party apps; odctl switches to it by itself when the service refuses a device code
  (unless ``--device-code`` was given), through the daemon as in process.
* app-only accounts (``client_secret_file``/``certificate_file``): nothing to sign in;
  odctl gets a token with the credential to prove it works.

Prompts go to ``err`` (stderr), results to ``out`` (stdout; one JSON object with
``--json``). Exit codes: 0 ok, 1 failed, 2 configuration or usage problem, 3 no such
account, 130 interrupted (through the daemon, its other errors keep odctl's usual codes).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from odbackupd.accounts import AccountError, CredentialUnavailable, DeviceCodeRefused

if TYPE_CHECKING:  # graph (msal) is imported only when a login is run, not to build odctl's parser
    from odbackupd.accounts import AccountLogin

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


class Steps(Protocol):
    """The steps of a login, in this process or in the daemon. ``label``: how results name
    the account. Errors: :class:`~odbackupd.accounts.AccountError` and its subclasses."""

    label: str

    def begin(self, flow: str) -> dict: ...  # accounts.Started.public(): flow, message, url …
    def wait_device(self) -> str: ...  # the username
    def complete_browser(self, redirected_url: str) -> str: ...  # the username


class InProcess:
    def __init__(self, login: AccountLogin) -> None:
        self.login = login
        self.label = f"account '{login.name}'"
        self._started: Any = None

    def begin(self, flow: str) -> dict:
        self._started = self.login.begin(flow)
        return self._started.public(self.login.name)

    def wait_device(self) -> str:
        return self.login.wait_device(self._started)

    def complete_browser(self, redirected_url: str) -> str:
        return self.login.complete_browser(self._started, redirected_url)


class ViaDaemon:
    """The daemon does the steps (it owns the token cache); this process shows them. The
    flow runs in a thread of its own (it blocks on stdin) while the loop of ``client``
    serves D-Bus. The daemon's errors other than the login's own (NoSuchAccount,
    AccessDenied, …) leave as :class:`~odctl.client.DaemonError`, which odctl reports as
    for any daemon command."""

    def __init__(self, client: Any, account: str, loop: Any) -> None:
        self.account = account
        self.label = account
        self._client = client
        self._loop = loop
        self._settled: Any = loop.create_future()

    async def subscribe(self) -> None:
        """Hear LoginStatusChanged before anything is started (subscribe first, then call)."""
        from odbackupd.bus import names

        await self._client.subscribe(self._on_signal, sender=names.BUS_NAME, path=names.ROOT_PATH,
                                     interface=names.MANAGER_IFACE, member="LoginStatusChanged")

    def _on_signal(self, msg: Any) -> None:
        from .client import unpack

        if msg.member == "LoginStatusChanged" and msg.body[0] == self.account:
            st = unpack(msg.body[1])
            if st.get("state") != "pending" and not self._settled.done():
                self._settled.set_result(st)

    def _on_loop(self, coro: Any) -> Any:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _call(self, member: str, signature: str, *args: Any) -> Any:
        from .client import DaemonError

        try:
            return self._on_loop(self._client.call(member, signature, *args))
        except DaemonError as e:
            if e.code == "DeviceCodeRefused":
                raise DeviceCodeRefused(str(e), account=self.account) from None
            if e.code == "InvalidConfig":
                raise CredentialUnavailable(str(e), account=self.account) from None
            if e.code in ("NotLoggedIn", "Failed"):
                raise AccountError(str(e), account=self.account) from None
            raise

    def begin(self, flow: str) -> dict:
        from .client import Variant

        return self._call("StartLogin", "sa{sv}", self.account, {"flow": Variant("s", flow)})

    def wait_device(self) -> str:
        status = self._call("GetLoginStatus", "s", self.account)
        if status.get("state") == "pending":
            status = self._on_loop(self._wait())
        return self._logged_in(status)

    async def _wait(self) -> dict:
        return await self._settled

    def complete_browser(self, redirected_url: str) -> str:
        return self._logged_in(self._call("CompleteLogin", "ss", self.account,
                                          redirected_url.strip()))

    def _logged_in(self, status: dict) -> str:
        if status.get("state") != "logged_in":
            raise AccountError(f"{self.account}: login {status.get('state')}: "
                               f"{status.get('message', '')}",
                               account=self.account)
        return str(status.get("username", "?"))


async def login_via_daemon(client: Any, args: argparse.Namespace) -> int:
    """``odctl login`` through the daemon (``client``: odctl's connection to it)."""
    import asyncio

    from odbackupd.threads import in_thread

    steps = ViaDaemon(client, args.account, asyncio.get_running_loop())
    await steps.subscribe()
    reply = _Reply(args, sys.stdout, sys.stderr)
    return await in_thread(lambda: login_flow(steps, reply, browser=getattr(args, "browser", False),
                                              device_only=getattr(args, "device_code",
                                                                  False)), "login")


def login_flow(steps: Steps, reply: _Reply, *, browser: bool = False,
               device_only: bool = False) -> int:
    """The device flow (falling back to the browser when the service refuses device codes,
    unless ``device_only``), or the browser flow; an app-only account's credential check."""
    try:
        if browser:
            username = _browser_login(steps, reply)
        else:
            try:
                started = steps.begin("device")
            except DeviceCodeRefused as e:
                if device_only:
                    raise
                reply.say(f"{e}\nTrying the browser flow instead.")
                username = _browser_login(steps, reply)
            else:
                if started["flow"] == "app":
                    return reply.ok(f"{steps.label}: {started['message']}", username=None,
                                    app_only=True)
                minutes = max(1, round(started.get("expires_in", 900) / 60))
                reply.say(f"{steps.label}: {started['message']}\n"
                          f"Waiting for the sign-in (the code is valid for {minutes} minutes; "
                          "Ctrl-C gives up)...")
                username = steps.wait_device()
    except CredentialUnavailable as e:
        return reply.fail(str(e), EXIT_USAGE)
    except AccountError as e:
        return reply.fail(str(e))
    except KeyboardInterrupt:
        return reply.fail("login interrupted; nothing was changed", EXIT_INTERRUPTED)
    return reply.ok(f"{steps.label}: logged in as {username}", username=username, app_only=False)


def _browser_login(steps: Steps, reply: _Reply) -> str:
    started = steps.begin("browser")
    reply.say(f"{steps.label}: open this address in a browser (on any machine), "
              f"sign in and allow access:\n\n  {started['url']}\n\n"
              f"The browser then shows a blank page. Copy the whole address from its address "
              f"bar (it starts with {started.get('redirect_uri', '')}?code=) and paste it here:")
    line = sys.stdin.readline()
    if not line.strip():
        raise AccountError(f"account '{reply.account}': no address was pasted; run odctl login "
                           f"{reply.account} --browser again", account=reply.account)
    return steps.complete_browser(line)


def _account_login(args: argparse.Namespace, config: Any, reply: _Reply) -> AccountLogin | int:
    name = args.account
    if name not in config.accounts:
        known = ", ".join(sorted(config.accounts)) or "none configured"
        return reply.fail(f"no account '{name}' in {config.path} (accounts: {known})",
                          EXIT_NOT_FOUND)
    from odbackupd.accounts import AccountLogin

    try:
        return AccountLogin(name, config.accounts[name], config.daemon.state_dir)
    except AccountError as e:
        return reply.fail(str(e))


def run_login(args: argparse.Namespace, config: Any, out: IO[str], err: IO[str]) -> int:
    """``odctl login ACCOUNT [--device-code | --browser] [--json]`` in this process."""
    reply = _Reply(args, out, err)
    login = _account_login(args, config, reply)
    if isinstance(login, int):
        return login
    return login_flow(InProcess(login), reply, browser=getattr(args, "browser", False),
                      device_only=getattr(args, "device_code", False))


def run_logout(args: argparse.Namespace, config: Any, out: IO[str], err: IO[str]) -> int:
    """``odctl logout ACCOUNT [--json]``: delete the stored tokens."""
    reply = _Reply(args, out, err)
    auth = _account_login(args, config, reply)
    if isinstance(auth, int):
        return auth
    if auth.app_only:
        return reply.ok(f"account '{auth.name}' logs in as an application; no login is "
                        f"stored (remove its credential to revoke access)",
                        was_logged_in=False, app_only=True)
    try:
        before = auth.logout()
    except AccountError as e:
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
