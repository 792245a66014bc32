"""inotify triggers on real trees with real inotify: one run per burst of changes, after the
quiet period, at most max_delay after the first change; new directories followed; excludes,
the daemon's own directories and non-UTF-8 names; the watch limit reported clearly."""
from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from odbackupd.service.watcher import InotifyHub, JobWatcher, WatchLimitError, WatchReport

QUIET = 0.2


class Triggers:
    """Records on_trigger calls with the loop time; ``next()`` is a future for the next."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.times: list[float] = []
        self._waiters: list[asyncio.Future] = []

    def __call__(self, job: str) -> None:
        self.times.append(self.loop.time())
        for f in self._waiters:
            if not f.done():
                f.set_result(job)
        self._waiters.clear()

    def next(self) -> asyncio.Future:
        f = self.loop.create_future()
        self._waiters.append(f)
        return f

    async def none_within(self, seconds: float) -> None:
        """Assert that no trigger comes. Proving a negative needs a bounded wait: the wait
        is several quiet periods, so a wrongly re-armed timer would have fired in it."""
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.next()), seconds)


@contextlib.contextmanager
def watching(paths: list[Path], **kw: object) -> Iterator[tuple[JobWatcher, Triggers, WatchReport]]:
    """A started watcher of job "t" on the running loop, stopped on the way out."""
    loop = asyncio.get_running_loop()
    trig = Triggers(loop)
    kw.setdefault("quiet_period", QUIET)
    kw.setdefault("max_delay", 30.0)
    w = JobWatcher(loop, "t", paths, on_trigger=trig, **kw)  # type: ignore[arg-type]
    report = w.start()
    try:
        yield w, trig, report
    finally:
        w.stop()


def test_one_run_after_the_quiet_period(tmp_path):
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)

    async def body() -> None:
        with watching([src]) as (w, trig, report):
            assert report.watches == 3 and report.unreadable == [] and report.missing == []
            fired = trig.next()
            (src / "a" / "b" / "f.txt").write_text("one\n")
            (src / "top.txt").write_text("two\n")
            written = trig.loop.time()
            assert await asyncio.wait_for(fired, 10) == "t"
            assert trig.times[0] - written >= QUIET - 0.01
            await trig.none_within(QUIET * 4)
            assert len(trig.times) == 1
            # a later change is a new burst: one more run
            fired = trig.next()
            (src / "a" / "f2.txt").write_text("three\n")
            await asyncio.wait_for(fired, 10)
            assert len(trig.times) == 2
        assert w._hub.closed  # the last owner gone: the inotify fd is closed

    asyncio.run(body())


def test_burst_of_10000_changes_is_one_run(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    # the writer thread shares two busy cores with the loop and other tests: a pause longer
    # than the quiet period would rightly split the burst, so the period is generous here
    quiet = 1.0

    def writer() -> None:  # 50 new directories, 1,000 new files, 10,000 writes
        for d in range(50):
            sub = src / f"d{d}"
            sub.mkdir()
            for i in range(20):
                with open(sub / f"f{i}", "wb", buffering=0) as f:
                    for _ in range(10):
                        f.write(b"a line\n")

    async def body() -> None:
        with watching([src], quiet_period=quiet) as (w, trig, _):
            fired = trig.next()
            t = threading.Thread(target=writer)
            t.start()
            await trig.loop.run_in_executor(None, t.join)
            done = trig.loop.time()
            await asyncio.wait_for(fired, 30)
            await trig.none_within(quiet * 1.5)
            assert len(trig.times) == 1
            assert trig.times[0] >= done - 0.05  # not before the burst ended
            # the 50 new directories are watched (followed, or found again after an overflow)
            assert w._hub.held_by(w) == 51
            fired = trig.next()
            (src / "d49" / "late").write_bytes(b"y")
            await asyncio.wait_for(fired, 10)

    asyncio.run(body())


def test_event_queue_overflow_is_one_change_and_new_dirs_are_found(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    queued = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())

    async def body() -> None:
        with watching([src]) as (w, trig, _):
            fired = trig.next()
            # Written from the loop's own thread: no event is read until this returns, so
            # the kernel's queue must overflow (writes alternate between two files: the
            # kernel merges only identical consecutive events), and the creation of "late",
            # queued after the overflow, is lost.
            with open(src / "a", "wb", buffering=0) as a, open(src / "b", "wb", buffering=0) as b:
                for _ in range(queued // 2 + 100):
                    a.write(b"a")
                    b.write(b"b")
            (src / "late" / "deeper").mkdir(parents=True)
            await asyncio.wait_for(fired, 10)
            assert w._hub.overflows == 1
            await trig.none_within(QUIET * 3)
            assert len(trig.times) == 1
            assert w._hub.held_by(w) == 3  # src, late and late/deeper: found by walking again
            fired = trig.next()
            (src / "late" / "deeper" / "f").write_text("seen\n")
            await asyncio.wait_for(fired, 10)

    asyncio.run(body())


def test_max_delay_bounds_a_burst_that_does_not_stop(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    quiet, max_delay = 0.6, 1.5  # a loaded machine may stall the writer for a while

    async def body() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        async def keep_writing() -> float:
            n, last = 0, 0.0
            while not stop.is_set():
                (src / "busy.log").write_text(f"{n}\n")
                last, n = loop.time(), n + 1
                await asyncio.sleep(0.05)  # pacing the writer, not synchronisation
            return last

        with watching([src], quiet_period=quiet, max_delay=max_delay) as (_, trig, _):
            fired = trig.next()
            first = loop.time()
            writing = loop.create_task(keep_writing())
            await asyncio.wait_for(fired, 10)
            at = trig.times[0]
            stop.set()
            await writing
            # fired at max_delay although changes never paused for a quiet period
            assert max_delay - 0.05 <= at - first < max_delay + quiet

    asyncio.run(body())


def test_new_directories_are_followed(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    outside = tmp_path / "outside"
    (outside / "x" / "y").mkdir(parents=True)

    async def body() -> None:
        with watching([src]) as (w, trig, _):
            fired = trig.next()
            (src / "new" / "deeper").mkdir(parents=True)
            await asyncio.wait_for(fired, 10)
            fired = trig.next()
            (src / "new" / "deeper" / "f").write_text("in a directory made after start\n")
            await asyncio.wait_for(fired, 10)
            # a tree moved in from outside is watched all the way down
            fired = trig.next()
            os.rename(outside / "x", src / "x")
            await asyncio.wait_for(fired, 10)
            fired = trig.next()
            (src / "x" / "y" / "f").write_text("moved-in tree\n")
            await asyncio.wait_for(fired, 10)
            # and a tree moved out is no longer watched
            held = w._hub.held_by(w)
            fired = trig.next()
            os.rename(src / "x", outside / "x")
            await asyncio.wait_for(fired, 10)
            assert w._hub.held_by(w) == held - 2
            (outside / "x" / "y" / "g").write_text("not ours any more\n")
            await trig.none_within(QUIET * 4)

    asyncio.run(body())


def test_excludes_own_dirs_and_single_file_sources(tmp_path):
    src = tmp_path / "src"
    (src / "cache").mkdir(parents=True)
    (src / "state").mkdir()
    (src / "keep").mkdir()
    etc = tmp_path / "etc"
    etc.mkdir()
    conf = etc / "app.conf"
    conf.write_text("v1\n")
    (etc / "other.conf").write_text("not a source\n")

    async def body() -> None:
        with watching([src, conf], exclude=["cache", "*.tmp"],
                      skip_paths=[src / "state"]) as (_, trig, report):
            assert report.watches == 3  # src, src/keep and etc (for the file); not cache, state
            (src / "cache" / "c").write_text("excluded directory\n")
            (src / "scratch.tmp").write_text("excluded name\n")
            (src / "state" / "state.db").write_text("the daemon's own state\n")
            (etc / "other.conf").write_text("a sibling of a file source\n")
            await trig.none_within(QUIET * 4)
            assert trig.times == []
            # the file source replaced by rename, as editors save it
            fired = trig.next()
            (etc / "app.conf.new").write_text("v2\n")
            os.rename(etc / "app.conf.new", conf)
            await asyncio.wait_for(fired, 10)
            assert len(trig.times) == 1

    asyncio.run(body())


def test_non_utf8_directory_names(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    odd = os.fsencode(src) + b"/caf\xe9"
    os.mkdir(odd)

    async def body() -> None:
        with watching([src]) as (w, trig, report):
            assert report.watches == 2
            fired = trig.next()
            with open(odd + b"/r\xe9sum\xe9.txt", "wb") as f:
                f.write(b"latin-1 names\n")
            await asyncio.wait_for(fired, 10)
            fired = trig.next()
            os.mkdir(odd + b"/sub\xff")
            await asyncio.wait_for(fired, 10)
            assert w._hub.held_by(w) == 3

    asyncio.run(body())


def test_overlapping_jobs_both_see_changes(tmp_path):
    """One inotify instance, shared descriptors: two jobs over the same tree both trigger,
    and stopping one leaves the other watching."""
    src = tmp_path / "src"
    (src / "git").mkdir(parents=True)

    async def body() -> None:
        loop = asyncio.get_running_loop()
        ta, tb = Triggers(loop), Triggers(loop)
        a = JobWatcher(loop, "a", [src], quiet_period=QUIET, max_delay=30, on_trigger=ta)
        b = JobWatcher(loop, "b", [src / "git"], quiet_period=QUIET, max_delay=30, on_trigger=tb)
        a.start()
        b.start()
        hub = InotifyHub.for_loop(loop)
        assert hub.watch_count == 2
        try:
            fa, fb = ta.next(), tb.next()
            (src / "git" / "HEAD").write_text("ref\n")
            await asyncio.wait_for(asyncio.gather(fa, fb), 10)
            a.stop()
            assert hub.watch_count == 1 and not hub.closed
            fb = tb.next()
            (src / "git" / "HEAD").write_text("ref2\n")
            await asyncio.wait_for(fb, 10)
            assert len(ta.times) == 1
        finally:
            a.stop()
            b.stop()
        assert hub.closed

    asyncio.run(body())


LIMIT_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from odbackupd.service.watcher import InotifyHub, JobWatcher, WatchLimitError, WatchReport
    Path("/proc/sys/user/max_inotify_watches").write_text("20")
    big, small = Path(sys.argv[1]), Path(sys.argv[2])

    async def main():
        loop = asyncio.get_running_loop()
        w = JobWatcher(loop, "big", [big], quiet_period=1, max_delay=2, on_trigger=print)
        try:
            w.start()
            print("NO ERROR")
        except WatchLimitError as e:
            print("ERROR:", e)
        hub = InotifyHub.for_loop(loop)
        print("LEFT:", hub.watch_count)
        # what failed was rolled back: a job that fits still gets its watches
        s = JobWatcher(loop, "small", [small], quiet_period=1, max_delay=2, on_trigger=print)
        print("SMALL:", s.start().watches)
        s.stop()

    asyncio.run(main())
""")


