#!/usr/bin/env python3
"""inotify watching at scale: watch set-up time, then idle CPU and RSS with every watch on.

Builds three jobs' trees with 50,000 directories in all (kept between runs), starts one
JobWatcher per job on one asyncio loop (what the daemon does for watch = true jobs), and
prints:
  setup:  seconds to walk the trees and add the watches, per job and in all
  idle:   CPU seconds (user + system) and RSS over --idle seconds with all watches active
  event:  a change deep in a tree still reaches its job (time to the trigger, quiet
          period subtracted), and stopping removes every watch
Targets: setup < 5 s for 50,000 directories; idle CPU < 1 % of one core; RSS growth for
the watches < 60 MB.

It needs fs.inotify.max_user_watches above the directory count (plus what other processes
of this user hold). When it is lower and we are root, it raises it with sysctl and says so;
otherwise it stops and says how.

    python bench/bench_watch.py [--dir /var/tmp/odbackupd-bench-watch] [--dirs 50000] [--idle 60]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from odbackupd.service.watcher import InotifyHub, JobWatcher, inotify_limits  # noqa: E402

JOBS = 3
QUIET = 0.1


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def make_trees(top: Path, total: int) -> list[Path]:
    """JOBS trees of two levels (a fan-out of ~130), ``total`` directories in all."""
    roots = [top / f"job{j}" for j in range(JOBS)]
    stamp = top / f".complete-v2-{total}"
    if stamp.exists():
        return roots
    t0 = time.monotonic()
    for j, root in enumerate(roots):
        per_job = total // JOBS + (1 if j < total % JOBS else 0)
        fan = int(per_job ** 0.5)
        made = 1
        root.mkdir(parents=True, exist_ok=True)
        a = 0
        while made < per_job:
            d = root / f"d{a:04d}"
            d.mkdir(exist_ok=True)
            made += 1
            for b in range(min(fan, per_job - made)):
                (d / f"e{b:04d}").mkdir(exist_ok=True)
                made += 1
            (d / "file.txt").write_text("x\n")
            a += 1
    stamp.write_text("")
    print(f"built {total} directories under {top} in {time.monotonic() - t0:.1f}s")
    return roots


def ensure_watch_limit(needed: int) -> None:
    have = inotify_limits()["max_user_watches"] or 0
    if have >= needed:
        print(f"fs.inotify.max_user_watches = {have} (enough for {needed})")
        return
    want = max(needed, 524288)
    if os.geteuid() != 0:
        sys.exit(f"fs.inotify.max_user_watches = {have} is below the {needed} watches this "
                 f"benchmark needs: run `sudo sysctl fs.inotify.max_user_watches={want}`")
    subprocess.run(["sysctl", "-q", f"fs.inotify.max_user_watches={want}"], check=True)
    print(f"fs.inotify.max_user_watches was {have}, below the {needed} needed: raised it to "
          f"{want} with sysctl (not persistent)")


async def run(roots: list[Path], idle: float) -> None:
    loop = asyncio.get_running_loop()
    fired: asyncio.Future = loop.create_future()

    def on_trigger(job: str) -> None:
        if not fired.done():
            fired.set_result((job, loop.time()))

    rss0 = rss_mb()
    watchers = [JobWatcher(loop, f"job{j}", [root], quiet_period=QUIET, max_delay=10,
                           on_trigger=on_trigger) for j, root in enumerate(roots)]
    t0 = time.monotonic()
    for w in watchers:
        r = w.start()
        print(f"setup  {r.job}: {r.watches} watches in {r.seconds:.2f}s")
    setup = time.monotonic() - t0
    hub = InotifyHub.for_loop(loop)
    rss1 = rss_mb()
    print(f"setup  total: {hub.watch_count} watches in {setup:.2f}s "
          f"({hub.watch_count / setup:,.0f}/s); RSS {rss0:.1f} -> {rss1:.1f} MB "
          f"(+{rss1 - rss0:.1f} MB, {(rss1 - rss0) * 1024 * 1024 / hub.watch_count:.0f} B/watch)")

    c0, w0 = cpu_s(), time.monotonic()
    peak = rss1
    end = w0 + idle
    while (now := time.monotonic()) < end:  # idle: the loop only waits on the inotify fd
        await asyncio.sleep(min(5.0, end - now))
        peak = max(peak, rss_mb())
    cpu, wall = cpu_s() - c0, time.monotonic() - w0
    print(f"idle   {wall:.0f}s: CPU {cpu:.3f}s ({100 * cpu / wall:.3f} % of one core); "
          f"RSS {rss_mb():.1f} MB (peak {peak:.1f} MB)")

    deep = roots[-1] / "d0001" / "e0001" / "changed.txt"
    t1 = loop.time()
    deep.write_text("a change deep in the last tree\n")
    job, at = await asyncio.wait_for(fired, 30)
    print(f"event  {job}: triggered {1000 * (at - t1 - QUIET):.1f} ms after the quiet period")
    deep.unlink()

    t2 = time.monotonic()
    for w in watchers:
        w.stop()
    print(f"stop   all watches removed in {time.monotonic() - t2:.2f}s; hub closed: {hub.closed}")


def trees_from_args(doc: str) -> tuple[argparse.Namespace, list[Path]]:
    """The options both watch benchmarks take; the trees built and the watch limit raised."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=Path("/var/tmp/odbackupd-bench-watch"))
    ap.add_argument("--dirs", type=int, default=50_000)
    ap.add_argument("--idle", type=float, default=60.0)
    args = ap.parse_args()
    roots = make_trees(args.dir, args.dirs)
    ensure_watch_limit(args.dirs + 1000)
    return args, roots


def main() -> None:
    args, roots = trees_from_args(__doc__)
    print(f"limits: {inotify_limits()}")
    asyncio.run(run(roots, args.idle))


if __name__ == "__main__":
    main()
