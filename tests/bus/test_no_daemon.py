"""odctl when odbackupd is not running."""
from __future__ import annotations

import json

from odbackupd.bus import names

from .conftest import PrivateBus, odctl, write_config


def test_without_a_daemon_odctl_says_so(admin_user, tmp_path):
    """A bus nobody serves, and no bus at all: a clear message and exit 6, no traceback;
    jobs falls back to the configuration."""
    private_bus = PrivateBus()
    try:
        _check_no_daemon(private_bus, tmp_path)
    finally:
        private_bus.close()


def _check_no_daemon(private_bus: PrivateBus, tmp_path) -> None:  # noqa: ANN001
    for env in (private_bus.env(), private_bus.env(DBUS_SYSTEM_BUS_ADDRESS=f"unix:path={tmp_path}/none")):
        r = odctl(private_bus, "status", env=env)
        assert r.returncode == names.EXIT_NOT_RUNNING
        assert "not running" in r.stderr or "cannot connect" in r.stderr
        assert "Traceback" not in r.stderr
    cfg = write_config(tmp_path)
    r = odctl(private_bus, "jobs", "--config", str(cfg), "--json")  # works offline
    assert r.returncode == 0 and json.loads(r.stdout)["daemon_running"] is False
    assert [j["name"] for j in json.loads(r.stdout)["jobs"]] == ["t", "web-1.x"]
    r = odctl(private_bus, "backup-now", "t", "--json")
    assert r.returncode == names.EXIT_NOT_RUNNING and json.loads(r.stdout)["error_name"] == "NotRunning"
