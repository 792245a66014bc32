"""odctl verify and prune, run by hand or from cron, keep the metrics true and report
damage to the notifiers that ask for verify_failed."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.layout import series_dir
from tests.prometheus.test_metrics_file import parse, value

from .test_notify import configure, odctl, once


def test_verify_damage_is_a_metric_and_a_notification(setup, tmp_path, receiver):
    receiver.start()
    cfg, _ = configure(setup, tmp_path,
                       f'type = "webhook"\nurl = "{receiver.url}/hook"\non = ["verify_failed"]\n')
    prom = tmp_path / "odbackupd.prom"
    cfg.write_text(cfg.read_text().replace("[daemon]\n", f'[daemon]\nmetrics_file = "{prom}"\n', 1))
    assert once(cfg).returncode == 0
    assert odctl(cfg, "verify", "t").returncode == 0
    assert value(parse(prom.read_text()), "odbackupd_last_verify_success",
                 series="t", destination="usb") == 1
    assert receiver.requests == []

    [snap] = series_dir(setup.dest).iterdir()
    vol = next(snap.glob("vol.*"))
    data = bytearray(vol.read_bytes())
    data[len(data) // 2] ^= 0xFF  # bit rot on the backup disk
    vol.write_bytes(bytes(data))
    r = odctl(cfg, "verify", "t")
    assert r.returncode == 4
    m = parse(prom.read_text())
    assert value(m, "odbackupd_last_verify_success", series="t", destination="usb") == 0
    [req] = receiver.wait_for(1)
    doc = json.loads(req.body)
    assert (doc["event"] == "verify_failed" and doc["snapshot"] == snap.name
            and doc["destination"] == "usb")
    assert vol.name in doc["log"] and doc["title"].endswith(" t VERIFY FAILED")


def test_prune_by_hand_updates_the_snapshot_count(setup, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("x")
    prom = tmp_path / "odbackupd.prom"
    # fulls: keep_last counts one for one
    cfg = setup.write([src], extra="keep_last = 3\nfull_every = 1\n")
    cfg.write_text(cfg.read_text().replace("[daemon]\n", f'[daemon]\nmetrics_file = "{prom}"\n', 1))
    for _ in range(3):
        assert once(cfg).returncode == 0
    assert value(parse(prom.read_text()), "odbackupd_snapshots", series="t", destination="usb") == 3
    cfg.write_text(cfg.read_text().replace("keep_last = 3", "keep_last = 1"))
    assert odctl(cfg, "prune", "t", "--dry-run").returncode == 0
    assert value(parse(prom.read_text()), "odbackupd_snapshots", series="t", destination="usb") == 3
    r = subprocess.run([sys.executable, "-m", "odctl.cli", "--config", str(cfg), "prune", "t"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m = parse(prom.read_text())
    assert value(m, "odbackupd_snapshots", series="t", destination="usb") == 1
    assert value(m, "odbackupd_stored_bytes", series="t", destination="usb") == \
        value(m, "odbackupd_last_snapshot_stored_bytes", series="t", destination="usb")
