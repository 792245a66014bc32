"""odctl fleet-status against OneDrive (the Graph emulator) from a monitoring machine
whose account logs in with read permission only (read_only = true: Files.Read.All)."""
from __future__ import annotations

import json
import subprocess
import sys

from .conftest import OneDriveSetup
from .test_hosts import _host, _run


def test_fleet_status_with_a_read_only_login(tmp_path, graph_emulator):
    emu = graph_emulator
    alpha = _host(tmp_path, emu, "alpha", keep=3)
    made = [_run(alpha).result.snapshot for _ in range(3)]
    snaps = {"alpha": made[-1], "beta": _run(_host(tmp_path, emu, "beta")).result.snapshot}
    # ids sort by their start second; snapshots started in the same second as the newest
    # are read too (a fast test makes all three in one second)
    same_second = sum(1 for s in made[:-1] if s[:16] == made[-1][:16])
    mon = OneDriveSetup(tmp_path / "monitor", emu)
    src = tmp_path / "monitor" / "src"
    src.mkdir(parents=True)
    (src / "x").write_text("x")
    mon.write([src], job_extra='schedule = "0 3 * * *"\n')
    text = mon.config_path.read_text().replace(
        "[account.a]\n", "[account.a]\nread_only = true\n", 1)
    mon.config_path.write_text(text)
    mon.login()
    token = json.loads((mon.state_dir / "tokens" / "a.json").read_text())
    assert ("files.read.all" in json.dumps(token).lower()
            and "files.readwrite" not in json.dumps(token).lower())

    before = len(emu.requests)
    r = subprocess.run([sys.executable, "-m", "odctl.cli", "--config", str(mon.config_path),
                        "fleet-status", "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    sent = emu.requests[before:]
    assert {q["method"] for q in sent} == {"GET"}  # read-only
    # a few requests per host (its folder, its series, the newest snapshot, its manifest):
    # 3 + 5 per host and series, though alpha has three snapshots
    assert len(sent) <= 3 + 5 * len(snaps) + 3 * same_second, (
        [(q["method"], q["path"]) for q in sent])
    rows = {x["host"]: x for x in json.loads(r.stdout)["series"]}
    assert {h: rows[h]["snapshot"] for h in rows} == snaps
    assert all(rows[h]["stored_bytes"] > 600_000 and rows[h]["max_age_seconds"] == 2 * 86400
               for h in rows)
    assert not any(x["stale"] for x in rows.values())
    assert (rows["alpha"]["snapshots"], rows["beta"]["snapshots"]) == (3, 1)

    # the login really is read-only: a backup through it is refused by the service
    r = subprocess.run([sys.executable, "-m", "odbackupd.main", "--config", str(mon.config_path),
                        "--once", "t"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "ccess denied" in r.stderr, r.stderr
