"""A spool that refuses writes (full disk, quota, file size limit) fails the run cleanly:
a clear message, no half volume left behind, nothing listed as a snapshot, and the next
run succeeds."""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys

from odbackupd.destinations.local import LocalDestination
from odbackupd.snapshot.catalog import list_snapshots
from odbackupd.snapshot.restore import restore_snapshot

from .treegen import assert_same_tree


def _limit_file_size() -> None:
    # EFBIG instead of SIGXFSZ: what a write past RLIMIT_FSIZE returns when the signal is ignored
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (3 << 20, 3 << 20))


def test_write_error_in_the_spool_fails_the_run_and_the_next_run_succeeds(setup, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "random.bin").write_bytes(os.urandom(20 << 20))
    (src / "notes.txt").write_text("notes\n" * 1000)
    cfg = setup.write([src], volume_size="8MiB")  # every volume outgrows the 3 MiB limit
    cmd = [sys.executable, "-m", "odbackupd.main", "--config", str(cfg), "--once", "t"]

    failed = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=_limit_file_size,
                            timeout=120)
    assert failed.returncode == 1, failed.stderr
    assert "failed" in failed.stderr and "File too large" in failed.stderr
    assert str(setup.spool) in failed.stderr  # names the file it could not write
    assert "the next run resumes this snapshot" in failed.stderr
    assert not [p for p in setup.spool.rglob("*") if p.is_file()], \
        "a half-written volume was left in the spool"
    dest = LocalDestination("usb", setup.dest)
    assert list_snapshots(dest, "t").complete == []

    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    [m] = list_snapshots(dest, "t").complete
    restore_snapshot(dest, m, tmp_path / "restored", special_files=True)
    assert_same_tree(src, tmp_path / "restored" / str(src).lstrip("/"), dir_mtimes=False)


def test_a_full_spool_says_which_directory_and_how_much_room(setup, tmp_path):
    """A real full filesystem (a 3 MiB tmpfs as spool_dir): the message names spool_dir
    and the room it needs, not only ENOSPC on a .part file."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "random.bin").write_bytes(os.urandom(8 << 20))
    setup.spool.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3M,mode=0700", "tmpfs", str(setup.spool)],
                   check=True)
    try:
        cfg = setup.write([src], volume_size="4MiB")
        r = subprocess.run([sys.executable, "-m", "odbackupd.main", "--config", str(cfg),
                            "--once", "t"],
                           capture_output=True, text=True, timeout=120)
    finally:
        subprocess.run(["umount", str(setup.spool)], check=True)
    assert r.returncode == 1, r.stderr
    assert f"the spool directory {setup.spool}" in r.stderr and "is full" in r.stderr, r.stderr
    assert "volumes of 4 MiB" in r.stderr and "spool_dir" in r.stderr
    assert list_snapshots(LocalDestination("usb", setup.dest), "t").complete == []
