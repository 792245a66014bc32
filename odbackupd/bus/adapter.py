"""The D-Bus adapter: a thin layer that exposes the Controller on the system bus.

Why thin: the controller (service/) owns jobs, runs and state and knows nothing of D-Bus;
this module only translates — method calls to controller calls, ControllerError codes to
named D-Bus errors, controller events to signals and PropertiesChanged. The API it exports
is committed as ``org.odbackupd.ODBackup1.xml`` next to this file and a test checks the live
daemon against it.

Objects (names in :mod:`odbackupd.bus.names`):

* ``/org/odbackupd/ODBackup1`` — interface ``…Manager``: methods, daemon properties, the
  RunStarted / RunFinished / LoginStatusChanged signals.
* ``/org/odbackupd/ODBackup1/job/<escaped name>`` — interface ``…Job`` per job: read-only
  properties with ``PropertiesChanged`` while a run goes (progress at most ~2/s, as the
  controller sends it).
* ``BackupNow`` returns ``/org/odbackupd/ODBackup1/run/<run id>``: an identifier, not an
  exported object (revision 1); the run's signals carry the same id.

Authorization is default-deny in two layers: the bus policy (dbus/org.odbackupd.ODBackup1.conf)
lets only root and group ``odbackup`` call anything but the read-only methods, and every
mutating method here asks the bus for the caller's uid again and checks it (root, primary
or supplementary group ``odbackup``) before touching the controller.

No ``from __future__ import annotations`` here: dbus-fast reads the D-Bus signatures from
the annotations, which must stay plain strings.
"""
import asyncio
import contextvars
import functools
import grp
import inspect
import logging
import pwd
from collections.abc import Callable
from typing import Any

from odbackupd import __version__
from odbackupd.service.errors import AccessDenied, ControllerError, InvalidArgs
from odbackupd.service.events import EventKind

from . import names
from .dbuslib import (
    BusType,
    DBusError,
    Message,
    MessageBus,
    MessageType,
    NameFlag,
    PropertyAccess,
    RequestNameReply,
    ServiceInterface,
    dbus_property,
    method,
    signal,
)
from .jobobject import JobInterface
from .values import to_asv

log = logging.getLogger("odbackupd.bus")

_CALLER: contextvars.ContextVar[str | None] = contextvars.ContextVar("odbackupd_bus_caller",
                                                                     default=None)


# -- authorization --------------------------------------------------------------------------
def uid_is_admin(uid: int) -> bool:
    """Root, or a user whose primary or supplementary groups include the admin group."""
    if uid == 0:
        return True
    try:
        admin = grp.getgrnam(names.ADMIN_GROUP)
    except KeyError:
        return False
    try:
        user = pwd.getpwuid(uid)
    except KeyError:
        return False
    return user.pw_gid == admin.gr_gid or user.pw_name in admin.gr_mem


def _dbus_error(e: ControllerError) -> DBusError:
    return DBusError(names.error_for_code(e.code).name, str(e) or e.code)


def _exported(mutating: bool) -> Callable:
    """Wrap a D-Bus method: authorize the caller when it changes something, and turn
    ControllerError into its named error and anything unexpected into Error.Failed (logged
    here, never a traceback to the caller)."""

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        async def wrapper(self, *args):  # noqa: ANN001, ANN002, ANN202
            adapter: BusAdapter = self.adapter
            try:
                if mutating:
                    await adapter.authorize(_CALLER.get(), fn.__name__)
                result = fn(self, *args)
                if inspect.isawaitable(result):
                    result = await result
                return result
            except DBusError:
                raise
            except ControllerError as e:
                raise _dbus_error(e) from None
            except Exception:
                log.exception("D-Bus method %s failed", fn.__name__)
                raise DBusError(names.FAILED.name,
                                f"{fn.__name__} failed inside the daemon; see its log") from None

        return wrapper

    return deco


class _CallerAwareBus(MessageBus):
    """A MessageBus that makes each method call's sender visible to the handler (a context
    variable), which dbus-fast does not pass to ServiceInterface methods. Coroutine handlers
    are started as tasks inside this context, so they keep seeing their own caller."""

    def _make_method_handler(self, interface, method):  # noqa: ANN001, ANN202
        inner = super()._make_method_handler(interface, method)

        def handler(msg, send_reply):  # noqa: ANN001, ANN202
            token = _CALLER.set(msg.sender)
            try:
                return inner(msg, send_reply)
            finally:
                _CALLER.reset(token)

        return handler


