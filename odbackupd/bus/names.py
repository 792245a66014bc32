"""Every name of the D-Bus API, its error names and odctl's exit codes, defined once.

Why one module: the daemon's adapter, odctl, the man pages and the tests must agree on
these strings and numbers; a second copy anywhere would drift. odctl imports this module
(it is plain constants, no D-Bus import), so an error the daemon sends is turned into the
same exit code everywhere.

Versioning: the major version is in every name (``ODBackup1``); additive revisions bump
``INTERFACE_VERSION`` (the Manager's ``InterfaceVersion`` property) and add keys to the
``a{sv}`` dictionaries, never new ``Foo2`` methods.
"""
from __future__ import annotations

from dataclasses import dataclass

BUS_NAME = "org.odbackupd.ODBackup1"
ROOT_PATH = "/org/odbackupd/ODBackup1"
JOB_PATH_PREFIX = f"{ROOT_PATH}/job/"
RUN_PATH_PREFIX = f"{ROOT_PATH}/run/"
MANAGER_IFACE = f"{BUS_NAME}.Manager"
JOB_IFACE = f"{BUS_NAME}.Job"
ERROR_PREFIX = f"{BUS_NAME}.Error."
POLICY_FILE = f"{BUS_NAME}.conf"
INTROSPECTION_FILE = f"{BUS_NAME}.xml"
ADMIN_GROUP = "odbackup"
# 2: RunFinished's resumed, reused_volumes, login_needed; 3: NotifyTest; 4: Error.DeviceCodeRefused
# (odctl falls back to the browser flow), StartLogin of an app-only account checks its
# credential (state "logged_in"), StartLogin's replies carry "flow" (and "redirect_uri")
INTERFACE_VERSION = 4

# Methods the bus policy lets anyone call (reading only); every other method of our
# interfaces changes something and needs root or the admin group (policy + adapter check).
READ_ONLY_METHODS = {
    MANAGER_IFACE: ("ListJobs", "GetJob", "ListSnapshots", "GetLoginStatus"),
    JOB_IFACE: (),
}

# -- odctl exit codes (odctl(1) EXIT STATUS; `odctl --help` epilog) ---------------------------
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_INTEGRITY = 4
EXIT_ACCESS_DENIED = 5
EXIT_NOT_RUNNING = 6
EXIT_NOT_LOGGED_IN = 7
EXIT_BUSY = 75  # EX_TEMPFAIL, as `odbackupd --once` uses for a job that is already running

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_FAILED: "failure (a run failed or was cancelled, the daemon reported an error)",
    EXIT_USAGE: "usage or configuration error, invalid arguments",
    EXIT_NOT_FOUND: "no such job, account or snapshot",
    EXIT_INTEGRITY: "stored data is damaged (verify found a bad volume, restore refused members)",
    EXIT_ACCESS_DENIED: "access denied: the command needs root or membership of group "
                        f"'{ADMIN_GROUP}'",
    EXIT_NOT_RUNNING: "the daemon is not running (or the system bus is unreachable)",
    EXIT_NOT_LOGGED_IN: "the account is not logged in: run odctl login ACCOUNT",
    EXIT_BUSY: "busy: the job or the daemon cannot take the request now",
}


@dataclass(frozen=True)
class ErrorName:
    """A named D-Bus error: ``code`` is the ControllerError code it carries."""

    code: str
    exit: int
    meaning: str

    @property
    def name(self) -> str:
        return ERROR_PREFIX + self.code


