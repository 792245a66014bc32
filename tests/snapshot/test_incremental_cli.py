"""odctl on chains: snapshots shows kind and base, verify checks the whole chain (a missing
or damaged base is exit 4 naming the link), prune --dry-run says what a snapshot is kept for."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

from tests.layout import series_dir

from .incgen import Runs


def odctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "odctl.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_snapshots_verify_and_prune_of_a_chain(setup, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"a" * 5000)
    cfg = setup.write([src], extra="keep_last = 1\n")
    runs = Runs(setup)
    made = []
    for i in range(3):
        (src / "n").write_text(str(i))
        made.append(runs.run().result.manifest.snapshot)

    r = odctl("--config", str(cfg), "snapshots", "t", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["destinations"]["usb"]["snapshots"]
    assert [(s["kind"], s["base"]) for s in rows] == [
        ("full", None), ("incremental", made[0]), ("incremental", made[1])]
    assert rows[2]["changes"] == {"new": 0, "changed": 1, "unchanged": 1, "deleted": 0}
    r = odctl("--config", str(cfg), "snapshots", "t")
    assert "KIND" in r.stdout and f"incr <- {made[1]}" in r.stdout

    # keep_last = 1 keeps the newest, and with it its whole chain
    r = odctl("--config", str(cfg), "prune", "t", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert f"base of {made[2]}" in r.stdout and "would delete" not in r.stdout

    r = odctl("--config", str(cfg), "verify", "t", "--json")
    rep = json.loads(r.stdout)
    assert r.returncode == 0 and rep["ok"] and {x["snapshot"] for x in rep["reports"]} == set(made)

    # a damaged base: exit 4, the link named
    vol = series_dir(setup.dest) / made[1] / "vol.000001.zst"
    data = bytearray(vol.read_bytes())
    data[len(data) // 2] ^= 1
    vol.write_bytes(bytes(data))
    r = odctl("--config", str(cfg), "verify", "t", made[2])
    assert r.returncode == 4 and f"base of {made[2]}" in r.stderr and made[1] in r.stdout + r.stderr
    # a missing base: exit 4 for verify and for restore, naming it
    shutil.rmtree(series_dir(setup.dest) / made[0])
    r = odctl("--config", str(cfg), "verify", "t", made[2], "--json")
    rep = json.loads(r.stdout)
    assert r.returncode == 4 and any(made[0] in p for x in rep["reports"] for p in x["problems"])
    r = odctl("--config", str(cfg), "restore", "t", "--to", str(tmp_path / "out"))
    assert r.returncode == 4 and made[0] in r.stderr and "missing" in r.stderr
