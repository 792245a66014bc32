"""Errors the controller raises: its boundary. The D-Bus adapter (bus/) maps each ``code``
to a named D-Bus error and odctl maps each to one exit code (``bus/names.py``, the one
table); the controller itself knows nothing of D-Bus. Messages are for sysadmins and never
contain secrets; the structured fields (``job``, ``account`` …) are for code, so nobody
parses a message back.

:func:`named_errors` is the boundary: every error from below (a destination, an account's
login, the state database, the file system) leaves a controller method as one of these.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager


class ControllerError(Exception):
    """Base class. ``code`` names the error kind; bus/ maps it to a D-Bus error name."""

    code = "Failed"


class Failed(ControllerError):
    """The operation failed; the message says why (a destination, the disk, a login service)."""


class NoSuchJob(ControllerError):
    code = "NoSuchJob"

    def __init__(self, message: str, *, job: str = "") -> None:
        super().__init__(message)
        self.job = job


class _AboutAccount(ControllerError):
    """An error about one ``[account.NAME]``: ``account`` is NAME."""

    def __init__(self, message: str, *, account: str = "") -> None:
        super().__init__(message)
        self.account = account


class NoSuchAccount(_AboutAccount):
    code = "NoSuchAccount"


class NoSuchNotifier(ControllerError):
    code = "NoSuchNotifier"

    def __init__(self, message: str, *, notifier: str = "") -> None:
        super().__init__(message)
        self.notifier = notifier


class Busy(ControllerError):
    """The daemon cannot take the request now (it is stopping)."""

    code = "Busy"


class NotLoggedIn(_AboutAccount):
    code = "NotLoggedIn"


class DeviceCodeRefused(_AboutAccount):
    """The login service will not start a device-code login for this account: odctl
    switches to the browser flow (as its in-process login does)."""

    code = "DeviceCodeRefused"


class InvalidConfig(ControllerError):
    code = "InvalidConfig"


class InvalidArgs(ControllerError):
    code = "InvalidArgs"

    def __init__(self, message: str, *, argument: str = "") -> None:
        super().__init__(message)
        self.argument = argument


class AccessDenied(ControllerError):
    """Raised by the D-Bus layer (the bus policy is the first line; the adapter checks the
    caller's uid/groups again for methods that change anything)."""

    code = "AccessDenied"

    def __init__(self, message: str, *, method: str = "", uid: int | None = None) -> None:
        super().__init__(message)
        self.method = method
        self.uid = uid


@contextmanager
def named_errors(doing: str = "") -> Iterator[None]:
    """Translate what a lower layer raises into the controller's named errors. ``doing``
    prefixes the message of a plain failure."""
    from ..accounts import AccountError, CredentialUnavailable, LoginNeeded
    from ..accounts import DeviceCodeRefused as AccountDeviceCodeRefused
    from ..destinations.base import DestinationError
    from ..destinations.base import NotLoggedIn as DestinationNotLoggedIn

    prefix = f"{doing}: " if doing else ""
    try:
        yield
    except ControllerError:
        raise
    except DestinationNotLoggedIn as e:
        raise NotLoggedIn(str(e), account=e.account or "") from e
    except LoginNeeded as e:
        raise NotLoggedIn(str(e), account=e.account) from e
    except AccountDeviceCodeRefused as e:
        raise DeviceCodeRefused(str(e), account=e.account) from e
    except CredentialUnavailable as e:
        raise InvalidConfig(str(e)) from e
    except AccountError as e:
        raise Failed(f"{prefix}{e}") from e
    except DestinationError as e:
        raise Failed(f"{prefix}{e}") from e
    except sqlite3.Error as e:
        raise Failed(f"{prefix}the state database: {e}") from e
    except OSError as e:
        raise Failed(f"{prefix}{e.filename + ': ' if e.filename else ''}{e.strerror or e}") from e
