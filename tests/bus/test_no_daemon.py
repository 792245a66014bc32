"""odctl when odbackupd is not running."""
from __future__ import annotations

import json
import subprocess
import sys
import time

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
    for env in (private_bus.env(),
                private_bus.env(DBUS_SYSTEM_BUS_ADDRESS=f"unix:path={tmp_path}/none")):
        r = odctl(private_bus, "status", env=env)
        assert r.returncode == names.EXIT_NOT_RUNNING
        assert "not running" in r.stderr or "cannot connect" in r.stderr
        assert "Traceback" not in r.stderr
    cfg = write_config(tmp_path)
    r = odctl(private_bus, "jobs", "--config", str(cfg), "--json")  # works offline
    assert r.returncode == 0 and json.loads(r.stdout)["daemon_running"] is False
    assert [j["name"] for j in json.loads(r.stdout)["jobs"]] == ["t", "web-1.x"]
    # after a cron run (--once), offline jobs shows its result; a job whose lock a run
    # holds shows as running; the schedule gives the next time
    r = subprocess.run([sys.executable, "-m", "odbackupd.main", "--config", str(cfg),
                        "--once", "t"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    from odbackupd.runner import job_lock

    with job_lock(tmp_path / "state", "web-1.x"):
        r = odctl(private_bus, "jobs", "--config", str(cfg), "--json")
    jobs = {j["name"]: j for j in json.loads(r.stdout)["jobs"]}
    assert jobs["t"]["state"] == "idle" and jobs["t"]["last_run"]["status"] == "completed"
    assert jobs["t"]["last_run"]["trigger"] == "once" and "next_run" not in jobs["t"]
    assert jobs["web-1.x"]["state"] == "running" and "last_run" not in jobs["web-1.x"]
    nxt = time.localtime(jobs["web-1.x"]["next_run"])  # cron is local time
    assert ((nxt.tm_hour, nxt.tm_min) == (3, 0)
            and 0 < jobs["web-1.x"]["next_run"] - time.time() <= 86400)
    r = odctl(private_bus, "backup-now", "t", "--json")
    assert (r.returncode == names.EXIT_NOT_RUNNING
            and json.loads(r.stdout)["error_name"] == "NotRunning")
