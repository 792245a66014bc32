#!/usr/bin/env python3
"""Peak memory and throughput of a backup to OneDrive (the Graph emulator over loopback
TLS) against the same backup to a local destination, in the same run.

Builds the mixed tree of bench_snapshot.py (``--size-gb``; 20,000 small files, log-like
text, 30 % random), logs in to the emulator with the real device-code flow, then runs
``--pairs`` rounds of ``odbackupd --once`` to a local directory and to OneDrive (upload
sessions, ``--chunk`` fragments, ``--parallel`` workers), each a full snapshot. Prints per
run the seconds, MB/s of source data and the peak RSS of the whole odbackupd process
(``wait4`` rusage), then the medians and the ratio OneDrive/local. Target: peak RSS
< 100 MB on every destination.

The emulator runs in this process and shares the machine's cores with odbackupd, and it
writes every byte it receives to disk: the speed ratio is a floor for what a real network
link that is not the bottleneck would give.

    python bench/bench_onedrive.py [--dir /var/tmp/odbackupd-bench-od] [--size-gb 1.1]
        [--pairs 3] [--age] [--only onedrive]

The issue's memory target is for a 10 GB backup: ``--size-gb 10 --pairs 1 --only onedrive``
(about 10 GB for the tree plus what the emulator stores, ~45 % of it; the bench says how
much it needs and stops first if the file system of --dir has less free). The tree is
kept in --dir for the next run; ``--clean`` removes --dir at the end.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_snapshot import RSS_TARGET, make_tree, peak_rss, spawn_measured  # noqa: E402 - the same tree


def run_once(config: Path, job: str) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of ``odbackupd --once JOB``."""
    t0 = time.perf_counter()
    proc = spawn_measured([sys.executable, "-m", "odbackupd.main", "--config", str(config),
                           "--once", job, "--log-level", "warning"],
                          cwd=ROOT, stdout=subprocess.DEVNULL)
    err = proc.stderr.read() if proc.stderr else b""
    proc.wait()
    dt = time.perf_counter() - t0
    rss, err = peak_rss(err)  # not this process's: it holds the emulator (see bench_snapshot.SPAWN)
    if proc.returncode != 0:
        sys.exit(f"odbackupd --once {job} failed:\n{err.decode(errors='replace')}")
    return dt, rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("/var/tmp/odbackupd-bench-od"))
    ap.add_argument("--size-gb", type=float, default=1.1)
    ap.add_argument("--pairs", type=int, default=3, help="rounds of local + OneDrive runs")
    ap.add_argument("--parallel", type=int, default=4, help="max_parallel_uploads")
    ap.add_argument("--chunk", default="10MiB", help="chunk_size")
    ap.add_argument("--age", action="store_true", help="encrypted jobs")
    ap.add_argument("--only", choices=("local", "onedrive"),
                    help="run only this destination's job (a 10 GB run: --only onedrive)")
    ap.add_argument("--clean", action="store_true",
                    help="remove --dir (the tree, the emulator's files) at the end")
    args = ap.parse_args()
    labels = [x for x in ("local", "onedrive") if args.only in (None, x)]

    from odbackupd.config import load_config
    from tests.graphemu import GraphEmulator
    from tests.onedrive.conftest import account_toml, device_login

    work = args.dir
    work.mkdir(parents=True, exist_ok=True)
    src = work / "src"
    need = need_bytes(src, int(args.size_gb * 1e9), len(labels), args.pairs)
    free = shutil.disk_usage(work).free
    if need > free:
        sys.exit(f"{work}: {free / 1e9:.1f} GB free, this run needs about {need / 1e9:.1f} GB "
                 "(the tree, what each destination stores, the spool)")
    print(f"building a {args.size_gb} GB tree in {src} ...", flush=True)
    data_bytes = make_tree(src, int(args.size_gb * 1e9))
    for d in ("state", "spool", "local", "emu"):
        shutil.rmtree(work / d, ignore_errors=True)
    (work / "local").mkdir()
    rec = ""
    if args.age:
        key = work / "key.txt"
        if not key.exists():
            subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
        recipient = subprocess.run(["age-keygen", "-y", str(key)], check=True, capture_output=True,
                                   text=True).stdout.strip()
        rec = f'recipients = ["{recipient}"]\n'
    job = textwrap.dedent("""
        sources = ["{src}"]
        destinations = ["{dest}"]
        volume_size = "64MiB"
        full_every = 1
        keep_last = 1
        """)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"{args.parallel} upload workers, "
          f"{args.chunk} fragments{', age-encrypted' if args.age else ''}", flush=True)
    with GraphEmulator(work / "emu", mode="personal", device_code_interval=0, strict=False) as emu:
        config = work / "odbackupd.toml"
        config.write_text(textwrap.dedent(f"""\
            [daemon]
            state_dir = "{work / 'state'}"
            spool_dir = "{work / 'spool'}"
            max_parallel_uploads = {args.parallel}
            """) + account_toml(emu) + textwrap.dedent(f"""
            [destination.disk]
            type = "local"
            path = "{work / 'local'}"

            [destination.od]
            type = "onedrive"
            account = "a"
            folder = "Backups/bench"
            chunk_size = "{args.chunk}"
            """) + "\n[job.tolocal]" + job.format(src=src, dest="disk") + rec
            + "\n[job.toonedrive]" + job.format(src=src, dest="od") + rec)
        device_login(emu, load_config(config))
        times: dict[str, list[float]] = {label: [] for label in labels}
        rss: dict[str, list[int]] = {label: [] for label in labels}
        jobs = {"local": "tolocal", "onedrive": "toonedrive"}
        for n in range(1, args.pairs + 1):
            for label, name in ((label, jobs[label]) for label in labels):
                t, r = run_once(config, name)
                times[label].append(t)
                rss[label].append(r)
                print(f"pair {n} {label:8s}: {t:6.2f} s {data_bytes / t / 1e6:6.1f} MB/s  "
                      f"peak RSS {r / 1e6:5.1f} MB", flush=True)
        uploaded = emu.counters["bytes_uploaded"]
        violations = len(emu.violations)

    mb = data_bytes / 1e6
    print(f"source data {mb:.1f} MB per run "
          f"({uploaded / 1e6:.1f} MB uploaded to the emulator in all); "
          f"load average now {os.getloadavg()[0]:.2f}")
    for label in labels:
        m = max(rss[label])
        print(f"  {label:8s}: median {mb / statistics.median(times[label]):6.1f} MB/s, "
              f"peak RSS median {statistics.median(rss[label]) / 1e6:5.1f} MB, "
              f"max {m / 1e6:5.1f} MB "
              f"(target < 100: {'met' if m < RSS_TARGET else 'NOT met'})")
    if len(labels) == 2:
        print("  ratio OneDrive/local speed (medians): "
              f"{statistics.median(times['local']) / statistics.median(times['onedrive']):.2f}")
    print(f"  emulator rule violations: {violations}")
    if args.clean:
        shutil.rmtree(work, ignore_errors=True)


def need_bytes(src: Path, total: int, destinations: int, pairs: int) -> int:
    """Disk a run needs beyond what is there: the tree unless it is built already, and per
    destination about half the source (the tree compresses to ~45 %; twice from the second
    round on, until the older snapshot is pruned) plus a spool of volumes."""
    marker = src / ".complete"
    built = marker.exists() and marker.read_text().split()[1:] == [str(total)]
    stored = total // 2 * min(pairs, 2)
    return (0 if built else total) + destinations * (stored + (5 * 64 << 20))


if __name__ == "__main__":
    main()
