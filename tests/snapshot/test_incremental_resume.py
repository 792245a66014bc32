"""SIGKILL in the middle of an incremental, then the next run finishes the same snapshot:
its volumes are not rebuilt, its index is right, and the chain restores."""
from __future__ import annotations

import random
import signal
import time

from odbackupd.destinations.local import LocalDestination
from odbackupd.snapshot.catalog import list_snapshots
from odbackupd.snapshot.chainrestore import restore_chain, verify_chain
from odbackupd.snapshot.incchain import chain_of
from tests.layout import series_dir

from .incgen import stock_restore
from .test_resume import _once, _wait_for
from .treegen import assert_same_tree


def test_sigkill_mid_incremental_then_resume(setup, tmp_path):
    src = tmp_path / "src"
    (src / "keep").mkdir(parents=True)
    (src / "busy").mkdir()
    rnd = random.Random(11)
    for i in range(40):
        (src / "keep" / f"k{i:02d}").write_bytes(rnd.randbytes(64 << 10))
    def busy(i: int):  # noqa: ANN202 - nested, so the kill lands deep inside a directory
        d = src / "busy" / f"g{i % 3}" / f"h{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        return d / f"b{i:02d}.bin"

    for i in range(60):
        busy(i).write_bytes(rnd.randbytes(1 << 20))
    cfg = setup.write([src], volume_size="1MiB")
    first = _once(cfg)
    assert first.wait() == 0, first.communicate()
    dest = LocalDestination("usb", setup.dest)
    base = list_snapshots(dest, "t").complete[-1]

    for i in range(0, 60, 2):
        busy(i).write_bytes(rnd.randbytes(1 << 20))
    busy(1).unlink()
    proc = _once(cfg)
    jobdir = series_dir(setup.dest)
    deadline = time.monotonic() + 60
    while not [d for d in jobdir.iterdir() if d.name != base.snapshot]:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.002)
    snapdir = next(d for d in jobdir.iterdir() if d.name != base.snapshot)
    _wait_for(snapdir / "vol.000005.zst", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (snapdir / "manifest.json").exists(), "the run finished before it could be killed"
    # the volumes stored whole (one being written at the kill is a .partial: resumed anew)
    stored = {p.name: p.stat().st_ino for p in snapdir.glob("vol.*")
              if not p.name.endswith(".partial")}

    again = _once(cfg)
    out, err = again.communicate()
    assert again.returncode == 0, err
    snaps = list_snapshots(dest, "t").complete
    assert [m.snapshot for m in snaps] == [base.snapshot, snapdir.name]
    m = snaps[-1]
    assert m.kind == "incremental" and m.base == base.snapshot and m.resumes == 1
    assert all((snapdir / n).stat().st_ino == ino
               for n, ino in stored.items()), "a stored volume was rebuilt"
    assert m.changes["deleted"] == 1 and m.changes["changed"] >= 30
    assert all(r.ok for r in verify_chain(dest, m, snaps, download=True))
    chain = chain_of(m, snaps)
    out = tmp_path / "od"
    restore_chain(dest, chain, out)
    assert_same_tree(src, out / str(src).lstrip("/"), dir_mtimes=False)
    out = tmp_path / "tar"
    stock_restore(jobdir, [c.snapshot for c in chain], out, None)
    assert_same_tree(src, out / str(src).lstrip("/"), dir_mtimes=False)


def test_a_kill_after_the_manifest_still_leaves_the_next_run_incremental(setup, tmp_path):
    """The run that wrote the manifest died before it cached its index: the next run takes
    the index from the spool (it is the one the manifest lists) and builds on that snapshot."""
    from .test_kill_points import once, once_killed_at

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("first version\n")
    (src / "b.bin").write_bytes(random.Random(1).randbytes(1 << 20))
    cfg = setup.write([src])
    assert once(cfg).returncode == 0
    (src / "a.txt").write_text("second version\n")
    r = once_killed_at("after-manifest", cfg)
    assert r.returncode == -9, r.stderr
    dest = LocalDestination("usb", setup.dest)
    killed = list_snapshots(dest, "t").complete[-1]
    assert killed.kind == "incremental"
    (src / "a.txt").write_text("third version\n")
    r = once(cfg)
    assert r.returncode == 0, r.stderr
    snaps = list_snapshots(dest, "t").complete
    last = snaps[-1]
    assert last.kind == "incremental" and last.base == killed.snapshot, r.stdout
    out = tmp_path / "out"
    restore_chain(dest, chain_of(last, snaps), out)
    assert_same_tree(src, out / str(src).lstrip("/"), dir_mtimes=False)
