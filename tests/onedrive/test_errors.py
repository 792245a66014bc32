"""What a sysadmin sees when the login is missing or revoked, or the drive is full."""
from __future__ import annotations

import random

import pytest

from odbackupd.runner import run_job
from odbackupd.snapshot.catalog import list_snapshots
from odbackupd.snapshot.restore import restore_snapshot, verify_snapshot
from tests.snapshot.treegen import assert_same_tree


@pytest.fixture
def src(tmp_path):  # noqa: ANN001, ANN201
    s = tmp_path / "src"
    s.mkdir()
    rnd = random.Random(4)
    for i in range(3):
        (s / f"f{i}.bin").write_bytes(rnd.randbytes(700_000))
    return s


def test_never_logged_in_is_one_clear_line_and_exit_1(od, src):
    od.write([src])
    proc = od.once()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, not the same news three times
    assert "account 'a'" in lines[0] and "odctl login a" in lines[0], err
    assert od.emu.counters["requests.graph.drive"] == 0  # nothing was tried without a login
    od.emu.assert_no_violations()


def test_login_revoked_mid_run_fails_clearly_then_resumes_after_login(od, src, tmp_path):
    emu = od.emu
    od.write([src], parallel=1)
    od.login()
    cfg, state = od.config(), od.state()
    # at the second volume's createUploadSession the login is withdrawn: the access token
    # stops working and refreshing it is refused (invalid_grant)
    emu.faults.add("revoke_access", "graph.session.create", nth=2)
    emu.faults.add("revoke_refresh", "identity.token", nth=1)
    run = run_job(cfg, "t", state)
    assert not run.result.ok
    assert emu.counters["sessions_completed"] == 1
    assert run.login_needed
    assert "odctl login a" in run.result.message

    od.login()
    assert list_snapshots(od.destination(), "t").complete == []  # the half snapshot is not listed
    run = run_job(cfg, "t", state)
    assert run.result.ok, run.result.message
    assert run.result.resumed
    dest = od.destination(state)
    out = tmp_path / "out"
    restore_snapshot(dest, run.result.manifest, out, special_files=True)
    assert_same_tree(src, out / str(src).lstrip("/"))
    dest.close()
    state.close()
    emu.assert_no_violations()


def test_full_drive_before_and_during_a_run(od, src):
    emu = od.emu
    od.write([src])
    od.login()
    cfg, state = od.config(), od.state()
    first = run_job(cfg, "t", state)
    assert first.result.ok, first.result.message

    used = emu.quota()["used"]
    emu.set_quota(used)  # nothing left: refused before anything is sent
    sent = emu.counters["bytes_uploaded"]
    run = run_job(cfg, "t", state)
    assert not run.result.ok
    msg = run.result.message
    assert "account 'a'" in msg and "is full" in msg and "0 B free" in msg, msg
    assert emu.counters["bytes_uploaded"] == sent

    stored = first.result.manifest.stored_bytes
    emu.set_quota(used + stored // 2)  # less room than the last snapshot took: refused up front
    run = run_job(cfg, "t", state)
    assert not run.result.ok and "needed" in run.result.message, run.result.message
    assert emu.counters["bytes_uploaded"] == sent

    # room for what the last snapshot took, but this one has grown: a 507 during the run
    emu.set_quota(used + stored + 100_000)
    for i in range(8):
        (src / f"new{i}.bin").write_bytes(random.Random(100 + i).randbytes(700_000))
    run = run_job(cfg, "t", state)
    assert not run.result.ok
    assert "account 'a'" in run.result.message and "full" in run.result.message, run.result.message
    assert emu.counters["status.507"] >= 1

    # the earlier snapshot is untouched and still verifies; the failed one is not listed
    dest = od.destination(state)
    listing = list_snapshots(dest, "t")
    assert [m.snapshot for m in listing.complete] == [first.result.snapshot]
    assert verify_snapshot(dest, listing.complete[0]).ok
    dest.close()
    state.close()
    emu.assert_no_violations()


def test_login_revoked_as_the_manifest_is_written_is_login_needed(od, tmp_path):
    emu = od.emu
    src = tmp_path / "small"
    src.mkdir()
    (src / "a.txt").write_text("small enough for one simple upload\n")
    od.write([src])
    od.login()
    cfg, state = od.config(), od.state()
    # the volume is the first simple PUT, the manifest the second
    emu.faults.add("revoke_access", "graph.content.put", nth=2)
    emu.faults.add("revoke_refresh", "identity.token", nth=1)
    run = run_job(cfg, "t", state)
    assert not run.result.ok and "manifest" in run.result.message, run.result.message
    assert run.login_needed and "odctl login a" in run.result.message
    od.login()
    run = run_job(cfg, "t", state)  # finishes the same snapshot
    assert run.result.ok and run.result.resumed, run.result.message
    state.close()
    emu.assert_no_violations()
