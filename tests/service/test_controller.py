"""The controller driven directly, as the D-Bus adapter drives it: real runs of real jobs
into a local destination, observed through events and the state database."""
from __future__ import annotations

import asyncio
import os

import pytest

from odbackupd.destinations.local import LocalDestination
from odbackupd.service.errors import InvalidArgs, InvalidConfig, NoSuchJob
from odbackupd.snapshot.catalog import find_snapshot
from odbackupd.snapshot.restore import restore_snapshot
from odbackupd.state import StateStore

from .conftest import Gate, running


def test_backup_now_runs_and_reports(daemon, tmp_path):
    daemon.write({"etc": ""})

    async def body() -> None:
        async with running(daemon) as (ctl, rec):
            rec.state_at_finish = []
            ctl.subscribe(lambda ev: ev.kind == "run_finished"
                          and rec.state_at_finish.append(ctl.job_info(ev.job)["state"]))
            assert ctl.job_names() == ["etc"]
            run_id = await ctl.backup_now("etc")
            done = await rec.finished(run_id)
            assert done["status"] == "completed", done
            assert done["files"] == 3 and done["trigger"] == "manual" and done["snapshot"]
            # a client reacting to RunFinished already sees the job idle
            assert rec.state_at_finish == ["idle"]
            started = rec.of("run_started", "etc")
            assert [e.data for e in started] == [{"run_id": run_id, "trigger": "manual"}]
            # progress went out while it ran, with the documented keys
            prog = rec.of("progress", "etc")
            assert prog and {"phase", "files", "bytes_done", "volumes_done"} <= set(prog[-1].data)
            info = ctl.job_info("etc")
            assert info["state"] == "idle" and not info["queued"]
            assert (info["last_run"]["run_id"] == run_id
                    and info["last_run"]["status"] == "completed")
            assert info["destinations"] == ["usb"] and info["encrypted"] is False
            assert None not in info.values()
            snaps = await ctl.list_snapshots("etc")
            assert ([(s["id"], s["destination"], s["files"]) for s in snaps]
                    == [(done["snapshot"], "usb", 3)])
            assert ctl.daemon_info()["state"] == "idle"
            with pytest.raises(NoSuchJob, match="no job 'nope'.*jobs: etc"):
                await ctl.backup_now("nope")
            return done["snapshot"]

    snap = asyncio.run(body())
    dest = LocalDestination("usb", daemon.dest)
    out = tmp_path / "out"
    restore_snapshot(dest, find_snapshot(dest, "etc", snap), out)
    src = daemon.tmp / "src" / "etc"
    assert (out / str(src).lstrip("/") / "f1.txt").read_bytes() == (src / "f1.txt").read_bytes()


def test_trigger_during_run_queues_exactly_one_follow_up(daemon):
    daemon.write({"etc": ""})
    gate = Gate()

    async def body() -> None:
        async with running(daemon, run_fn=gate) as (ctl, rec):
            try:
                first = await ctl.backup_now("etc")
                # before it starts, a second request is the same run
                assert await ctl.backup_now("etc", "watch") == first
                await rec.wait(lambda: rec.of("run_started"))
                follow = await ctl.backup_now("etc", "schedule")
                assert follow != first
                assert await ctl.backup_now("etc") == follow
                assert await ctl.backup_now("etc", "watch") == follow
                info = ctl.job_info("etc")
                assert info["state"] == "running" and info["queued"] and info["run_id"] == first
            finally:
                gate.open.set()
            a = await rec.finished(first)
            b = await rec.finished(follow)
            assert (a["status"], b["status"]) == ("completed", "completed")
            assert b["trigger"] == "schedule"
            # exactly two runs, one after the other
            assert [e.data["run_id"] for e in rec.of("run_started")] == [first, follow]
            assert gate.entered == ["etc", "etc"]
            assert ctl.job_info("etc")["queued"] is False

    asyncio.run(body())


def test_global_limit_runs_jobs_in_turn(daemon):
    daemon.write({"a": "", "b": "", "c": ""}, daemon_extra="max_parallel_runs = 2\n")
    gate = Gate()

    async def body() -> None:
        async with running(daemon, run_fn=gate) as (ctl, rec):
            try:
                ids = [await ctl.backup_now(n) for n in ("a", "b", "c")]
                await rec.wait(lambda: len(rec.of("run_started")) == 2)
                assert ctl.daemon_info()["running"] == ["a", "b"]
                c = ctl.job_info("c")
                assert c["state"] == "idle" and c["queued"] is True
            finally:
                gate.open.set()
            for i in ids:
                assert (await rec.finished(i))["status"] == "completed"
            assert [e.job for e in rec.of("run_started")] == ["a", "b", "c"]

    asyncio.run(body())


def _big_job(daemon) -> None:
    daemon.write({"big": "compression_level = 1\n"})
    (daemon.tmp / "src" / "big" / "blob").write_bytes(os.urandom(6 << 20))


async def _cancel_at_start(ctl, rec, gate: Gate) -> int:
    """Start a run, cancel it as it starts; returns the id of a follow-up queued meanwhile."""
    first = await ctl.backup_now("big")
    await rec.wait(lambda: rec.of("run_started"))
    queued = await ctl.backup_now("big")
    assert ctl.cancel("big") is True
    assert ctl.job_info("big")["state"] == "cancelling"
    gate.open.set()
    a = await rec.finished(first)
    assert a["status"] == "cancelled" and "resumes" in a["message"]
    return queued


