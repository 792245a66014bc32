"""odctl fleet-status on a local destination shared by several hosts: per host and
series the newest snapshot, its age, size and kind; the overdue ones flagged; nothing
on the destination changed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.snapshot.conftest import Setup


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)


def host(tmp_path: Path, dest: Path, name: str, job: str = "etc") -> Path:
    (tmp_path / name).mkdir()
    s = Setup(tmp_path / name)
    s.dest = dest
    src = tmp_path / name / "src"
    src.mkdir()
    (src / "f").write_bytes(os.urandom(20_000))
    cfg = s.write([src], extra='schedule = "0 * * * *"\n')
    text = cfg.read_text().replace("[daemon]\n", f'[daemon]\nhostname = "{name}"\n', 1)
    cfg.write_text(text.replace("[job.t]", f"[job.{job}]"))
    return cfg


def tree(root: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns, p.stat().st_size)
                  for p in root.rglob("*"))


def age_manifest(path: Path, hours: float) -> None:
    """Make a snapshot look ``hours`` old (its manifest's times), as if the host died then."""
    doc = json.loads(path.read_text())
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - hours * 3600))
    doc["started"] = doc["finished"] = when
    path.write_text(json.dumps(doc))


def test_fleet_status_lists_every_host_and_flags_the_overdue_one(tmp_path):
    dest = tmp_path / "shared"
    dest.mkdir()
    alpha, beta = host(tmp_path, dest, "alpha"), host(tmp_path, dest, "beta")
    for cfg in (alpha, alpha, beta):
        r = run("-m", "odbackupd.main", "--config", str(cfg), "--once", "etc")
        assert r.returncode == 0, r.stderr
    snaps = {h: json.loads(run("-m", "odctl.cli", "--config", str(alpha), "snapshots", "etc",
                               "--host", h, "--json").stdout)["destinations"]["usb"]["snapshots"]
             for h in ("alpha", "beta")}
    # a machine with the fleet's drop-ins, no runs of its own
    monitor = host(tmp_path, dest, "monitor")
    before = tree(dest)
    r = run("-m", "odctl.cli", "--config", str(monitor), "fleet-status", "--json")
    assert r.returncode == 0, r.stderr
    rows = {x["host"]: x for x in json.loads(r.stdout)["series"]}
    assert set(rows) == {"alpha", "beta"}
    for h in ("alpha", "beta"):
        assert rows[h]["series"] == "etc" and rows[h]["snapshot"] == snaps[h][-1]["snapshot"]
        assert rows[h]["stored_bytes"] == snaps[h][-1]["stored_bytes"]
        # alpha's second run builds on its first
        assert rows[h]["kind"] == ("incremental" if h == "alpha" else "full")
        assert 0 <= rows[h]["age_seconds"] < 600 and rows[h]["max_age_seconds"] == 2 * 3600
        assert not rows[h]["stale"]
    assert rows["alpha"]["snapshots"] == 2 and rows["beta"]["snapshots"] == 1

    age_manifest(dest / "beta" / "etc" / snaps["beta"][-1]["snapshot"] / "manifest.json", hours=3)
    before = tree(dest)
    r = run("-m", "odctl.cli", "--config", str(monitor), "fleet-status")
    assert r.returncode == 1  # something is overdue: monitoring scripts can act on the status
    lines = {ln.split()[1]: ln for ln in r.stdout.splitlines()[1:]}
    assert "STALE" in lines["beta"] and lines["beta"].split()[4] == "3h"
    assert lines["alpha"].endswith("ok")
    assert tree(dest) == before  # read-only

    r = run("-m", "odctl.cli", "--config", str(monitor), "fleet-status", "--max-age", "4h",
            "--json")
    assert r.returncode == 0 and not any(x["stale"] for x in json.loads(r.stdout)["series"])
    r = run("-m", "odctl.cli", "--config", str(monitor), "fleet-status", "--max-age", "soon")
    assert r.returncode == 2 and "--max-age soon" in r.stderr and "Traceback" not in r.stderr
    r = run("-m", "odctl.cli", "--config", str(monitor), "fleet-status", "-d", "nope")
    assert r.returncode == 3 and "no destination 'nope'" in r.stderr


def test_the_layout_before_0_2_is_read_by_its_manifests_host(tmp_path):
    dest = tmp_path / "shared"
    dest.mkdir()
    alpha = host(tmp_path, dest, "alpha")
    assert run("-m", "odbackupd.main", "--config", str(alpha), "--once", "etc").returncode == 0
    [snap] = list((dest / "alpha" / "etc").iterdir())
    (dest / "etc").mkdir()
    snap.rename(dest / "etc" / snap.name)  # where 0.1 kept it: <root>/<series>/<snapshot>/
    r = run("-m", "odctl.cli", "--config", str(alpha), "fleet-status", "--json")
    assert r.returncode == 0, r.stderr
    [row] = json.loads(r.stdout)["series"]
    assert (row["host"], row["series"], row["snapshot"]) == ("alpha", "etc", snap.name)
