"""An expired OneDrive login, as monitoring sees it: odbackupd_account_login_ok drops to 0
(at odctl logout and at the failed run), the login_expired notification names the
command to run, and the next good run is a recovery; Graph's throttling is counted."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.notify.conftest import Receiver
from tests.prometheus.test_metrics_file import parse, value

from .conftest import OneDriveSetup


def test_login_expired_metric_and_notification(tmp_path, graph_emulator):
    receiver = Receiver().start()
    try:
        od = OneDriveSetup(tmp_path, graph_emulator)
        src = tmp_path / "src"
        src.mkdir()
        (src / "f").write_bytes(os.urandom(10_000))
        prom = tmp_path / "odbackupd.prom"
        od.write([src], daemon_extra=f'metrics_file = "{prom}"\n', job_extra='notify = ["ops"]\n')
        od.config_path.write_text(
            od.config_path.read_text()
            + f'\n[notify.ops]\ntype = "webhook"\nurl = "{receiver.url}/hook"\n')
        od.login()

        def once() -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "odbackupd.main", "--config",
                                   str(od.config_path), "--once", "t"],
                                  capture_output=True, text=True, timeout=120)

        # one 429 for the app
        graph_emulator.faults.add("throttle", "graph.*", nth=2, retry_after=1)
        assert once().returncode == 0
        m = parse(prom.read_text())
        assert value(m, "odbackupd_account_login_ok", account="a") == 1
        assert value(m, "odbackupd_throttled_total", account="a") == 1

        r = subprocess.run([sys.executable, "-m", "odctl.cli", "--config", str(od.config_path),
                            "logout", "a"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert value(parse(prom.read_text()), "odbackupd_account_login_ok", account="a") == 0

        r = once()
        assert r.returncode == 1 and "odctl login a" in r.stderr
        [req] = receiver.wait_for(1)
        doc = json.loads(req.body)
        assert doc["event"] == "login_expired" and "odctl login a" in doc["error"]
        assert doc["title"].endswith(" t LOGIN EXPIRED")
        m = parse(prom.read_text())
        assert value(m, "odbackupd_account_login_ok", account="a") == 0
        assert value(m, "odbackupd_last_run_success", series="t") == 0

        od.login()
        assert once().returncode == 0
        assert json.loads(receiver.wait_for(2)[1].body)["event"] == "recovery"
        m = parse(prom.read_text())
        assert value(m, "odbackupd_account_login_ok", account="a") == 1
        # the drive's quota as the run's pre-check read it: no extra request for metrics
        assert value(m, "odbackupd_destination_free_bytes", destination="od") > 0
        assert value(m, "odbackupd_destination_deleted_bytes", destination="od") is not None
        # a counter: kept across runs
        assert value(m, "odbackupd_throttled_total", account="a") == 1
    finally:
        receiver.stop()