def test_watch_limit_is_reported_and_rolled_back(tmp_path):
    big = tmp_path / "big"
    for i in range(40):
        (big / f"d{i}").mkdir(parents=True)
    small = tmp_path / "small"
    (small / "a").mkdir(parents=True)
    # a user namespace of its own, with its own tiny watch limit: the host's stays untouched
    out = subprocess.run(
        ["unshare", "--user", "--map-root-user", sys.executable, "-c", LIMIT_SCRIPT,
         str(big), str(small)],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line)
    msg = lines["ERROR"]
    assert msg.startswith("job big: cannot watch '")
    assert "fs.inotify.max_user_watches = " in msg
    assert "this user namespace allows only 20" in msg
    assert "sysctl fs.inotify.max_user_watches=" in msg and "runs on its schedule only" in msg
    assert lines["LEFT"] == "0"
    assert lines["SMALL"] == "2"


def test_watch_limit_error_is_an_oserror_with_a_plain_message():
    e = WatchLimitError(28, "cannot watch '/x': raise fs.inotify.max_user_watches")
    assert (isinstance(e, OSError)
            and str(e) == "cannot watch '/x': raise fs.inotify.max_user_watches")


def _many_dirs(root: Path, n: int) -> None:
    for i in range(n):
        (root / f"d{i // 100:03d}" / f"e{i % 100:02d}").mkdir(parents=True)


