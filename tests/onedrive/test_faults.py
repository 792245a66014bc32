"""A multi-volume backup through everything the service throws at a client, seeded."""
from __future__ import annotations

import random

import pytest

from odbackupd.crypto.age import load_identities
from odbackupd.runner import run_job
from odbackupd.snapshot.restore import restore_snapshot
from tests.snapshot.treegen import assert_same_tree, make_awkward_tree


def _log(emu) -> str:  # noqa: ANN001
    """The request log, for a failure message."""
    t0 = emu.requests[0]["t"]
    return "\n".join(f"{r['t'] - t0:7.3f} {r['method']} {r['label']} {r['status']} {r['faults']}"
                     for r in emu.requests)


@pytest.mark.graphemu(seed=20240611)
def test_backup_and_restore_through_faults(od, age_key, tmp_path):
    emu = od.emu
    src = make_awkward_tree(tmp_path / "tree", big=2 << 20)
    rnd = random.Random(5)
    (src / "more").mkdir()
    for i in range(3):
        (src / "more" / f"r{i}.bin").write_bytes(rnd.randbytes(1 << 20))
    key, recipient = age_key
    # One upload worker: with several, a request already on the wire when another
    # worker's 429 arrives reaches the emulator after its gate closed, and it counts that
    # as ignoring Retry-After; test_throttle.py shows the gate holding back other workers.
    od.write([src], recipients=[recipient], parallel=1)
    od.login()

    # Scheduled: each kind of trouble at least once. All three Retry-After forms.
    f = emu.faults
    f.add("throttle", "upload.fragment", nth=2, retry_after=1)
    f.add("throttle", "graph.*", nth=6, retry_after="date")
    f.add("throttle", "upload.fragment", nth=9, retry_after=None)
    f.add("throttle", "upload.fragment", nth=14, status=503, retry_after=1)
    f.add("lost_response", "upload.fragment", nth=4)
    f.add("partial_commit", "upload.fragment", nth=7, keep=70_001)
    f.add("partial_commit", "upload.fragment", nth=11, keep=250_000, then="503")
    f.add("reset", "upload.fragment", nth=12)
    f.add("error", "graph.*", nth=3, status=502)
    f.add("revoke_access", "graph.*", nth=10)
    f.add("rps_401", "graph.*", nth=20)
    f.add("hashes_missing", "upload.fragment", every=3, times=None)
    # Random: a bit of everything on top.
    f.set(lost_response_rate=0.08, partial_commit_rate=0.04, reset_rate=0.02, error_rate=0.02,
          missing_ranges_rate=0.05, empty_page_rate=0.2)

    cfg, state = od.config(), od.state()
    run = run_job(cfg, "t", state)
    assert run.result.ok, run.result.message + "\n" + _log(emu)
    m = run.result.manifest
    assert len(m.volumes) >= 4
    fired = {action for _, _, action in f.history}
    assert {"throttle", "lost_response", "partial_commit", "reset", "revoke_access", "rps_401",
            "error", "hashes_missing"} <= fired, fired
    assert emu.counters["graph_401"] >= 1 and emu.counters["tokens_refreshed"] >= 1

    # restore through broken downloads as well
    f.clear()
    f.set(truncate_rate=0.3, reset_rate=0.05)
    f.add("truncate", "download.get", nth=1)  # at least one, whatever the seeded draws give
    f.add("ignore_range", "download.get", every=2, times=None)
    f.add("throttle", "download.get", nth=2, retry_after=1)
    out = tmp_path / "out"
    dest = od.destination(state)
    restore_snapshot(dest, m, out, identities=load_identities(key), special_files=True)
    assert_same_tree(src, out / str(src).lstrip("/"))
    assert "truncate" in {action for _, _, action in f.history}
    dest.close()
    state.close()

    assert emu.retry_after_violations == 0
    emu.assert_no_violations()
