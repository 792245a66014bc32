"""One run lifecycle for every run: a drop-directory file's run is tracked and reported as
a job's own run is (progress, last_run, the daemon's last failure, which the series working
again clears), a crashing run becomes a failed run instead of an exception, and the
controller's state database work happens off the event loop (the loop keeps serving
D-Bus and the systemd watchdog while SQLite waits for the disk)."""
from __future__ import annotations

import asyncio
import threading

from odbackupd.runner import run_job

from .conftest import running


class CrashFirst:
    """run_job, except that its first call fails as a bug in a run would."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, config, job, state, **kw):  # noqa: ANN001, ANN204
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("boom")
        return run_job(config, job, state, **kw)


def test_drop_file_runs_are_tracked_like_job_runs(daemon, tmp_path):
    daemon.write({"etc": ""})
    drop = daemon.add_drop_job("inbox", tmp_path / "drop", "quiet_period = 0.2\n")
    crash = CrashFirst()

    def done(rec, status):  # noqa: ANN001, ANN202
        return [e for e in rec.of("run_finished", "inbox") if e.data["status"] == status]

    async def body() -> None:
        async with running(daemon, run_fn=crash) as (ctl, rec):
            (drop / "a.sql").write_bytes(b"INSERT 1;\n" * 1000)
            failed = (await rec.wait(lambda: done(rec, "failed")))[0].data
            assert failed["message"] == "internal error: RuntimeError: boom"
            assert failed["trigger"] == "drop"
            assert ctl.daemon_info()["last_failure"]["job"] == "inbox"
            assert ctl.job_info("inbox")["last_run"]["run_id"] == failed["run_id"]
            # recorded, not left "running"
            assert ctl.state.run(failed["run_id"])["status"] == "failed"
            assert (drop / "a.sql").exists()  # kept for the retry

            (drop / "b.sql").write_bytes(b"INSERT 2;\n" * 1000)
            ok = (await rec.wait(lambda: done(rec, "completed")))[0].data
            assert ok["files"] == 1 and ok["snapshot"]
            info = ctl.job_info("inbox")
            assert info["last_run"]["run_id"] == ok["run_id"]
            assert info["last_run"]["status"] == "completed"
            assert "last_failure" not in ctl.daemon_info()  # the drop series works again
            # drop runs report progress and show as running while they run
            assert rec.of("progress", "inbox")
            states = [e.data["state"] for e in rec.of("job_changed", "inbox")]
            assert "running" in states and states[-1] == "idle"

    asyncio.run(body())


def test_state_database_work_is_off_the_event_loop(daemon):
    """Every statement the controller's connection runs after start, traced by SQLite
    itself: none on the loop's thread (a commit with synchronous=FULL waits for the disk)."""
    daemon.write({"etc": ""})

    async def body() -> None:
        async with running(daemon) as (ctl, rec):
            loop_thread = threading.get_ident()
            on_loop: list[str] = []
            ctl.state._db.set_trace_callback(  # the controller's own connection
                lambda sql: on_loop.append(sql) if threading.get_ident() == loop_thread else None)
            first = await ctl.backup_now("etc")
            await rec.wait(lambda: rec.of("run_started"))
            queued = await ctl.backup_now("etc", "schedule")
            assert ctl.cancel("etc")  # the queued run is recorded as cancelled
            for run_id in (first, queued):
                await rec.finished(run_id)
            daemon.write({"etc": "", "home": ""})
            await ctl.reload()  # reads the new job's last run
            ctl.state._db.set_trace_callback(None)
            assert on_loop == []
            assert ctl.state.run(queued)["status"] == "cancelled"

    asyncio.run(body())
