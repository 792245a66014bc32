"""Errors the controller raises. The D-Bus adapter (bus/) maps each ``code`` to a named
D-Bus error and odctl maps each to one exit code; the controller itself knows nothing of
D-Bus. Messages are for sysadmins and never contain secrets."""


class ControllerError(Exception):
    """Base class. ``code`` names the error kind; bus/ maps it to a D-Bus error name."""

    code = "Failed"


class NoSuchJob(ControllerError):
    code = "NoSuchJob"


class NoSuchAccount(ControllerError):
    code = "NoSuchAccount"


class NoSuchNotifier(ControllerError):
    code = "NoSuchNotifier"


class Busy(ControllerError):
    code = "Busy"


class NotLoggedIn(ControllerError):
    code = "NotLoggedIn"


class InvalidConfig(ControllerError):
    code = "InvalidConfig"


class InvalidArgs(ControllerError):
    code = "InvalidArgs"


class AccessDenied(ControllerError):
    """Raised by the D-Bus layer (the bus policy is the first line; the adapter checks the
    caller's uid/groups again for methods that change anything)."""

    code = "AccessDenied"
