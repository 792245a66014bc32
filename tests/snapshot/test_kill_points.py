"""SIGKILL at the exact points a random kill finds once in twenty runs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from odbackupd.destinations.local import LocalDestination
from odbackupd.snapshot.catalog import list_snapshots
from odbackupd.snapshot.restore import restore_snapshot

ROOT = Path(__file__).resolve().parents[2]


def once_killed_at(point: str, cfg: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.killpoint", point, "--config", str(cfg),
                           "--once", "t"],
                          capture_output=True, text=True, cwd=ROOT)


def once(cfg: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "odbackupd.main", "--config", str(cfg),
                           "--once", "t"],
                          capture_output=True, text=True, cwd=ROOT)


def test_kill_after_the_manifest_does_not_make_the_next_run_a_no_op(setup, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("first version\n")
    cfg = setup.write([src])
    r = once_killed_at("after-manifest", cfg)
    assert r.returncode == -9, r.stderr
    dest = LocalDestination("usb", setup.dest)
    first = list_snapshots(dest, "t").complete
    assert len(first) == 1  # the killed run's snapshot is complete: its manifest is there

    (src / "a.txt").write_text("second version\n")
    r = once(cfg)
    assert r.returncode == 0, r.stderr
    snaps = list_snapshots(dest, "t").complete
    assert [m.snapshot for m in snaps][:1] == [first[0].snapshot]
    assert len(snaps) == 2, f"the second run made no new snapshot: {r.stdout}"
    assert snaps[-1].snapshot in r.stdout
    out = tmp_path / "out"
    restore_snapshot(dest, snaps[-1], out)
    assert (out / str(src).lstrip("/") / "a.txt").read_text() == "second version\n"
