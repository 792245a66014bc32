#!/usr/bin/env python3
"""Backup throughput to OneDrive (the Graph emulator over loopback TLS) against the same run
to a local destination.

Builds a mixed tree (~40 % log-like text, ~60 % incompressible), logs in to the emulator
with the real device-code flow, then times ``odbackupd --once JOB`` for a job going to a
local directory and for the same job going to OneDrive (upload sessions, 10 MiB chunks,
``max_parallel_uploads`` workers), each in a fresh state. Prints MB/s of source data for
both, the ratio OneDrive/local and the peak RSS of each odbackupd process.

The emulator runs in this process and shares the machine's cores with odbackupd, and it
writes every byte it receives to disk: the ratio is a floor for what a real network link
that is not the bottleneck would give.

    python bench/bench_onedrive.py [--dir /var/tmp/odbackupd-bench-od] [--size-mb 300]
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MiB = 1 << 20


def make_tree(src: Path, total: int) -> int:
    marker = src / ".complete"
    if marker.exists() and int(marker.read_text().split()[1]) == total:
        return int(marker.read_text().split()[0])
    shutil.rmtree(src, ignore_errors=True)
    (src / "logs").mkdir(parents=True)
    (src / "media").mkdir()
    rnd = random.Random(7)
    words = [rnd.randbytes(rnd.randint(2, 8)).hex() for _ in range(3000)]
    text = "".join(" ".join(rnd.choice(words) for _ in range(12)) + "\n" for _ in range(20000)).encode()
    written, n = 0, 0
    while written < total * 0.4:
        (src / "logs" / f"app-{n:04d}.log").write_bytes(f"{n:08d}".encode() + text * 4)
        written += len(text) * 4 + 8
        n += 1
    n = 0
    while written < total:
        (src / "media" / f"blob-{n:04d}.bin").write_bytes(os.urandom(16 * MiB))
        written += 16 * MiB
        n += 1
    marker.write_text(f"{written} {total}")
    return written


def run_once(config: Path, job: str) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of ``odbackupd --once JOB``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "odbackupd.main", "--config", str(config), "--once", job],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(proc.pid, 0)
    dt = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"odbackupd --once {job} failed:\n{err}")
    return dt, ru.ru_maxrss * 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("/var/tmp/odbackupd-bench-od"))
    ap.add_argument("--size-mb", type=int, default=300)
    ap.add_argument("--parallel", type=int, default=4, help="max_parallel_uploads")
    ap.add_argument("--chunk", default="10MiB", help="chunk_size")
    args = ap.parse_args()

    from odbackupd.config import load_config
    from tests.graphemu import GraphEmulator
    from tests.onedrive.conftest import account_toml, device_login

    work = args.dir
    work.mkdir(parents=True, exist_ok=True)
    src = work / "src"
    print(f"building a {args.size_mb} MB tree in {src} ...", flush=True)
    data_bytes = make_tree(src, args.size_mb * 1000 * 1000)
    for d in ("state", "spool", "local", "emu"):
        shutil.rmtree(work / d, ignore_errors=True)
    (work / "local").mkdir()

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

            [job.tolocal]
            sources = ["{src}"]
            destinations = ["disk"]
            volume_size = "64MiB"

            [job.toonedrive]
            sources = ["{src}"]
            destinations = ["od"]
            volume_size = "64MiB"
            """))
        device_login(emu, load_config(config))

        local_s, local_rss = run_once(config, "tolocal")
        od_s, od_rss = run_once(config, "toonedrive")
        uploaded = emu.counters["bytes_uploaded"]
        violations = len(emu.violations)

    mb = data_bytes / 1e6
    print(f"source data:            {mb:8.1f} MB ({uploaded / 1e6:.1f} MB uploaded to the emulator)")
    print(f"local destination:      {mb / local_s:8.1f} MB/s  ({local_s:.1f} s, peak RSS {local_rss / MiB:.0f} MiB)")
    print(f"OneDrive (emulator):    {mb / od_s:8.1f} MB/s  ({od_s:.1f} s, peak RSS {od_rss / MiB:.0f} MiB)")
    print(f"ratio OneDrive/local:   {local_s / od_s:8.2f}")
    print(f"emulator rule violations: {violations}")


if __name__ == "__main__":
    main()