# -- interfaces -----------------------------------------------------------------------------
class ManagerInterface(ServiceInterface):
    """org.odbackupd.ODBackup1.Manager at /org/odbackupd/ODBackup1."""

    def __init__(self, adapter: "BusAdapter") -> None:
        super().__init__(names.MANAGER_IFACE)
        self.adapter = adapter

    @property
    def controller(self):  # noqa: ANN201
        return self.adapter.controller

    # read-only methods (open to everyone by the bus policy)
    @method()
    @_exported(mutating=False)
    def ListJobs(self) -> "aa{sv}":
        return [to_asv(self.adapter.job_dict(n)) for n in self.controller.job_names()]

    @method()
    @_exported(mutating=False)
    def GetJob(self, name: "s") -> "a{sv}":
        return to_asv(self.adapter.job_dict(name))

    @method()
    @_exported(mutating=False)
    async def ListSnapshots(self, job: "s") -> "aa{sv}":
        return [to_asv(s) for s in await self.controller.list_snapshots(job)]

    @method()
    @_exported(mutating=False)
    def GetLoginStatus(self, account: "s") -> "a{sv}":
        return to_asv(self.controller.login_status(account))

    # methods that change something (root and group odbackup only)
    @method()
    @_exported(mutating=True)
    async def BackupNow(self, job: "s") -> "o":
        return names.run_path(await self.controller.backup_now(job, "manual"))

    @method()
    @_exported(mutating=True)
    def Cancel(self, job: "s") -> "b":
        return bool(self.controller.cancel(job))

    @method()
    @_exported(mutating=True)
    async def Reload(self) -> "as":
        warnings = await self.controller.reload()
        self.adapter.sync_jobs()
        return [str(w) for w in warnings]

    @method()
    @_exported(mutating=True)
    async def StartLogin(self, account: "s", options: "a{sv}") -> "a{sv}":
        flow = options.get("flow").value if "flow" in options else "device"
        if flow not in ("device", "browser") or not isinstance(flow, str):
            raise InvalidArgs("StartLogin: option 'flow' must be \"device\" or \"browser\", "
                              f"not {flow!r}",
                              argument="flow")
        info = await self.controller.start_login(account, flow)
        # a device login completes in the background; daemon_changed then re-reads it
        self.adapter.login_changed(account)
        return to_asv(info)

    @method()
    @_exported(mutating=True)
    async def CompleteLogin(self, account: "s", redirected_url: "s") -> "a{sv}":
        info = await self.controller.complete_login(account, redirected_url)
        self.adapter.login_changed(account)
        return to_asv(info)

    @method()
    @_exported(mutating=True)
    async def Logout(self, account: "s") -> None:
        await self.controller.logout(account)
        self.adapter.login_changed(account)

    @method()
    @_exported(mutating=True)
    async def NotifyTest(self, notifier: "s") -> "a{sv}":
        return to_asv(await self.controller.notify_test(notifier))

    # properties
    @dbus_property(access=PropertyAccess.READ)
    def InterfaceVersion(self) -> "u":
        return names.INTERFACE_VERSION

    @dbus_property(access=PropertyAccess.READ)
    def Version(self) -> "s":
        return __version__

    @dbus_property(access=PropertyAccess.READ)
    def State(self) -> "s":
        return str(self.controller.daemon_info().get("state", ""))

    @dbus_property(access=PropertyAccess.READ)
    def StatusLine(self) -> "s":
        return str(self.controller.daemon_info().get("status_line", ""))

    @dbus_property(access=PropertyAccess.READ)
    def Daemon(self) -> "a{sv}":
        return to_asv(self.controller.daemon_info())

    # signals: (job, run id, dictionary)
    @signal()
    def RunStarted(self, job: str, run_id: int, info: dict) -> "sta{sv}":
        return [job, run_id, info]

    @signal()
    def RunFinished(self, job: str, run_id: int, result: dict) -> "sta{sv}":
        return [job, run_id, result]

    @signal()
    def LoginStatusChanged(self, account: str, status: dict) -> "sa{sv}":
        return [account, status]


def _name_out_args(cls: type, out_names: dict[str, str]) -> None:
    """dbus-fast leaves out-arguments and signal arguments unnamed in the introspection
    data; name them (a method's from ``out_names``, a signal's from its parameters) so the
    committed XML documents what each one is."""
    for attr in vars(cls).values():
        meta = getattr(attr, "__dict__", {})
        if "__DBUS_METHOD" in meta and meta["__DBUS_METHOD"].name in out_names:
            for arg in meta["__DBUS_METHOD"].introspection.out_args:
                arg.name = out_names[meta["__DBUS_METHOD"].name]
        elif "__DBUS_SIGNAL" in meta:
            params = list(inspect.signature(attr).parameters)[1:]
            for arg, pname in zip(meta["__DBUS_SIGNAL"].introspection.args, params, strict=True):
                arg.name = pname


_name_out_args(ManagerInterface, {
    "ListJobs": "jobs", "GetJob": "job", "ListSnapshots": "snapshots", "GetLoginStatus": "status",
    "BackupNow": "run", "Cancel": "cancelled", "Reload": "warnings", "StartLogin": "login",
    "CompleteLogin": "status", "NotifyTest": "result"})


