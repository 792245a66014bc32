"""The Job objects: org.odbackupd.ODBackup1.Job at /org/odbackupd/ODBackup1/job/<escaped name>,
one per configured job, their properties read from the controller's job_info().

No ``from __future__ import annotations`` here: dbus-fast reads the D-Bus signatures from
the annotations, which must stay plain strings.
"""
from typing import Any

from odbackupd.service.errors import ControllerError

from . import names
from .dbuslib import PropertyAccess, ServiceInterface, dbus_property
from .values import num as _num
from .values import to_asv, volume_number


class JobInterface(ServiceInterface):
    """org.odbackupd.ODBackup1.Job at /org/odbackupd/ODBackup1/job/<escaped name>.

    Properties are read from the controller when asked; ``PropertiesChanged`` carries the
    ones that differ from what was last announced."""

    def __init__(self, adapter: "BusAdapter", name: str) -> None:
        super().__init__(names.JOB_IFACE)
        self.adapter = adapter
        self.job = name
        self.announced: dict[str, Any] = {}

    def values(self) -> dict[str, Any]:
        """Every property's current value, from the controller's job_info()."""
        try:
            info = self.adapter.controller.job_info(self.job)
        except ControllerError:
            info = {"name": self.job, "state": "removed"}
        last = info.get("last_run") or {}
        prog = info.get("progress") or {}
        return {
            "Name": self.job,
            "State": str(info.get("state", "")),
            "Queued": bool(info.get("queued", False)),
            "RunId": _num(info, "run_id"),
            "LastResult": str(last.get("status", "")),
            "LastRunTime": _num(last, "finished", float),
            "LastRun": last,
            "NextRun": _num(info, "next_run", float),
            "Progress": prog,
            "BytesDone": _num(prog, "bytes_done"),
            "BytesTotal": _num(prog, "bytes_total"),
            "Rate": _num(prog, "rate", float),
            "Volume": volume_number(prog),
            "Percent": _num(prog, "percent", float),
            "Settings": {k: info[k] for k in ("sources", "destinations", "encrypted", "schedule",
                                             "watch", "drop_dir") if k in info},
        }

    def announce(self) -> None:
        """Emit PropertiesChanged with the properties that changed since the last call."""
        now = self.values()
        changed = {k: v for k, v in now.items() if self.announced.get(k, object()) != v}
        self.announced = now
        if changed:
            self.emit_properties_changed(
                {k: to_asv(v) if isinstance(v, dict) else v for k, v in changed.items()})

    def _get(self, key: str) -> Any:
        return self.values()[key]

    @dbus_property(access=PropertyAccess.READ)
    def Name(self) -> "s":
        return self.job

    @dbus_property(access=PropertyAccess.READ)
    def State(self) -> "s":
        return self._get("State")

    @dbus_property(access=PropertyAccess.READ)
    def Queued(self) -> "b":
        return self._get("Queued")

    @dbus_property(access=PropertyAccess.READ)
    def RunId(self) -> "t":
        return self._get("RunId")

    @dbus_property(access=PropertyAccess.READ)
    def LastResult(self) -> "s":
        return self._get("LastResult")

    @dbus_property(access=PropertyAccess.READ)
    def LastRunTime(self) -> "d":
        return self._get("LastRunTime")

    @dbus_property(access=PropertyAccess.READ)
    def LastRun(self) -> "a{sv}":
        return to_asv(self._get("LastRun"))

    @dbus_property(access=PropertyAccess.READ)
    def NextRun(self) -> "d":
        return self._get("NextRun")

    @dbus_property(access=PropertyAccess.READ)
    def Progress(self) -> "a{sv}":
        return to_asv(self._get("Progress"))

    @dbus_property(access=PropertyAccess.READ)
    def BytesDone(self) -> "t":
        return self._get("BytesDone")

    @dbus_property(access=PropertyAccess.READ)
    def BytesTotal(self) -> "t":
        return self._get("BytesTotal")

    @dbus_property(access=PropertyAccess.READ)
    def Rate(self) -> "d":
        return self._get("Rate")

    @dbus_property(access=PropertyAccess.READ)
    def Volume(self) -> "u":
        return self._get("Volume")

    @dbus_property(access=PropertyAccess.READ)
    def Percent(self) -> "d":
        return self._get("Percent")

    @dbus_property(access=PropertyAccess.READ)
    def Settings(self) -> "a{sv}":
        return to_asv(self._get("Settings"))
