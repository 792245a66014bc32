"""Retention does not delete a snapshot that a restore on this host is reading
(keep_last = 1, ``odctl restore`` under way while ``odbackupd --once`` prunes)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from odbackupd.destinations.local import LocalDestination
from odbackupd.snapshot import leases
from odbackupd.snapshot.catalog import list_snapshots

from .test_kill_points import ROOT, once
from .treegen import assert_same_tree


def _wait(cond, proc: subprocess.Popen, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + 30
    while not cond():
        assert proc.poll() is None, f"the restore ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_prune_defers_a_snapshot_a_restore_is_reading(setup, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(os.urandom(300_000))
    # fulls: keep_last = 1 prunes the one before
    cfg = setup.write([src], extra="keep_last = 1\nfull_every = 1\n")
    assert once(cfg).returncode == 0
    dest = LocalDestination("usb", setup.dest)
    (first,) = list_snapshots(dest, "t").complete
    # the restore reads its first volume from a FIFO: it is under way, and stays so, until
    # the test writes the volume's bytes into it
    vol = next(setup.dest.rglob(f"{first.snapshot}/vol.000001.zst"))
    data = vol.read_bytes()
    vol.unlink()
    os.mkfifo(vol)
    out = tmp_path / "out"
    restore = subprocess.Popen([sys.executable, "-m", "odctl.cli", "--config", str(cfg),
                                "restore", "t", first.snapshot, "--to", str(out)],
                               stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        _wait(lambda: leases.in_use(setup.state, "t", first.snapshot), restore,
              "the restore took its lease")
        (src / "b").write_text("new\n")
        r = once(cfg)
        assert r.returncode == 0, r.stderr
        assert "not pruned" in r.stdout and first.snapshot in r.stdout, r.stdout
        names = [m.snapshot for m in list_snapshots(dest, "t").complete]
        assert first.snapshot in names and len(names) == 2
        with open(vol, "wb") as f:  # the restore goes on and finishes whole
            f.write(data)
        _, err = restore.communicate(timeout=60)
        assert restore.returncode == 0, err
    finally:
        if restore.poll() is None:
            restore.kill()
            restore.wait()
    (src / "b").unlink()
    assert_same_tree(src, out / str(src).lstrip("/"))
    # nobody reads it now: the next run's retention deletes it
    vol.unlink()
    vol.write_bytes(data)
    assert once(cfg).returncode == 0
    assert first.snapshot not in [m.snapshot for m in list_snapshots(dest, "t").complete]
