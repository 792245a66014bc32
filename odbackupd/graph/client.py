"""Microsoft Graph requests: tokens, retries, the Retry-After gate, errors, paging, drives.

Every Graph, upload and download request of one app goes through one :class:`GraphClient`
(or several sharing the app's gate), which

* waits at the app's process-wide Retry-After gate before sending, and closes the gate for
  everyone after a 429/503/509 (Retry-After in seconds or as an HTTP-date; when absent, an
  exponential back-off with jitter is used as the gate instead of hammering);
* retries 5xx, connection resets and timeouts with exponential back-off and jitter —
  only for requests that are safe to repeat; fragment PUTs are never resent blindly
  (graph/upload.py asks the session where it stands instead);
* answers a 401 by invalidating the token and refreshing it, then tries once more;
* turns error bodies into :class:`GraphError` with Graph's ``error.code`` (and the inner
  code), never with a URL in the message: upload and download URLs are bearer
  capabilities.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import requests

from .errors import GraphError, ItemNotFound, NotLoggedIn, QuotaExceeded
from .throttle import RetryAfterGate, parse_retry_after

log = logging.getLogger("odbackupd.graph")

THROTTLE_STATUSES = (429, 503, 509)
RETRY_STATUSES = (500, 502, 503, 504, 509, 429)
TRANSPORT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


class TokenSource(Protocol):
    """What the client needs of a login (graph/auth.py ``Authenticator``)."""

    def access_token(self, *, force_refresh: bool = False) -> str: ...

    def invalidate(self, token: str) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. ``attempts`` counts every try of one request; waits grow from
    ``base`` doubling up to ``cap`` seconds, each scaled by a random 0.5–1 (jitter, so
    parallel workers do not come back in lock-step)."""

    attempts: int = 12  # about 2.5 minutes of trying, then the run fails and resumes later
    base: float = 0.1  # a reset or a lost answer is usually over at once
    cap: float = 120.0

    def delay(self, attempt: int) -> float:
        return min(self.cap, self.base * (2 ** attempt)) * random.uniform(0.5, 1.0)


def encode_path(path: str) -> str:
    """A drive path (``Backups/job/snap/vol.1``) percent-encoded segment by segment, as
    Graph wants it between ``root:/`` and ``:`` (GRAPH-NOTES 1.3)."""
    return "/".join(quote(seg, safe="") for seg in path.split("/") if seg)


def error_code(resp: requests.Response) -> tuple[str | None, str | None, str]:
    """(code, inner code, message) of a Graph error body; Nones when it is not one."""
    try:
        err = resp.json().get("error")
    except ValueError:
        return None, None, (resp.text or "")[:200]
    if not isinstance(err, dict):
        return None, None, ""
    inner = err.get("innerError") or err.get("innererror") or {}
    return (
        err.get("code"),
        inner.get("code") if isinstance(inner, dict) else None,
        str(err.get("message", "")),
    )


def error_from(resp: requests.Response, what: str) -> GraphError:
    """The GraphError for a failed response; ``what`` says what we were doing."""
    code, inner, message = error_code(resp)
    detail = f"{what}: HTTP {resp.status_code}"
    if code:
        detail += f" {code}" + (f"/{inner}" if inner else "")
    if message:
        detail += f": {message}"
    if resp.status_code == 507 or code in ("quotaLimitReached", "insufficientStorage"):
        return QuotaExceeded(detail, status=resp.status_code, code=code)
    if resp.status_code == 404:
        return ItemNotFound(detail, status=404, code=code or inner)
    return GraphError(detail, status=resp.status_code, code=code)


