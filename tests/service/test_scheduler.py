"""Cron schedules on a clock the test moves: next times, random delays, catch-up after
downtime. No test here sleeps; time passes only when the test says so."""
from __future__ import annotations

import asyncio
import datetime as dt
from types import SimpleNamespace

from odbackupd.service.clock import ManualClock
from odbackupd.service.scheduler import Scheduler, missed_run, next_fire, previous_fire
from odbackupd.state import StateStore

from .conftest import running

UTC = dt.UTC


def at(s: str) -> float:
    return dt.datetime.fromisoformat(s).replace(tzinfo=UTC).timestamp()


def job(schedule: str | None, random_delay: float = 0.0,
        persistent: bool = True) -> SimpleNamespace:
    return SimpleNamespace(schedule=schedule, random_delay=random_delay, persistent=persistent)


def test_next_and_previous_times():
    assert next_fire("0 */12 * * *", at("2024-03-01 11:59:59"), UTC) == at("2024-03-01 12:00:00")
    assert next_fire("0 */12 * * *", at("2024-03-01 12:00:00"), UTC) == at("2024-03-02 00:00:00")
    assert next_fire("@daily", at("2024-02-28 23:00:00"), UTC) == at("2024-02-29 00:00:00")
    # 2024-03-04 is a Monday
    assert next_fire("30 2 * * 1", at("2024-03-01 00:00:00"), UTC) == at("2024-03-04 02:30:00")
    assert (previous_fire("0 */12 * * *", at("2024-03-01 12:00:00"), UTC)
            == at("2024-03-01 12:00:00"))
    assert (previous_fire("0 */12 * * *", at("2024-03-01 11:00:00"), UTC)
            == at("2024-03-01 00:00:00"))
    assert missed_run("0 3 * * *", since=at("2024-03-01 02:00:00"),
                      now=at("2024-03-01 04:00:00"), tz=UTC)
    assert not missed_run("0 3 * * *", since=at("2024-03-01 03:30:00"),
                          now=at("2024-03-02 02:59:00"), tz=UTC)


def test_timer_fires_at_cron_times_on_the_clock():
    async def body() -> None:
        clock = ManualClock(at("2024-03-01 10:00:00"))
        fired: list[tuple[str, str, float]] = []
        s = Scheduler(lambda j, why: fired.append((j, why, clock.now())), clock=clock, tz=UTC)
        s.update({"etc": job("0 */12 * * *"), "manual": job(None)})
        assert s.next_run("etc") == at("2024-03-01 12:00:00")
        assert s.next_run("manual") is None
        await clock.wait_for_sleepers(1)
        await clock.advance(3600)  # 11:00: nothing yet
        assert fired == []
        await clock.set(at("2024-03-02 12:30:00"))  # three cron times pass in order
        assert fired == [("etc", "schedule", at(t)) for t in
                         ("2024-03-01 12:00:00", "2024-03-02 00:00:00", "2024-03-02 12:00:00")]
        assert s.next_run("etc") == at("2024-03-03 00:00:00")
        # a changed schedule replaces the timer; a removed one stops
        s.update({"etc": job("0 1 * * *")})
        assert s.next_run("etc") == at("2024-03-03 01:00:00")
        s.update({})
        await asyncio.sleep(0)
        assert s.next_run("etc") is None
        await clock.advance(7 * 86400)
        assert len(fired) == 3
        await s.stop()

    asyncio.run(body())


