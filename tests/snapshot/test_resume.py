"""Interrupted runs: SIGKILL in the middle, then the next run finishes the same snapshot."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from odbackupd.destinations.local import LocalDestination
from odbackupd.snapshot.catalog import list_snapshots
from odbackupd.snapshot.restore import restore_snapshot, verify_snapshot
from tests.layout import series_dir

from .treegen import assert_same_tree


def _once(cfg: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "odbackupd.main", "--config", str(cfg), "--once", "t"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, (
            f"the run ended before {path.name} appeared: {proc.communicate()}")
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.002)


def test_sigkill_mid_run_then_resume(setup, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rnd = random.Random(7)
    for i in range(100):
        (src / f"f{i:03d}.bin").write_bytes(rnd.randbytes(1 << 20))
    # a full each time: the second run must be big enough to kill (test_incremental_resume: chains)
    cfg = setup.write([src], volume_size="1MiB", extra="full_every = 1\n")
    # an earlier, complete snapshot that must survive whatever happens next
    first = _once(cfg)
    out, err = first.communicate()
    assert first.returncode == 0, err
    dest = LocalDestination("usb", setup.dest)
    before = list_snapshots(dest, "t").complete
    assert len(before) == 1

    (src / "f000.bin").write_bytes(rnd.randbytes(1 << 20))  # something new to back up
    proc = _once(cfg)
    jobdir = series_dir(setup.dest)
    new_dirs = lambda: [d for d in jobdir.iterdir() if d.name != before[0].snapshot]  # noqa: E731
    deadline = time.monotonic() + 60
    while not new_dirs():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.002)
    snapdir = new_dirs()[0]
    _wait_for(snapdir / "vol.000005.zst", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (snapdir / "manifest.json").exists(), "the run finished before it could be killed"

    # the earlier snapshot is intact, the half one is not listed
    listing = list_snapshots(dest, "t")
    assert [m.snapshot for m in listing.complete] == [before[0].snapshot]
    assert listing.incomplete == [snapdir.name]
    assert verify_snapshot(dest, before[0], download=True).ok

    stored = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in snapdir.glob("vol.*")
              if not p.name.endswith(".partial")}
    assert len(stored) >= 5

    again = _once(cfg)
    out, err = again.communicate()
    assert again.returncode == 0, err
    listing = list_snapshots(dest, "t")
    assert [m.snapshot for m in listing.complete] == [before[0].snapshot, snapdir.name]
    m = listing.complete[-1]
    assert m.resumes == 1
    assert m.chain, "the volumes made after the resume go on with the chain"
    for name, ident in stored.items():
        p = snapdir / name
        assert (p.stat().st_ino, p.stat().st_mtime_ns) == ident, f"{name} was written again"
    assert verify_snapshot(dest, m, download=True).ok
    restored = tmp_path / "restored"
    stats = restore_snapshot(dest, m, restored, special_files=True)
    assert stats.complete, stats  # a resumed snapshot's counts add up to its manifest's
    assert_same_tree(src, restored / str(src).lstrip("/"), dir_mtimes=False)
    # nothing left in the spool
    assert not any(p.is_file() for p in setup.spool.rglob("*"))


def test_failed_destination_keeps_previous_snapshots(setup, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(os.urandom(3 << 20))
    cfg = setup.write([src], volume_size="1MiB")
    p = _once(cfg)
    assert p.wait() == 0
    dest = LocalDestination("usb", setup.dest)
    good = list_snapshots(dest, "t").complete
    # the destination disappears (disk unmounted): the run fails with a clear message
    setup.dest.rename(tmp_path / "unplugged")
    p = _once(cfg)
    out, err = p.communicate()
    assert p.returncode == 1
    assert f"{setup.dest} does not exist" in err and "mounted" in err
    assert not setup.dest.exists(), "an unmounted destination must not be created on the root fs"
    (tmp_path / "unplugged").rename(setup.dest)
    assert [m.snapshot for m in list_snapshots(dest, "t").complete] == [good[0].snapshot]