def test_cancel_checkpoints_and_next_run_resumes(daemon):
    _big_job(daemon)
    gate = Gate()

    async def body() -> None:
        async with running(daemon, run_fn=gate) as (ctl, rec):
            queued = await _cancel_at_start(ctl, rec, gate)
            q = await rec.finished(queued)
            assert q["status"] == "cancelled"  # the follow-up went with it
            assert ctl.cancel("big") is False  # nothing left
            assert ctl.state.inprogress("big") is not None  # the checkpoint stays
            again = await ctl.backup_now("big")
            done = await rec.finished(again)
            assert done["status"] == "completed", done
            assert ctl.state.run(again)["stats"]["resumed"] is True

    asyncio.run(body())


def test_reload_good_and_bad(daemon):
    daemon.write({"etc": ""})

    async def body() -> None:
        async with running(daemon) as (ctl, rec):
            good = daemon.path.read_text()
            daemon.write({"etc": 'schedule = "0 3 * * *"\n', "home": ""})
            await ctl.reload()
            assert ctl.job_names() == ["etc", "home"]
            info = ctl.job_info("etc")
            assert info["schedule"] == "0 3 * * *" and info["next_run"] > ctl.clock.now()
            assert rec.of("job_changed", "home")
            # broken: the message names file and line, and everything stays as it was
            daemon.path.write_text(good + '\n[job.bad]\nsources = ["/srv"]\nvolume_size = "lots"\n')
            with pytest.raises(InvalidConfig) as ei:
                await ctl.reload()
            assert f"{daemon.path}:" in str(ei.value) and "volume_size" in str(ei.value)
            assert "keeping the previous configuration" in str(ei.value)
            assert ctl.job_names() == ["etc", "home"]
            run_id = await ctl.backup_now("home")
            assert (await rec.finished(run_id))["status"] == "completed"

    asyncio.run(body())


def test_job_removed_during_reload_while_running(daemon):
    daemon.write({"etc": "", "gone": ""})
    gate = Gate()

    async def body() -> None:
        async with running(daemon, run_fn=gate) as (ctl, rec):
            try:
                rid = await ctl.backup_now("gone")
                await rec.wait(lambda: rec.of("run_started"))
                daemon.write({"etc": ""})
                warnings = await ctl.reload()
                assert any("gone" in w and "cancelled" in w for w in warnings)
                assert ctl.job_names() == ["etc"]
                with pytest.raises(NoSuchJob):
                    ctl.job_info("gone")
            finally:
                gate.open.set()
            assert (await rec.finished(rid))["status"] == "cancelled"
            assert "gone" not in ctl.daemon_info()["running"]

    asyncio.run(body())


def test_start_resumes_interrupted_snapshot(daemon):
    _big_job(daemon)
    gate = Gate()

    async def first_life() -> None:
        async with running(daemon, run_fn=gate) as (ctl, rec):
            await _cancel_at_start(ctl, rec, gate)

    async def second_life() -> dict:
        async with running(daemon) as (ctl, rec):
            started = await rec.wait(lambda: rec.of("run_started", "big"))
            assert started[0].data["trigger"] == "resume"
            return await rec.finished(started[0].data["run_id"])

    asyncio.run(first_life())
    st = StateStore(daemon.state_dir / "state.db")
    try:
        assert st.inprogress("big") is not None
        # the first daemon closed its runs: nothing is left "running" in the history
        assert {r["status"] for r in st.last_runs("big")} == {"cancelled"}
    finally:
        st.close()
    done = asyncio.run(second_life())
    assert done["status"] == "completed"


async def _until(cond, what: str, timeout: float = 30.0) -> None:  # noqa: ANN001
    """Wait for an observable condition (a file gone) that raises no controller event."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def test_drop_dir_file_becomes_a_snapshot_then_goes(daemon, tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "early.sql").write_bytes(b"present at start\n" * 100)  # taken once settled
    daemon.write({"etc": ""})
    text = (daemon.path.read_text()
            + f'\n[job.inbox]\ndrop_dir = "{drop}"\ndestinations = ["usb"]\nquiet_period = 0.2\n')
    daemon.path.write_text(text)

    async def body() -> None:
        async with running(daemon) as (ctl, rec):
            assert ctl.job_info("inbox")["drop_dir"] == str(drop)
            with pytest.raises(InvalidArgs, match="drop directory"):
                await ctl.backup_now("inbox")  # nothing to back up but what is dropped
            with open(drop / "dump.sql", "wb") as f:  # written and closed: complete
                f.write(b"INSERT 2;\n" * 1000)
            await rec.wait(lambda: len([e for e in rec.of("run_finished", "inbox")
                                        if e.data["status"] == "completed"]) == 2)
            assert {e.data["trigger"] for e in rec.of("run_started", "inbox")} == {"drop"}
            await _until(lambda: not any(drop.iterdir()), "the stored files to be removed")
            assert rec.of("run_started", "etc") == []  # the job's own series did not run
            listed = await ctl.list_snapshots("inbox+drop")  # what odctl snapshots JOB+drop asks
            assert len(listed) == 2 and await ctl.list_snapshots("inbox") == []
            with pytest.raises(NoSuchJob):
                await ctl.list_snapshots("etc+drop")  # etc has no drop directory

    asyncio.run(body())
    dest = LocalDestination("usb", daemon.dest)
    out = tmp_path / "out"
    from odbackupd.snapshot.catalog import list_snapshots

    snaps = list_snapshots(dest, "inbox+drop").complete
    assert len(snaps) == 2 and all(m.files == 1 for m in snaps)
    for m in snaps:
        restore_snapshot(dest, m, out)
    assert (out / str(drop).lstrip("/") / "dump.sql").read_bytes() == b"INSERT 2;\n" * 1000
    assert (out / str(drop).lstrip("/") / "early.sql").read_bytes() == b"present at start\n" * 100
