"""Logging in to Microsoft for one ``[account.NAME]``, and handing out access tokens.

Built on msal (the library Microsoft maintains for its identity platform):

* **Delegated** accounts (personal OneDrive, or a work account's own files): the user logs
  in once with the device-code flow (a URL and a code, for headless servers) or, where
  Microsoft refuses device codes (personal accounts with third-party apps), with the
  authorization-code flow where the user pastes back the address the browser ended on.
  msal keeps the tokens in a cache file (:mod:`.tokencache`) and refreshes them silently.
* **App-only** accounts (Business, ``client_secret_file`` or ``certificate_file``): no user,
  msal's client-credentials grant with a secret or certificate read from a systemd
  credential (``LoadCredential=``, so ``$CREDENTIALS_DIRECTORY``). Their tokens are kept in
  memory only.

Failures a sysadmin must act on raise :class:`~odbackupd.graph.errors.NotLoggedIn` with one
sentence that ends in ``run: odctl login NAME``; network trouble raises a plain
:class:`~odbackupd.graph.errors.GraphError` (retry later), never a stack trace from msal.

Scopes: :data:`SCOPES_DELEGATED` asks for ``Files.ReadWrite.All`` -- all files the user can
reach, which includes SharePoint libraries (``drive_id``) -- plus ``Sites.Read.All`` when
the account names a ``site`` (resolving a site by its path needs it). msal adds
``offline_access openid profile`` itself. App-only asks for ``<graph root>/.default``:
the application permissions an administrator granted (e.g. ``Sites.Selected``).

Why ~600 lines in one module: the delegated and app-only grants share one msal application
per account, its HTTP client, the token cache (reloaded when another process wrote it) and
one translation of msal's result dictionaries into the errors above; every other module
sees only :class:`Authenticator` and the login classes.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import os
import stat
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msal
import msal.authority
import msal.exceptions
import requests

from ..config import AccountConfig
from ..credentials import resolve_credential as _resolve_credential
from .errors import GraphError, NotLoggedIn
from .http import GraphSession, make_session
from .tokencache import TokenCacheFile, search_cache, token_cache_path

__all__ = [
    "SCOPES_DELEGATED",
    "Authenticator",
    "BrowserLogin",
    "CredentialUnavailable",
    "DeviceCodeRefused",
    "DeviceLogin",
    "LoginCancelled",
    "LoginDeclined",
    "LoginExpired",
    "LoginFailed",
    "app_only_scopes",
    "delegated_scopes",
    "resolve_credential",
    "token_cache_path",
]

SCOPES_DELEGATED = ["Files.ReadWrite.All"]

# msal logs token-endpoint events at DEBUG (it redacts most secrets, but not everything it
# could ever add). Our --log-level debug must not turn that on: msal speaks at WARNING only.
logging.getLogger("msal").setLevel(logging.WARNING)

log = logging.getLogger(__name__)

HTTP_TIMEOUT = (10.0, 60.0)  # (connect, read) seconds for every login-service request
REFRESH_MARGIN = 300.0  # msal refreshes an access token with less than 5 minutes left
MIN_POLL_WAIT = 0.05  # a device-code poll loop never spins, even if the server says 0
MAX_POLL_HICCUPS = 3  # consecutive failed polls before a device login gives up
#: The packaged unit's ``LoadCredential=odbackupd:/etc/odbackupd/credentials`` passes each
#: file there as the credential ``odbackupd_<file>``; odctl outside the service reads the file.
UNIT_CREDENTIALS = ("odbackupd_", Path("/etc/odbackupd/credentials"))

_MICROSOFT_HOSTS = frozenset({  # msal's own list, for an msal that does not export it
    "login.microsoftonline.com", "login.microsoft.com", "login.windows.net", "sts.windows.net",
    "login.chinacloudapi.cn", "login.microsoftonline.de", "login-us.microsoftonline.com",
    "login.microsoftonline.us", "login.usgovcloudapi.net"})

# errors of the token endpoint that mean "a human must log in again"
_RELOGIN_ERRORS = {"invalid_grant", "interaction_required", "consent_required",
                   "login_required", "invalid_client", "unauthorized_client"}


# ---------------------------------------------------------------------------- errors
class LoginFailed(GraphError):
    """A login attempt did not complete (declined, expired, refused, bad paste)."""


class LoginDeclined(LoginFailed):
    """The user said no on Microsoft's page."""


