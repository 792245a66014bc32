"""Side series of a job (drop-directory files): their own folder, lock, resume state and
retention, never touching the job's own snapshots."""
from __future__ import annotations

from odbackupd.destinations.local import LocalDestination
from odbackupd.runner import drop_series, run_job
from odbackupd.snapshot.catalog import find_snapshot, list_snapshots
from odbackupd.snapshot.restore import restore_snapshot
from odbackupd.state import StateStore


def test_single_file_side_series(setup, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("main tree\n")
    drop = tmp_path / "drop"
    drop.mkdir()
    dump = drop / "db.sql"
    dump.write_bytes(b"INSERT 1;\n" * 5000)
    setup.write([src], extra="keep_last = 1\n")
    cfg = setup.config()
    state = StateStore(cfg.daemon.state_dir / "state.db")
    try:
        main = run_job(cfg, "t", state)
        assert main.result.ok, main.result.message
        for _ in range(2):
            run = run_job(cfg, "t", state, trigger="drop", sources=[dump], series=drop_series("t"))
            assert run.result.ok, run.result.message
        last_main = state.get("last_run:t")
    finally:
        state.close()
    dest = LocalDestination("usb", setup.dest)
    # the job's own series is untouched by the side series' retention (keep_last = 1)
    assert [m.snapshot for m in list_snapshots(dest, "t").complete] == [main.result.snapshot]
    side = list_snapshots(dest, "t+drop").complete
    assert [m.snapshot for m in side] == [run.result.snapshot]
    assert side[0].files == 1
    # drop series stay full-only: each file a snapshot of its own, restorable alone
    assert side[0].kind == "full" and side[0].base is None and side[0].index is None
    # a drop run does not count as the job's last run (schedule catch-up uses it)
    assert last_main is not None and float(last_main) <= side[0].started + 1e-3
    out = tmp_path / "out"
    restore_snapshot(dest, find_snapshot(dest, "t+drop", "latest"), out)
    assert (out / str(dump).lstrip("/")).read_bytes() == dump.read_bytes()
