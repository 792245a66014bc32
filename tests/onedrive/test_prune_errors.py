"""A retention failure after a complete snapshot is reported — to --once's stderr, in the
run's record and on RunFinished — and never turns the run into a failure."""
from __future__ import annotations

import os

from odbackupd.runner import run_job
from odbackupd.runrecord import RunSummary


def test_a_failed_prune_is_reported_and_the_run_still_completes(od, tmp_path):
    emu = od.emu
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(os.urandom(500_000))
    # fulls: the second run prunes the first
    od.write([src], job_extra="keep_last = 1\nfull_every = 1\n")
    od.login()
    first = od.once()
    assert first.wait(120) == 0, first.communicate()
    emu.faults.add("error", "graph.item.delete", times=None, status=403, code="accessDenied")
    second = od.once()
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert "completed" in out
    assert "warning: retention failed on od:" in err and "the next run prunes again" in err

    cfg, state = od.config(), od.state()
    try:
        run = run_job(cfg, "t", state)
        assert run.result.ok and run.prune_errors and run.prune_errors[0].startswith("od: ")
        assert RunSummary.of_run(run, "manual", 0.0).as_dict()["prune_errors"] == run.prune_errors
        assert state.run(run.run_id)["stats"]["prune_errors"] == run.prune_errors
    finally:
        state.close()
    emu.faults.clear()
