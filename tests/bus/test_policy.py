"""The shipped bus policy opens exactly the read-only methods, and the daemon's own check
is a second line: with a too-open policy override, nobody still gets Error.AccessDenied."""
from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from odbackupd.bus import names

from .conftest import POLICY, Daemon, PrivateBus, as_user, write_config

XML = Path(names.__file__).with_name(names.INTROSPECTION_FILE)


def test_policy_default_context_allows_only_the_read_only_methods():
    root = ET.parse(POLICY).getroot()
    default = next(p for p in root.iter("policy") if p.get("context") == "default")
    allowed = {(a.get("send_interface"), a.get("send_member")) for a in default.iter("allow")}
    ours = {(i, m) for i, m in allowed if i and i.startswith(names.BUS_NAME)}
    assert ours == {(i, m) for i, ms in names.READ_ONLY_METHODS.items() for m in ms}
    assert ("org.freedesktop.DBus.Properties", "Set") not in allowed
    api = ET.parse(XML).getroot()
    methods = {(i.get("name"), m.get("name"))
               for i in api.iter("interface") for m in i.iter("method")}
    assert ours < methods  # the rest (BackupNow, Cancel, Reload, logins) are admin-only
    admin = next(p for p in root.iter("policy") if p.get("group") == names.ADMIN_GROUP)
    assert [a.attrib for a in admin.iter("allow")] == [{"send_destination": names.BUS_NAME}]


def test_daemon_checks_the_caller_again(admin_user, tmp_path):
    too_open = f'<policy context="default"><allow send_destination="{names.BUS_NAME}"/></policy>'
    bus = PrivateBus(extra_policy=too_open)
    daemon = None
    try:
        daemon = Daemon(write_config(tmp_path), bus)

        def call(user: str, groups: bool) -> subprocess.CompletedProcess:
            argv = ["gdbus", "call", "--address", bus.address, "--dest", names.BUS_NAME,
                    "--object-path", names.ROOT_PATH,
                    "--method", f"{names.MANAGER_IFACE}.Cancel", "t"]
            return subprocess.run(as_user(user, argv, init_groups=groups), capture_output=True,
                                  text=True, timeout=60)

        r = call("nobody", False)
        assert (r.returncode != 0
                and f"GDBus.Error:{names.ERRORS['AccessDenied'].name}:" in r.stderr), r.stderr
        assert f"group '{names.ADMIN_GROUP}'" in r.stderr
        r = call(admin_user, True)
        assert r.returncode == 0 and "(false,)" in r.stdout, r.stderr
    finally:
        if daemon is not None:
            daemon.stop()
        bus.close()
