"""Logging in to a configured account: the account side of ``odctl login``, used alike by
odctl's in-process login and by the daemon's login sessions (service/logins.py).

:class:`AccountLogin` wraps the account's :class:`~odbackupd.graph.auth.Authenticator` (msal
is imported only when a login is really made) and turns everything it raises into the few
errors below, each naming the account in ``.account``: callers map them (the controller
to its named D-Bus errors, odctl to exit codes) without importing ``graph`` or reading
messages. Every method blocks (network, the token cache): call it off the event loop.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class AccountError(Exception):
    """A login step failed; the message is for a sysadmin (no token, no code)."""

    def __init__(self, message: str, *, account: str) -> None:
        super().__init__(message)
        self.account = account


class LoginNeeded(AccountError):
    """No usable login (expired, revoked, an app credential refused)."""


class CredentialUnavailable(AccountError):
    """An app-only account's secret or certificate cannot be read: a configuration problem."""


class DeviceCodeRefused(AccountError):
    """The service will not start a device-code login for this app/account: use the browser."""


@dataclass(frozen=True)
class Started:
    """A started login. ``flow``: "device" (show ``message`` — a URL and a code), "browser"
    (open ``url``, paste back the address that starts with ``redirect_uri``), or "app"
    (an app-only account: its credential was checked, nothing to sign in)."""

    flow: str
    message: str = ""
    verification_uri: str = ""
    user_code: str = ""
    expires_at: float = 0.0
    url: str = ""
    redirect_uri: str = ""
    handle: Any = None  # the authenticator's login object, for completing it

    def public(self, account: str) -> dict:
        """What may be shown or sent over D-Bus (no handle; empty values left out)."""
        out: dict[str, Any] = {"account": account, "flow": self.flow, "message": self.message,
                               "verification_uri": self.verification_uri,
                               "user_code": self.user_code,
                               "url": self.url, "redirect_uri": self.redirect_uri}
        if self.expires_at:
            out["expires_in"] = max(0, int(self.expires_at - time.time()))
        return {k: v for k, v in out.items() if v not in ("", None)}


class AccountLogin:
    """One account's login steps."""

    def __init__(self, name: str, account: Any, state_dir: Path) -> None:
        from .graph.auth import Authenticator

        self.name = name
        self.account = account
        with self._errors():
            self._auth = Authenticator(name, account, state_dir)

    @property
    def app_only(self) -> bool:
        return bool(self._auth.app_only)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        from .graph import auth as gauth
        from .graph.errors import GraphError, NotLoggedIn

        try:
            yield
        except gauth.CredentialUnavailable as e:
            raise CredentialUnavailable(str(e), account=self.name) from e
        except gauth.DeviceCodeRefused as e:
            raise DeviceCodeRefused(str(e), account=self.name) from e
        except NotLoggedIn as e:
            raise LoginNeeded(str(e), account=self.name) from e
        except GraphError as e:
            raise AccountError(str(e), account=self.name) from e

    def begin(self, flow: str) -> Started:
        """Start a login: "device" or "browser"; an app-only account checks its credential."""
        with self._errors():
            if self.app_only:
                self._auth.access_token(force_refresh=True)
                return Started("app", message=self.app_only_works())
            if flow == "browser":
                b = self._auth.begin_browser_login()
                return Started("browser", url=b.url, redirect_uri=b.redirect_uri, handle=b)
            d = self._auth.begin_device_login()
            return Started("device", message=d.message, verification_uri=d.verification_uri,
                           user_code=d.user_code, expires_at=d.expires_at, handle=d)

    def app_only_works(self) -> str:
        return (f"the app-only credential works (client {self.account.client_id}, tenant "
                f"{self.account.tenant})")

    def wait_device(self, started: Started, cancel: threading.Event | None = None) -> str:
        """Wait for the user to sign in with the device code; returns the username."""
        with self._errors():
            return self._auth.complete_device_login(started.handle, cancel)

    def complete_browser(self, started: Started, redirected_url: str) -> str:
        """Finish a browser login with the address the browser ended on; the username."""
        with self._errors():
            return self._auth.complete_browser_login(started.handle, redirected_url)

    def status(self) -> dict:
        """``{"logged_in", "username", "app_only"}`` from what is stored; no network."""
        with self._errors():
            return self._auth.status()

    def logout(self) -> dict:
        """Forget the login; returns the status before (who was logged in)."""
        with self._errors():
            before = self._auth.status()
            self._auth.logout()
            return before
