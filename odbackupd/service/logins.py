"""The daemon's login sessions (D-Bus StartLogin / CompleteLogin / GetLoginStatus / Logout).

A device login completes in the background: StartLogin returns the URL and code at once,
and the session's state (pending → logged_in | failed) is what GetLoginStatus and the
LoginStatusChanged signal report. The login steps themselves are the account side's
(:class:`odbackupd.accounts.AccountLogin`, the same steps odctl's in-process login runs);
this module only keeps the sessions and maps failures to the controller's named errors.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..accounts import AccountError, AccountLogin, Started
from ..threads import in_thread
from .errors import InvalidArgs, NoSuchAccount, named_errors

log = logging.getLogger("odbackupd.controller")

FLOWS = ("device", "browser")


@dataclass
class _Session:
    flow: str
    started: Started
    state: str = "pending"  # pending | logged_in | failed
    message: str = ""
    username: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)


class LoginSessions:
    """``get_config()``: the current configuration (a reload may change the accounts);
    ``spawn``: the controller's task tracker; ``on_change``: a session settled (the daemon's
    properties and LoginStatusChanged follow); ``on_login(account, ok)``: the metrics."""

    def __init__(self, get_config: Callable[[], Any], spawn: Callable[[Awaitable[Any]], Any],
                 on_change: Callable[[], None],
                 on_login: Callable[[str, bool], Awaitable[None]]) -> None:
        self._config = get_config
        self._spawn = spawn
        self._on_change = on_change
        self._on_login = on_login
        self._sessions: dict[str, _Session] = {}
        self._logins: dict[str, tuple[Any, AccountLogin]] = {}

    def _login(self, account: str, fresh: bool = False) -> AccountLogin:
        """The account's login steps; ``fresh``: read its credential and cache anew (a
        login is started: a rotated secret must count)."""
        config = self._config()
        try:
            cfg = config.accounts[account]
        except KeyError:
            known = ", ".join(sorted(config.accounts)) or "none"
            raise NoSuchAccount(f"no account {account!r} in the configuration (accounts: {known})",
                                account=account) from None
        cached = self._logins.get(account)
        if cached is not None and cached[0] == cfg and not fresh:
            return cached[1]
        with named_errors(f"account {account!r}"):
            login = AccountLogin(account, cfg, config.daemon.state_dir)
        self._logins[account] = (cfg, login)
        return login

    async def start(self, account: str, flow: str = "device") -> dict:
        """Begin an interactive login; the device flow then completes in the background.
        An app-only account has nobody to sign in: its credential is checked instead."""
        if flow not in FLOWS:
            raise InvalidArgs(f"unknown login flow {flow!r}: use \"device\" or \"browser\"",
                              argument="flow")
        login = self._login(account, fresh=True)
        self._cancel(account)
        with named_errors(f"account {account!r}"):
            started = await in_thread(lambda: login.begin(flow), f"login-{account}")
        if started.flow == "app":
            await self._on_login(account, True)
            return {**started.public(account), "state": "logged_in", "app_only": True}
        session = _Session(started.flow, started)
        self._sessions[account] = session
        if started.flow == "device":
            self._spawn(self._complete_device(account, login, session))
        return {**started.public(account), "state": "pending"}

    async def _complete_device(self, account: str, login: AccountLogin, session: _Session) -> None:
        try:
            user = await in_thread(lambda: login.wait_device(session.started, session.cancel),
                                   f"login-{account}")
        except AccountError as e:  # reported through the session's status
            session.state, session.message = "failed", str(e)
        else:
            self._logged_in(session, user)
            await self._on_login(account, True)
        self._on_change()

    async def complete(self, account: str, redirected_url: str) -> dict:
        """Finish a browser login with the URL the browser was redirected to."""
        login = self._login(account)
        session = self._sessions.get(account)
        if not session or session.flow != "browser" or session.state != "pending":
            raise InvalidArgs(f"no browser login pending for account {account!r}: start one first")
        try:
            user = await in_thread(lambda: login.complete_browser(session.started, redirected_url),
                                   f"login-{account}")
        except AccountError as e:
            session.state, session.message = "failed", str(e)
            with named_errors(f"account {account!r}: login failed"):
                raise
        self._logged_in(session, user)
        await self._on_login(account, True)
        return self.status(account)

    @staticmethod
    def _logged_in(session: _Session, user: str) -> None:
        session.state, session.username, session.message = "logged_in", user, f"logged in as {user}"

    def status(self, account: str) -> dict:
        """The session's state, else what the token cache says (no network)."""
        login = self._login(account)
        with named_errors(f"account {account!r}"):
            return self._status(account, login.status())

    def _status(self, account: str, st: dict) -> dict:
        session = self._sessions.get(account)
        out: dict[str, Any] = {"account": account, "app_only": bool(st.get("app_only", False))}
        if session is not None and session.state in ("pending", "failed"):
            out.update(state=session.state, message=session.message)
        elif st.get("logged_in"):
            out.update(state="logged_in", message="")
        else:
            out.update(state="none", message=f"not logged in: run odctl login {account}")
        if st.get("username"):
            out["username"] = st["username"]
        return out

    async def logout(self, account: str) -> None:
        login = self._login(account)
        self._cancel(account)
        with named_errors(f"account {account!r}"):
            await in_thread(login.logout, f"logout-{account}")
        await self._on_login(account, False)

    def _cancel(self, account: str) -> None:
        session = self._sessions.pop(account, None)
        if session is not None:
            session.cancel.set()

    def stop(self) -> None:
        for session in self._sessions.values():
            session.cancel.set()