def test_random_delay_stays_in_bounds_and_is_seeded():
    def delays(seed: int) -> list[float]:
        async def body() -> list[float]:
            clock = ManualClock(at("2024-03-01 00:30:00"))
            fired: list[float] = []
            s = Scheduler(lambda j, why: fired.append(clock.now()), clock=clock, tz=UTC, seed=seed)
            s.update({"db": job("0 * * * *", random_delay=600)})
            await clock.wait_for_sleepers(1)
            await clock.set(at("2024-03-02 00:30:00"))
            await s.stop()
            return fired

        fired = asyncio.run(body())
        assert len(fired) == 24  # one run per hour, none skipped or doubled by the delay
        out = []
        for i, t in enumerate(fired):
            slot = at("2024-03-01 01:00:00") + 3600 * i
            assert slot <= t <= slot + 600
            out.append(t - slot)
        return out

    a, b, c = delays(1), delays(1), delays(2)
    assert a == b  # the same seed, the same delays
    assert a != c
    assert len(set(a)) > 20 and max(a) > 300 > min(a)  # spread over the window, not a constant


def test_persistent_catch_up_after_downtime(tmp_path):
    clock = ManualClock(at("2024-03-05 09:00:00"))
    state = StateStore(tmp_path / "state.db")
    try:
        jobs = {"etc": job("0 3 * * *"), "tmp": job("0 3 * * *", persistent=False),
                "fresh": job("0 3 * * *"), "late": job("0 3 * * *"), "unscheduled": job(None)}
        for name in ("etc", "tmp"):
            # then the machine was off
            state.set(f"last_run:{name}", repr(at("2024-03-03 03:05:00")))
        state.set("last_run:late", repr(at("2024-03-05 03:01:00")))  # ran today: nothing missed
        s = Scheduler(lambda j, why: None, clock=clock, tz=UTC)
        # the 3:00 runs of the 4th and 5th were missed: ONE catch-up run, persistent jobs only
        assert s.catch_up(jobs, state) == ["etc"]
        # a job that never ran is not run at first sight, but from then on it counts
        assert state.get("schedule_since:fresh") is not None
        clock2 = ManualClock(at("2024-03-06 10:00:00"))
        s2 = Scheduler(lambda j, why: None, clock=clock2, tz=UTC)
        assert s2.catch_up(jobs, state) == ["etc", "fresh", "late"]
    finally:
        state.close()


def test_controller_catches_up_at_start(daemon):
    """The daemon was down over a cron time: on start the job runs once, trigger catch-up."""
    daemon.write({"etc": 'schedule = "0 3 * * *"\n',
                  "other": 'schedule = "0 3 * * *"\npersistent = false\n'})
    st = StateStore(daemon.state_dir / "state.db")
    for name in ("etc", "other"):
        st.set(f"last_run:{name}", "0")  # long ago
    st.close()

    async def body() -> None:
        async with running(daemon, clock=ManualClock()) as (ctl, rec):
            started = await rec.wait(lambda: rec.of("run_started"))
            assert [(e.job, e.data["trigger"]) for e in started] == [("etc", "catch-up")]
            await rec.finished(started[0].data["run_id"])
            assert ctl.job_info("other")["next_run"] > ctl.clock.now()
            assert [e.job for e in rec.of("run_started")] == ["etc"]

    asyncio.run(body())


def test_controller_runs_scheduled_job_when_clock_reaches_it(daemon):
    daemon.write({"etc": 'schedule = "*/5 * * * *"\n'})

    async def body() -> None:
        clock = ManualClock(at("2024-03-01 10:01:00"))
        async with running(daemon, clock=clock) as (ctl, rec):
            # the controller schedules in the machine's time zone; */5 falls on the same
            # instants in every zone with a whole-quarter-hour offset
            assert (ctl.job_info("etc")["next_run"] == next_fire("*/5 * * * *", clock.now())
                    == at("2024-03-01 10:05:00"))
            await clock.wait_for_sleepers(1)
            assert rec.of("run_started") == []
            await clock.advance(300)
            started = await rec.wait(lambda: rec.of("run_started"))
            assert started[0].data["trigger"] == "schedule"
            assert (await rec.finished(started[0].data["run_id"]))["status"] == "completed"
            assert "next: etc at" in ctl.daemon_info()["status_line"]

    asyncio.run(body())