class GraphClient:
    """Requests to one Graph endpoint on behalf of one login."""

    def __init__(
        self,
        tokens: TokenSource,
        graph_url: str,
        session: requests.Session,
        gate: RetryAfterGate,
        *,
        account: str = "",
        retry: RetryPolicy = RetryPolicy(),
        timeout: tuple[float, float] = (30.0, 300.0),
    ) -> None:
        self.tokens = tokens
        self.graph_url = graph_url.rstrip("/")
        self.session = session
        self.gate = gate
        self.account = account
        self.retry = retry
        self.timeout = timeout
        self.throttled = 0  # 429/503/509 answers seen (tests, status)

    # -- one attempt -------------------------------------------------------------------------
    def url(self, path: str) -> str:
        return path if path.startswith(("https://", "http://")) else self.graph_url + path

    def send(
        self,
        method: str,
        url: str,
        *,
        auth: bool = True,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        cancel: threading.Event | None = None,
        **kw: Any,
    ) -> requests.Response:
        """One request, after the gate; a throttling answer closes the gate for the app.

        ``auth=False`` for pre-authenticated upload and download URLs: they must not
        carry the bearer token (GRAPH-NOTES 1.10). Transport errors propagate.
        """
        h = dict(headers or {})
        if auth:
            h["Authorization"] = "Bearer " + (token or self.tokens.access_token())
        self.gate.wait(cancel)  # last thing before sending: the gate may close any moment
        kw.setdefault("timeout", self.timeout)
        resp = self.session.request(method, self.url(url), headers=h, **kw)
        if resp.status_code in THROTTLE_STATUSES:
            wait = parse_retry_after(resp.headers.get("Retry-After"))
            if wait is not None:
                self.gate.block(wait)
            self.throttled += 1
        return resp

    def pause_after(self, resp: requests.Response, attempt: int) -> None:
        """Wait before retrying after a 429/5xx answer.

        With a Retry-After the gate is already closed (``send``) and the next send waits
        there. Without one: a 429 closes the gate for a back-off delay (every worker of
        the app pauses), a 5xx just backs off this request.
        """
        if resp.status_code in THROTTLE_STATUSES and \
                parse_retry_after(resp.headers.get("Retry-After")) is not None:
            return
        delay = self.retry.delay(attempt)
        if resp.status_code == 429:
            self.gate.block(delay)
        else:
            time.sleep(delay)

    # -- with retries ------------------------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        *,
        what: str | None = None,
        ok: tuple[int, ...] = (200, 201, 202, 204),
        auth: bool = True,
        idempotent: bool = True,
        cancel: threading.Event | None = None,
        **kw: Any,
    ) -> requests.Response:
        """A request retried until it gives one of the ``ok`` statuses; else GraphError.

        ``idempotent=False``: a lost connection is not retried (the caller must find out
        whether the request took effect).
        """
        what = what or (
            f"{method} {url if not url.startswith('http') else '(pre-authenticated URL)'}"
        )
        refreshed = 0
        attempt = 0
        while True:
            token = None
            try:
                if auth:
                    token = self.tokens.access_token()
                resp = self.send(method, url, auth=auth, token=token, cancel=cancel, **kw)
            except TRANSPORT_ERRORS as e:
                attempt += 1
                if not idempotent or attempt >= self.retry.attempts:
                    raise GraphError(f"{what}: {type(e).__name__} (network problem)") from e
                log.debug("%s: %s; retrying", what, type(e).__name__)
                time.sleep(self.retry.delay(attempt))
                continue
            if resp.status_code in ok:
                return resp
            if resp.status_code == 401 and auth and token is not None:
                resp.close()
                if refreshed >= 2:
                    raise NotLoggedIn(
                        f"account {self.account!r}: Graph refuses the login ({what}: HTTP 401); "
                        f"run: odctl login {self.account}", account=self.account, status=401)
                refreshed += 1
                self.tokens.invalidate(token)
                self.tokens.access_token(force_refresh=True)
                continue
            if resp.status_code in RETRY_STATUSES and attempt + 1 < self.retry.attempts:
                attempt += 1
                log.debug("%s: HTTP %d; retrying", what, resp.status_code)
                self.pause_after(resp, attempt)
                resp.close()
                continue
            raise error_from(resp, what)

    def get_json(self, url: str, *, what: str | None = None, **kw: Any) -> dict:
        return self.request("GET", url, what=what, ok=(200,), **kw).json()

    def paged(self, url: str, *, what: str | None = None) -> Iterator[dict]:
        """Every item of a collection, following ``@odata.nextLink`` (an opaque absolute
        URL) to the end; an empty page that still has a nextLink is followed too."""
        empty_pages = 0
        next_url: str | None = url
        while next_url:
            body = self.get_json(next_url, what=what)
            items = body.get("value") or []
            yield from items
            empty_pages = 0 if items else empty_pages + 1
            if empty_pages > 100:
                raise GraphError(f"{what or url}: the service keeps answering empty pages")
            next_url = body.get("@odata.nextLink")


@dataclass(frozen=True)
class Drive:
    """A resolved drive: where its items live (``/drives/{id}``) and what it reports."""

    id: str
    base: str
    drive_type: str
    quota: dict
    owner: str


def resolve_drive(client: GraphClient, account: Any, app_only: bool = False) -> Drive:
    """The drive an ``[account.NAME]`` names: ``drive_id``, a SharePoint ``site``
    (``host:/sites/path`` or a site id) or the signed-in user's own (``drive = "me"``).

    Items are then always addressed as ``/drives/{id}``, which works for delegated and
    app-only tokens alike.
    """
    name = getattr(account, "name", "")
    select = "?$select=id,driveType,quota,owner"
    if getattr(account, "drive_id", None):
        path = f"/drives/{quote(account.drive_id, safe='')}"
    elif getattr(account, "site", None):
        site = account.site
        if ":/" in site:
            host, _, rel = site.partition(":")
            path = f"/sites/{quote(host, safe='')}:{quote(rel.rstrip('/'), safe='/')}:/drive"
        else:
            path = f"/sites/{quote(site, safe=',')}/drive"
    else:
        if app_only:
            raise GraphError(
                f"account {name!r} logs in app-only (client credentials), which has no "
                "\"me\" drive: set drive_id or site in [account." + name + "]")
        path = "/me/drive"
    body = client.get_json(path + select, what=f"account {name!r}: looking up its drive")
    owner = body.get("owner") or {}
    who = (owner.get("user") or owner.get("group") or owner.get("application") or {})
    return Drive(
        id=body["id"],
        base=f"/drives/{quote(body['id'], safe='!')}",
        drive_type=body.get("driveType", ""),
        quota=body.get("quota") or {},
        owner=str(who.get("email") or who.get("displayName") or ""),
    )