ERRORS: dict[str, ErrorName] = {e.code: e for e in (
    ErrorName("NoSuchJob", EXIT_NOT_FOUND, "no job of that name in the configuration"),
    ErrorName("NoSuchAccount", EXIT_NOT_FOUND, "no account of that name in the configuration"),
    ErrorName("NoSuchNotifier", EXIT_NOT_FOUND,
              "no [notify.NAME] of that name in the configuration"),
    ErrorName("Busy", EXIT_BUSY, "the job or daemon cannot take the request now"),
    ErrorName("AccessDenied", EXIT_ACCESS_DENIED,
              f"the caller is neither root nor a member of group '{ADMIN_GROUP}'"),
    ErrorName("NotLoggedIn", EXIT_NOT_LOGGED_IN, "the account needs `odctl login`"),
    ErrorName("DeviceCodeRefused", EXIT_FAILED,
              "the login service refuses a device-code login for the account: "
              "use the browser flow"),
    ErrorName("InvalidConfig", EXIT_USAGE, "the configuration file is invalid (old one kept)"),
    ErrorName("InvalidArgs", EXIT_USAGE, "an argument has a bad value"),
    ErrorName("Failed", EXIT_FAILED, "the operation failed; the message says why"),
)}
FAILED = ERRORS["Failed"]

# Errors the bus itself (or a D-Bus library) sends, and what odctl makes of them.
STANDARD_ERROR_EXITS: dict[str, int] = {
    "org.freedesktop.DBus.Error.AccessDenied": EXIT_ACCESS_DENIED,
    "org.freedesktop.DBus.Error.ServiceUnknown": EXIT_NOT_RUNNING,
    "org.freedesktop.DBus.Error.NameHasNoOwner": EXIT_NOT_RUNNING,
    "org.freedesktop.DBus.Error.NoServer": EXIT_NOT_RUNNING,
    "org.freedesktop.DBus.Error.InvalidArgs": EXIT_USAGE,
    "org.freedesktop.DBus.Error.UnknownMethod": EXIT_USAGE,
}


def error_for_code(code: str) -> ErrorName:
    """The named error for a ControllerError code (unknown codes are plain failures)."""
    return ERRORS.get(code, FAILED)


def exit_code_for_error(dbus_name: str | None) -> int:
    """The odctl exit code for a D-Bus error name (ours or the bus's)."""
    if dbus_name and dbus_name.startswith(ERROR_PREFIX):
        return ERRORS.get(dbus_name[len(ERROR_PREFIX):], FAILED).exit
    return STANDARD_ERROR_EXITS.get(dbus_name or "", EXIT_FAILED)


def exit_codes_epilog() -> str:
    """The EXIT STATUS table, for `odctl --help` and odctl(1)."""
    return "exit status:\n" + "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())


# -- object paths ---------------------------------------------------------------------------
def escape_path_element(name: str) -> str:
    """systemd's bus path escaping (sd_bus_path_encode): [A-Za-z0-9] stay, every other byte
    becomes ``_xx``; the empty string is ``_``. Job names may hold '-', '.', '@' …"""
    if not name:
        return "_"
    out = []
    for b in name.encode("utf-8"):
        c = chr(b)
        if c.isascii() and c.isalnum():
            out.append(c)
        else:
            out.append(f"_{b:02x}")
    return "".join(out)


def unescape_path_element(element: str) -> str:
    """Inverse of :func:`escape_path_element`."""
    if element == "_":
        return ""
    raw = bytearray()
    i = 0
    while i < len(element):
        if element[i] == "_" and i + 3 <= len(element):
            raw.append(int(element[i + 1:i + 3], 16))
            i += 3
        else:
            raw.append(ord(element[i]))
            i += 1
    return raw.decode("utf-8")


def job_path(name: str) -> str:
    return JOB_PATH_PREFIX + escape_path_element(name)


def run_path(run_id: int) -> str:
    """Identifies a run in BackupNow's reply and in the signals' dictionaries. No object is
    exported there (API revision 1): follow the Manager's RunStarted/RunFinished signals."""
    return f"{RUN_PATH_PREFIX}{int(run_id)}"


def run_id_from_path(path: str) -> int:
    if not path.startswith(RUN_PATH_PREFIX):
        raise ValueError(f"not a run path: {path!r}")
    return int(path[len(RUN_PATH_PREFIX):])