class LoginExpired(LoginFailed):
    """The device code (or the pasted authorization code) expired before use."""


class LoginCancelled(LoginFailed):
    """The caller cancelled a waiting device-code login."""


class DeviceCodeRefused(LoginFailed):
    """The service would not start a device-code login for this app/account type."""


class CredentialUnavailable(NotLoggedIn):
    """The app-only secret or certificate cannot be read."""


# ---------------------------------------------------------------------------- helpers
def delegated_scopes(account: AccountConfig) -> list[str]:
    """Scopes of a user login for ``account`` (see the module docstring)."""
    base = ["Files.Read.All"] if getattr(account, "read_only", False) else SCOPES_DELEGATED
    return base + (["Sites.Read.All"] if account.site else [])


def app_only_scopes(account: AccountConfig) -> list[str]:
    """``<graph root>/.default`` for the account's cloud (graph_url without /v1.0)."""
    parts = urlsplit(account.graph_url)
    return [f"{parts.scheme}://{parts.netloc}/.default"]


def resolve_credential(path: Path) -> Path:
    """The file behind a ``client_secret_file``/``certificate_file`` setting (see
    :func:`odbackupd.credentials.resolve_credential`)."""
    return _resolve_credential(path, UNIT_CREDENTIALS)


def readable_by_everyone(path: Path) -> str | None:
    """Why every local user can read ``path`` (world-readable, and every directory above it
    world-searchable), or None. A 0644 file in a 0700 directory is not exposed."""
    st = os.stat(path)
    if not st.st_mode & stat.S_IROTH:
        return None
    for d in Path(os.path.realpath(path)).parents:
        if not os.stat(d).st_mode & stat.S_IXOTH:
            return None
    return f"mode {stat.S_IMODE(st.st_mode):04o}"


def _first_line(text: str | None) -> str:
    """AAD's error_description without the trace/correlation ids that follow it."""
    return (text or "").strip().splitlines()[0].strip() if (text or "").strip() else ""


def _describe(result: dict) -> str:
    desc = _first_line(result.get("error_description"))
    err = result.get("error")
    if isinstance(err, dict):  # a Graph-style body from something in between
        return _first_line(err.get("message")) or str(err.get("code", "error"))
    return f"{err}: {desc}" if desc else str(err)


def _msal_version() -> tuple[int, ...]:
    return tuple(int(p) for p in msal.__version__.split(".")[:2] if p.isdigit())