def test_the_daemons_walk_gives_the_loop_back_and_watches_everything(tmp_path):
    """start_async (what the daemon uses) serves the loop between batches — a callback
    queued before the walk runs while watches are still being added — and ends with the
    same watches as the blocking start(); a change in the tree then triggers as usual."""
    src = tmp_path / "src"
    _many_dirs(src, 3000)

    async def body() -> None:
        loop = asyncio.get_running_loop()
        trig = Triggers(loop)
        w = JobWatcher(loop, "t", [src], on_trigger=trig, quiet_period=QUIET, max_delay=30.0)
        seen: list[int] = []
        task = loop.create_task(w.start_async(batch=200))
        loop.call_soon(lambda: seen.append(w._hub.held_by(w) if w._hub else 0))
        report = await task
        try:
            assert seen and 0 < seen[0] < report.watches, seen  # ran in the middle of the walk
            assert report.watches == 1 + 30 + 3000
            fired = trig.next()
            (src / "d007" / "e42" / "new.txt").write_text("x")
            await asyncio.wait_for(fired, 10)
        finally:
            w.stop()
        # a watcher stopped during its walk (a reload) leaves no watches behind
        w2 = JobWatcher(loop, "t", [src], on_trigger=trig, quiet_period=QUIET, max_delay=30.0)
        task = loop.create_task(w2.start_async(batch=200))
        loop.call_soon(w2.stop)
        assert await task is None
        assert w2._hub.held_by(w2) == 0

    asyncio.run(body())