# -- the adapter ----------------------------------------------------------------------------
class BusAdapter:
    """Connects to the system bus (``DBUS_SYSTEM_BUS_ADDRESS`` honoured, or ``bus_address``),
    exports the Manager and one Job object per job, owns the bus name, and forwards the
    controller's events. Runs on the controller's loop."""

    def __init__(self, controller: Any, bus_address: str | None = None) -> None:
        self.controller = controller
        self.bus_address = bus_address
        self.bus: MessageBus | None = None
        self.manager = ManagerInterface(self)
        self.jobs: dict[str, JobInterface] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._login_seen: dict[str, dict] = {}

    async def start(self) -> None:
        """Connect, export, subscribe, then request the name (so a caller that sees the name
        finds every object). Raises on any failure, e.g. when the name is taken."""
        bus = _CallerAwareBus(bus_address=self.bus_address, bus_type=BusType.SYSTEM)
        self.bus = await bus.connect()
        self.bus.export(names.ROOT_PATH, self.manager)
        self.sync_jobs()
        self._unsubscribe = self.controller.subscribe(self._on_event)
        reply = await self.bus.request_name(names.BUS_NAME, NameFlag.DO_NOT_QUEUE)
        if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
            await self.stop()
            raise RuntimeError(f"cannot own the bus name {names.BUS_NAME} ({reply.name}): "
                               "is another odbackupd running?")
        log.info("serving D-Bus name %s", names.BUS_NAME)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.bus is not None:
            bus, self.bus = self.bus, None
            bus.disconnect()
            try:
                await asyncio.wait_for(bus.wait_for_disconnect(), 5)
            except (TimeoutError, Exception):  # noqa: BLE001 - best effort on the way out
                pass

    # -- objects --
    def job_dict(self, name: str) -> dict:
        info = dict(self.controller.job_info(name))
        info["path"] = names.job_path(name)
        return info

    def sync_jobs(self) -> None:
        """Export a Job object for every configured job, unexport removed ones."""
        if self.bus is None:
            return
        current = set(self.controller.job_names())
        for name in sorted(set(self.jobs) - current):
            self.bus.unexport(names.job_path(name), self.jobs.pop(name))
        for name in sorted(current - set(self.jobs)):
            iface = JobInterface(self, name)
            iface.announced = iface.values()
            self.jobs[name] = iface
            self.bus.export(names.job_path(name), iface)

    # -- authorization --
    async def authorize(self, sender: str | None, what: str) -> None:
        """Second line behind the bus policy: the caller's uid must be root or in the admin
        group. Raises Error.AccessDenied."""
        denied = f"{what} needs root or membership of group '{names.ADMIN_GROUP}'"
        if self.bus is None or not sender:
            raise AccessDenied(denied, method=what)
        reply = await self.bus.call(Message(
            destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus", member="GetConnectionUnixUser",
            signature="s", body=[sender]))
        if reply.message_type != MessageType.METHOD_RETURN:
            raise AccessDenied(denied, method=what)
        uid = int(reply.body[0])
        if not uid_is_admin(uid):
            log.warning("refused %s from uid %d (not root, not in group %s)", what, uid,
                        names.ADMIN_GROUP)
            raise AccessDenied(denied, method=what, uid=uid)

    # -- events --
    def _on_event(self, ev: Any) -> None:
        try:
            if ev.kind == EventKind.RUN_STARTED:
                data = dict(ev.data)
                data.setdefault("path", names.run_path(int(data.get("run_id", 0))))
                self.manager.RunStarted(ev.job, int(data.get("run_id", 0)), to_asv(data))
            elif ev.kind == EventKind.RUN_FINISHED:
                data = dict(ev.data)
                data.setdefault("path", names.run_path(int(data.get("run_id", 0))))
                self.manager.RunFinished(ev.job, int(data.get("run_id", 0)), to_asv(data))
            elif ev.kind == EventKind.DAEMON_CHANGED:
                self.sync_jobs()
                self._pending_logins_changed()
                self.manager.emit_properties_changed({
                    "State": str(ev.data.get("state", "")),
                    "StatusLine": str(ev.data.get("status_line", "")),
                    "Daemon": to_asv(ev.data)})
                return
            if ev.job is not None:
                if ev.job not in self.jobs:
                    self.sync_jobs()
                job = self.jobs.get(ev.job)
                if job is not None:
                    job.announce()
        except Exception:  # an event must never take the daemon down
            log.exception("could not forward controller event %s to D-Bus", getattr(ev, "kind", ev))

    # -- login status --
    def login_changed(self, account: str) -> None:
        """Emit LoginStatusChanged when the account's status differs from the last one sent."""
        try:
            status = self.controller.login_status(account)
        except ControllerError:
            return
        if self._login_seen.get(account) != status:
            self._login_seen[account] = status
            self.manager.LoginStatusChanged(account, to_asv(status))

    def _pending_logins_changed(self) -> None:
        for account, status in list(self._login_seen.items()):
            if status.get("state") == "pending":
                self.login_changed(account)
