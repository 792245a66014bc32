"""Errors of the Graph client. Messages are for sysadmins: they name the account or the
item and what to do, and never contain tokens, secrets or pre-authenticated URLs."""
from __future__ import annotations


class GraphError(Exception):
    """A Graph request failed for good (after retries). ``status`` and ``code`` are
    Graph's HTTP status and ``error.code`` when there was a response."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class NotLoggedIn(GraphError):
    """No usable login for the account (never logged in, refresh token expired or
    revoked, consent withdrawn). The message ends with what to run: ``odctl login NAME``;
    ``account`` is NAME."""

    def __init__(self, message: str, *, account: str | None = None, status: int | None = None,
                 code: str | None = None) -> None:
        super().__init__(message, status=status, code=code)
        self.account = account


class QuotaExceeded(GraphError):
    """The drive is full (507 insufficientStorage, or the quota check before a run)."""


class ItemNotFound(GraphError):
    pass