class _MsalHttp:
    """The shared :class:`GraphSession` as msal's ``http_client``, with timeouts.

    msal calls ``get``/``post`` without a timeout; a login host that stops answering must
    not hang a refresh in an upload worker forever.
    """

    def __init__(self, session: GraphSession) -> None:
        self.session = session

    def get(self, url: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", HTTP_TIMEOUT)
        return self.session.get(url, **kw)

    def post(self, url: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", HTTP_TIMEOUT)
        return self.session.post(url, **kw)

    def close(self) -> None:  # the session belongs to the Authenticator's owner
        pass


@dataclass(frozen=True)
class DeviceLogin:
    """A started device-code login: show ``message`` (or the URL and code) to the user."""

    verification_uri: str
    user_code: str
    message: str
    expires_at: float  # time.time() after which the code is dead
    interval: float = field(repr=False)
    _flow: dict = field(repr=False, compare=False)
    _app: msal.PublicClientApplication = field(repr=False, compare=False)


@dataclass(frozen=True)
class BrowserLogin:
    """A started authorization-code login: the user opens ``url``, signs in, and pastes
    back the address the browser ends on (``redirect_uri?code=...``, a blank page)."""

    url: str
    redirect_uri: str
    _flow: dict = field(repr=False, compare=False)
    _app: msal.PublicClientApplication = field(repr=False, compare=False)


# ---------------------------------------------------------------------------- the class
class Authenticator:
    """Tokens for one configured account; shared by every upload worker of the daemon.

    Thread-safe: msal application objects are not guaranteed to be, so every msal call
    on the shared cache happens under one lock. Login flows use their own msal app and a
    fresh cache, so a user taking minutes to type a code blocks no upload.
    """

    def __init__(self, name: str, account: AccountConfig, state_dir: Path,
                 session: GraphSession | None = None) -> None:
        self.name = name
        self.account = account
        self.session = session or make_session(account.ca_bundle)
        self._http = _MsalHttp(self.session)
        self.app_only: bool = (account.client_secret_file is not None
                               or account.certificate_file is not None)
        self.authority = f"{account.authority_url.rstrip('/')}/{account.tenant}"
        self._cache = TokenCacheFile(token_cache_path(state_dir, name), owner_of=state_dir)
        self._lock = threading.RLock()
        self._public: msal.PublicClientApplication | None = None
        self._confidential: msal.ConfidentialClientApplication | None = None
        self._current: tuple[str, float] | None = None  # (token, expires_at) fast path

    # ------------------------------------------------------------------ msal apps
    def _app_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"authority": self.authority, "http_client": self._http}
        host = (urlsplit(self.account.authority_url).hostname or "").lower()
        if host not in getattr(msal.authority, "WELL_KNOWN_AUTHORITY_HOSTS", _MICROSOFT_HOSTS):
            # not a Microsoft host (a test emulator, a private proxy name): msal would ask
            # login.microsoftonline.com to validate it, and that cannot know it
            if "instance_discovery" in inspect.signature(msal.ClientApplication).parameters:
                kw["instance_discovery"] = False
            else:  # msal < 1.22 (Debian bookworm has 1.20)
                kw["validate_authority"] = False
        return kw

    def _build(self, factory: Any, **kw: Any) -> Any:
        """Construct an msal app (it fetches the OIDC configuration right away)."""
        try:
            with self._service_call():
                return factory(self.account.client_id, **self._app_kwargs(), **kw)
        except ValueError as e:  # msal: "Unable to get authority configuration ..."
            raise GraphError(f"account '{self.name}': the login service at "
                             f"{self.authority} did not answer as expected: {e}") from e

    def _public_app(self) -> msal.PublicClientApplication:
        if self._public is None:
            self._public = self._build(msal.PublicClientApplication,
                                       token_cache=self._cache.cache)
        return self._public

    def _login_app(self) -> msal.PublicClientApplication:
        """A separate app with an empty cache for one interactive login."""
        return self._build(msal.PublicClientApplication,
                           token_cache=msal.SerializableTokenCache())

    def _confidential_app(self) -> msal.ConfidentialClientApplication:
        if self._confidential is None:
            self._confidential = self._build(msal.ConfidentialClientApplication,
                                             client_credential=self._client_credential())
        return self._confidential

    def _client_credential(self) -> str | dict:
        acct = self.account
        setting = "client_secret_file" if acct.client_secret_file else "certificate_file"
        configured = acct.client_secret_file or acct.certificate_file
        assert configured is not None
        try:
            path = resolve_credential(configured)
            exposed = readable_by_everyone(path)
            if exposed:
                raise CredentialUnavailable(
                    f"account '{self.name}': {setting} {path} is readable by every user "
                    f"({exposed}), so anyone on this machine can act as the app: "
                    f"run chmod 600 {path} (or move it to /etc/odbackupd/credentials/, "
                    "root only), and consider rotating the secret")
            data = path.read_bytes()
        except OSError as e:
            detail = str(e) if isinstance(e, FileNotFoundError) and not e.filename \
                else f"{e.filename or configured}: {e.strerror or e}"
            raise CredentialUnavailable(
                f"account '{self.name}': cannot read {setting}: {detail}; then check with: "
                f"odctl login {self.name}") from e
        if acct.client_secret_file:
            secret = data.decode("utf-8", "replace").strip()
            if not secret:
                raise CredentialUnavailable(
                    f"account '{self.name}': {setting} {path} is empty; put the client "
                    f"secret's value in it, then check with: odctl login {self.name}")
            return secret
        return self._certificate_credential(path, data)

    def _certificate_credential(self, path: Path, pem: bytes) -> dict:
        """msal's certificate credential from one PEM holding the key and the cert."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization

        try:
            key = serialization.load_pem_private_key(pem, password=None)
            cert = x509.load_pem_x509_certificate(pem)
        except (ValueError, TypeError) as e:
            raise CredentialUnavailable(
                f"account '{self.name}': certificate_file {path} must hold an unencrypted "
                f"PEM private key and its PEM certificate ({e}); then check with: "
                f"odctl login {self.name}") from e
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
        cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        credential = {"private_key": key_pem, "public_certificate": cert_pem}
        if _msal_version() < (1, 35):  # later msal signs PS256 with a SHA-256 thumbprint
            credential["thumbprint"] = cert.fingerprint(hashes.SHA1()).hex()  # noqa: S303
        return credential

    # ------------------------------------------------------------------ errors
    def _network_error(self, e: Exception) -> GraphError:
        host = urlsplit(self.account.authority_url).netloc
        kind = "TLS certificate not trusted (set ca_bundle?)" \
            if isinstance(e, requests.exceptions.SSLError) else type(e).__name__
        return GraphError(f"account '{self.name}': cannot reach the login service {host}: "
                          f"{kind}")

    @contextlib.contextmanager
    def _service_call(self) -> Iterator[None]:
        """Network trouble and msal's own errors (a 5xx, an HTML page) become one-line
        GraphErrors: worth retrying later, not a reason to log in again."""
        try:
            yield
        except requests.RequestException as e:
            raise self._network_error(e) from e
        except msal.exceptions.MsalError as e:
            raise GraphError(f"account '{self.name}': the login service failed: {e}") from e

    def _not_logged_in(self, why: str, code: str | None = None) -> NotLoggedIn:
        return NotLoggedIn(f"account '{self.name}': {why}; run: odctl login {self.name}",
                           account=self.name, code=code)

    def _token_error(self, result: dict) -> GraphError:
        err = result.get("error") if isinstance(result.get("error"), str) else None
        if err in _RELOGIN_ERRORS:
            if self.app_only:
                return NotLoggedIn(
                    f"account '{self.name}': the app-only credential was refused "
                    f"({_describe(result)}); fix {self._credential_setting()}, then check "
                    f"with: odctl login {self.name}", account=self.name, code=str(err))
            return self._not_logged_in(
                f"the login has expired or was revoked ({_describe(result)})", str(err))
        return GraphError(f"account '{self.name}': getting a token failed: "
                          f"{_describe(result)}", code=str(err) if err else None)

    def _credential_setting(self) -> str:
        return "client_secret_file" if self.account.client_secret_file else "certificate_file"

    # ------------------------------------------------------------------ tokens
    def access_token(self, *, force_refresh: bool = False) -> str:
        """A valid access token for Graph, refreshed silently when needed.

        Picks up a login another process (``odctl login``) wrote since the last call.
        Raises NotLoggedIn when a human must log in again, GraphError when the login
        service is unreachable or answers nonsense (worth retrying later).
        """
        with self._lock:
            if not force_refresh and self._current is not None \
                    and self._current[1] - REFRESH_MARGIN > time.time() \
                    and (self.app_only or not self._cache.changed_on_disk()):
                return self._current[0]
            self._current = None
            with self._service_call():
                if self.app_only:
                    result = self._client_token(force_refresh)
                else:
                    result = self._user_token(force_refresh)
            if "access_token" not in result:
                raise self._token_error(result)
            token = result["access_token"]
            self._current = (token, time.time() + float(result.get("expires_in", 0)))
            return token

    def _user_token(self, force_refresh: bool) -> dict:
        with self._cache.locked():
            self._cache.reload_if_changed()
            accounts = self._cache.accounts()
            if not accounts or not self._cache.has_refresh_token():
                raise self._not_logged_in("not logged in")
            app = self._public_app()
            try:
                found = app.get_accounts()
                if not found:
                    raise self._not_logged_in("not logged in")
                result = app.acquire_token_silent_with_error(
                    delegated_scopes(self.account), account=found[0],
                    force_refresh=force_refresh)
            finally:
                self._cache.save()  # a rotated refresh token must never be lost
        if result is None:  # no refresh token matched (other client id, other cloud)
            raise self._not_logged_in("the saved login does not fit this account's "
                                      "client_id/authority")
        return result

    def _client_token(self, force_refresh: bool) -> dict:
        app = self._confidential_app()
        if force_refresh:
            cache = app.token_cache
            for at in search_cache(cache, msal.TokenCache.CredentialType.ACCESS_TOKEN):
                cache.remove_at(at)
        return app.acquire_token_for_client(app_only_scopes(self.account))

    def invalidate(self, token: str) -> None:
        """Graph answered 401 with ``token``: never hand it out again (the next
        :meth:`access_token` refreshes). Tokens handed out since are left alone."""
        with self._lock:
            if self._current is not None and self._current[0] == token:
                self._current = None
            if self.app_only:
                if self._confidential is not None:
                    cache = self._confidential.token_cache
                    for at in search_cache(cache, msal.TokenCache.CredentialType.ACCESS_TOKEN,
                                           {"secret": token}):
                        cache.remove_at(at)
                return
            with self._cache.locked():
                self._cache.reload_if_changed()
                if self._cache.remove_access_token(token):
                    self._cache.save()

    # ------------------------------------------------------------------ device code
    def _no_user(self) -> GraphError:
        return GraphError(
            f"account '{self.name}' logs in as an application ({self._credential_setting()}"
            f"): there is no user to sign in; odctl login {self.name} only checks the "
            f"credential")

    def begin_device_login(self) -> DeviceLogin:
        """Ask for a device code; the user opens ``verification_uri`` and types the code."""
        if self.app_only:
            raise self._no_user()
        self._cache.check_writable()  # before the user spends minutes signing in
        app = self._login_app()
        try:
            with self._service_call():
                flow = app.initiate_device_flow(scopes=delegated_scopes(self.account))
        except ValueError as e:  # not JSON, or no device endpoint in the OIDC document
            raise DeviceCodeRefused(self._refused_text(str(e))) from e
        if "user_code" not in flow:
            raise DeviceCodeRefused(self._refused_text(_describe(flow)),
                                    code=flow.get("error") if isinstance(
                                        flow.get("error"), str) else None)
        return DeviceLogin(
            verification_uri=flow["verification_uri"], user_code=flow["user_code"],
            message=flow.get("message") or
            f"To sign in, open {flow['verification_uri']} and enter the code "
            f"{flow['user_code']}.",
            expires_at=float(flow["expires_at"]), interval=float(flow.get("interval", 5)),
            _flow=flow, _app=app)

    def _refused_text(self, detail: str) -> str:
        hint = " Personal accounts: use odctl login --browser." \
            if self.account.tenant == "consumers" else ""
        return (f"account '{self.name}': the login service refused a device-code login "
                f"({detail}).{hint}")

    def complete_device_login(self, login: DeviceLogin,
                              cancel: threading.Event | None = None) -> str:
        """Wait until the user approved (returns the username), declined, let the code
        expire or ``cancel`` was set; the last three raise a LoginFailed subclass."""
        flow, app = login._flow, login._app
        interval = login.interval
        hiccups = 0
        while True:
            if cancel is not None and cancel.is_set():
                raise LoginCancelled(f"account '{self.name}': login cancelled")
            if time.time() >= login.expires_at:
                raise self._expired()
            flow["interval"] = 1  # msal polls once and returns (we do the waiting)
            try:
                with self._service_call():
                    result = app.acquire_token_by_device_flow(
                        flow, exit_condition=lambda f: True)
                hiccups = 0
            except GraphError as e:  # a blip must not waste the user's sign-in
                hiccups += 1
                if hiccups >= MAX_POLL_HICCUPS:
                    raise
                log.warning("%s (retrying)", e)
                # msal replays a 5xx answer for 5 s: asking sooner cannot succeed
                blip = 5.0 if isinstance(e.__cause__, msal.exceptions.MsalError) else 0.0
                result = {"error": "authorization_pending"}
            else:
                blip = 0.0
            error = result.get("error")
            if "access_token" in result:
                return self._adopt(app, result)
            if error == "slow_down":
                interval += 5
            if error in ("authorization_pending", "slow_down"):
                wait = max(interval, blip, MIN_POLL_WAIT)
                if cancel is not None:
                    cancel.wait(wait)
                else:
                    time.sleep(wait)
                continue
            if error == "authorization_declined":
                raise LoginDeclined(f"account '{self.name}': the sign-in was declined",
                                    code=error)
            if error in ("expired_token", "code_expired"):
                raise self._expired()
            raise LoginFailed(f"account '{self.name}': login failed: {_describe(result)}",
                              code=str(error) if error else None)

    def _expired(self) -> LoginExpired:
        hint = (" Microsoft often refuses device codes for personal accounts with apps it "
                "has not approved; if the page said the code expired, use odctl login "
                f"{self.name} --browser.") if self.account.tenant == "consumers" else ""
        return LoginExpired(f"account '{self.name}': the code expired before the sign-in was "
                            f"completed; run odctl login {self.name} again.{hint}",
                            code="expired_token")

    # ------------------------------------------------------------------ browser
    def redirect_uri(self) -> str:
        """Microsoft's "native client" page on the account's login host: a blank page
        whose address carries the authorization code for the user to paste back."""
        return f"{self.account.authority_url.rstrip('/')}/common/oauth2/nativeclient"

    def begin_browser_login(self) -> BrowserLogin:
        """Start an authorization-code login (with PKCE); the user opens ``.url``."""
        if self.app_only:
            raise self._no_user()
        self._cache.check_writable()
        app = self._login_app()
        redirect = self.redirect_uri()
        with warnings.catch_warnings():
            # msal recommends response_mode=form_post, but a code POSTed to a blank page
            # cannot be pasted back: the code travels in the query, PKCE protects it
            warnings.filterwarnings("ignore", "response_mode='form_post'", UserWarning)
            flow = app.initiate_auth_code_flow(delegated_scopes(self.account),
                                               redirect_uri=redirect, prompt="select_account")
        return BrowserLogin(url=flow["auth_uri"], redirect_uri=redirect, _flow=flow, _app=app)

    def complete_browser_login(self, login: BrowserLogin, redirected_url: str) -> str:
        """Finish with the address the browser was sent to; returns the username."""
        text = redirected_url.strip()
        parts = urlsplit(text)
        params = dict(parse_qsl(parts.query)) or dict(parse_qsl(parts.fragment))
        if "error" in params:
            desc = _first_line(params.get("error_description")) or params["error"]
            cls = LoginDeclined if params["error"] == "access_denied" else LoginFailed
            raise cls(f"account '{self.name}': the sign-in page answered: {desc}",
                      code=params["error"])
        if "code" not in params:
            raise LoginFailed(
                f"account '{self.name}': that address carries no authorization code; paste "
                f"the whole address from the browser's address bar after signing in (it "
                f"starts with {login.redirect_uri}?code=)")
        try:
            with self._service_call():
                result = login._app.acquire_token_by_auth_code_flow(login._flow, params)
        except ValueError as e:  # msal: state mismatch, flow already used
            raise LoginFailed(f"account '{self.name}': the pasted address belongs to another "
                              f"login attempt ({e}); run odctl login {self.name} "
                              f"--browser again") from e
        if "access_token" not in result:
            if result.get("error") == "invalid_grant":
                raise LoginExpired(f"account '{self.name}': the code in that address expired "
                                   f"or was already used ({_describe(result)}); run odctl "
                                   f"login {self.name} --browser again", code="invalid_grant")
            raise LoginFailed(f"account '{self.name}': login failed: {_describe(result)}",
                              code=str(result.get("error")))
        return self._adopt(login._app, result)

    # ------------------------------------------------------------------ common
    def _adopt(self, app: msal.PublicClientApplication, result: dict) -> str:
        """Make a finished login the account's cache (replacing any earlier user)."""
        claims = result.get("id_token_claims") or {}
        accounts = app.get_accounts()
        username = claims.get("preferred_username") or (
            accounts[0].get("username") if accounts else None) or "unknown user"
        with self._lock, self._cache.locked():
            self._cache.replace_with(app.token_cache)
            self._current = None
        log.info("account %s: logged in as %s", self.name, username)
        return username

    def logout(self) -> None:
        """Forget the login: the cache file is deleted (no token stays on disk)."""
        with self._lock:
            self._current = None
            self._confidential = None
            if self.app_only:
                return
            with self._cache.locked():
                self._cache.delete()
        log.info("account %s: logged out", self.name)

    def status(self) -> dict:
        """``{"logged_in", "username", "app_only"}`` from what is stored; no network."""
        with self._lock:
            if self.app_only:
                try:
                    self._client_credential()
                    ok = True
                except NotLoggedIn:
                    ok = False
                return {"logged_in": ok, "username": None, "app_only": True}
            self._cache.reload_if_changed()
            accounts = self._cache.accounts()
            logged_in = bool(accounts) and self._cache.has_refresh_token()
            return {"logged_in": logged_in,
                    "username": accounts[0].get("username") if logged_in else None,
                    "app_only": False}
