"""odctl's D-Bus client: plain method calls and signal subscriptions on the system bus.

Why raw messages instead of proxy objects: odctl runs one short command, and building a
proxy costs an Introspect round trip per object; the names and signatures are fixed by
the committed API (odbackupd/bus/org.odbackupd.ODBackup1.xml). Every error the daemon or the
bus sends becomes :class:`DaemonError` with its D-Bus name and the exit code from
:mod:`odbackupd.bus.names`; a bus that cannot be reached, or a daemon that does not own
its name, becomes :class:`DaemonNotRunning`.

``DBUS_SYSTEM_BUS_ADDRESS`` selects the bus (the tests use a private one).
"""
from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any, TypeVar

from odbackupd.bus import names

_DBUS_NAMES = ("BusType", "Message", "MessageType", "Variant", "MessageBus")


@functools.cache
def _dbus() -> SimpleNamespace:
    """dbus-fast (falling back to dbus-next, same API), imported on first use: odctl's
    offline commands (ls, restore, ...) import this module for its errors only, and the
    D-Bus library with asyncio costs ~0.1 s of start-up."""
    try:
        import dbus_fast as lib
        from dbus_fast.aio import MessageBus
    except ImportError:  # pragma: no cover
        import dbus_next as lib  # type: ignore
        from dbus_next.aio import MessageBus  # type: ignore
    return SimpleNamespace(**{n: getattr(lib, n) for n in _DBUS_NAMES[:-1]}, MessageBus=MessageBus)


def __getattr__(name: str) -> Any:  # ``from odctl.client import Variant``
    if name in _DBUS_NAMES:
        return getattr(_dbus(), name)
    raise AttributeError(name)


T = TypeVar("T")
DBUS = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")
PROPERTIES = "org.freedesktop.DBus.Properties"


BUS_ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
# what each method that needs privileges is, in odctl's words
COMMANDS = {"BackupNow": "starting a backup (backup-now)", "Cancel": "cancelling a run (cancel)",
            "Reload": "reloading the configuration (reload)", "StartLogin": "logging in (login)",
            "CompleteLogin": "logging in (login)", "Logout": "logging out (logout)"}


def refused_message(member: str) -> str:
    what = COMMANDS.get(member, f"calling {member}")
    return (f"the system bus refused {what}: it needs root or membership of group "
            f"'{names.ADMIN_GROUP}' (run it with sudo, or have an admin run: "
            f"usermod -aG {names.ADMIN_GROUP} {_me()}, then log in again)")


def _me() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


class DaemonNotRunning(Exception):
    """The system bus is unreachable or nobody owns org.odbackupd.ODBackup1."""

    exit = names.EXIT_NOT_RUNNING


class DaemonError(Exception):
    """An error reply: ``name`` is the D-Bus error name, ``exit`` odctl's exit code."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.exit = names.exit_code_for_error(name)

    @property
    def code(self) -> str:
        """Our short code (NoSuchJob …), or the full name for errors from the bus."""
        return (self.name[len(names.ERROR_PREFIX):] if self.name.startswith(names.ERROR_PREFIX)
                else self.name)


def unpack(value: Any) -> Any:
    """Variants and nested containers to plain Python values."""
    if isinstance(value, _dbus().Variant):
        return unpack(value.value)
    if isinstance(value, dict):
        return {k: unpack(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [unpack(v) for v in value]
    return value


def bus_description() -> str:
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or "the system bus"


class Client:
    """One connection to the bus for one odctl command."""

    def __init__(self, bus: Any) -> None:  # a dbus MessageBus
        self.bus = bus

    @classmethod
    async def connect(cls, require_daemon: bool = True) -> Client:
        d = _dbus()
        try:
            bus = await d.MessageBus(bus_type=d.BusType.SYSTEM).connect()
        except (OSError, ValueError, Exception) as e:  # noqa: BLE001 - every way a bus can be missing
            raise DaemonNotRunning(f"cannot connect to {bus_description()} "
                                   f"({e.__class__.__name__}: {e}); "
                                   "is odbackupd running (systemctl status odbackupd)?") from None
        client = cls(bus)
        if require_daemon and not await client.daemon_running():
            client.close()
            raise DaemonNotRunning("odbackupd is not running (nobody owns "
                                   f"{names.BUS_NAME} on {bus_description()}); "
                                   "start it with: systemctl start odbackupd")
        return client

    def close(self) -> None:
        self.bus.disconnect()

    async def _call(self, destination: str, path: str, interface: str, member: str,
                    signature: str = "", body: list | None = None) -> list:
        msg = _dbus().Message(destination=destination, path=path, interface=interface,
                              member=member, signature=signature, body=body or [])
        reply = await self.bus.call(msg)
        if reply.message_type == _dbus().MessageType.ERROR:
            message = (reply.body[0] if reply.body and isinstance(reply.body[0], str)
                       else reply.error_name)
            if reply.error_name in ("org.freedesktop.DBus.Error.ServiceUnknown",
                                    "org.freedesktop.DBus.Error.NameHasNoOwner"):
                raise DaemonNotRunning(f"odbackupd is not running: {message}")
            if reply.error_name == BUS_ACCESS_DENIED and destination == names.BUS_NAME:
                # the bus policy's own words ("Rejected send message, 1 matched rules; type=...")
                # say nothing to the person who typed the command
                message = refused_message(member)
            raise DaemonError(reply.error_name or "", message)
        return reply.body

    async def daemon_running(self) -> bool:
        body = await self._call(*DBUS, "NameHasOwner", "s", [names.BUS_NAME])
        return bool(body[0])

    async def call(self, member: str, signature: str = "", *args: Any,
                   path: str = names.ROOT_PATH, interface: str = names.MANAGER_IFACE) -> Any:
        """Call a method of ours; returns the unpacked single result (or list, or None)."""
        body = await self._call(names.BUS_NAME, path, interface, member, signature, list(args))
        body = unpack(body)
        if not body:
            return None
        return body[0] if len(body) == 1 else body

    async def properties(self, path: str = names.ROOT_PATH,
                         interface: str = names.MANAGER_IFACE) -> dict:
        return await self.call("GetAll", "s", interface, path=path, interface=PROPERTIES)

    async def subscribe(self, callback: Callable[[Any], None], **match: str) -> None:
        """Add a match rule (sender = the daemon's name, plus ``match``) and deliver matching
        signals to ``callback``. Subscribe before the call whose signals you wait for."""
        rule = ",".join(["type='signal'"] + [f"{k}='{v}'" for k, v in match.items()])
        await self._call(*DBUS, "AddMatch", "s", [rule])

        def handler(msg: Any) -> None:  # a dbus Message
            if msg.message_type != _dbus().MessageType.SIGNAL:
                return
            if all(getattr(msg, k, None) == v for k, v in match.items() if k != "sender"):
                callback(msg)

        self.bus.add_message_handler(handler)


def run(fn: Callable[[Client], Awaitable[T]], require_daemon: bool = True) -> T:
    """Run one command's coroutine with a fresh connection (odctl's small asyncio runner)."""

    async def main() -> T:
        client = await Client.connect(require_daemon=require_daemon)
        try:
            return await fn(client)
        finally:
            client.close()

    import asyncio

    return asyncio.run(main())


async def daemon_available() -> bool:
    """True when the bus is reachable and the daemon owns its name (no exception)."""
    try:
        client = await Client.connect(require_daemon=False)
    except DaemonNotRunning:
        return False
    try:
        return await client.daemon_running()
    finally:
        client.close()
