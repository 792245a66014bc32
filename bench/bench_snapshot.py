#!/usr/bin/env python3
"""Snapshot throughput, memory and scratch disk against ``tar | zstd -T0 -3`` in the same run.

Builds a ~2 GB mixed tree (log-like text, incompressible data, many small files, a few
large ones), then times:
  baseline:   tar -cf - SRC | zstd -T0 -3 > /dev/null
  odbackupd:  odbackupd --once JOB to a local destination (unencrypted, then age-encrypted)
and prints MB/s, the ratio to the baseline of the same round, the peak RSS of the odbackupd
process and the peak bytes in its spool; then the medians over ``--runs`` rounds (the
machine may be shared: compare ratios, not absolute speeds). Targets: ratio >= 0.8
unencrypted, >= 0.7 encrypted; RSS < 150 MB; spool < 3 x volume_size.

    python bench/bench_snapshot.py [--dir /var/tmp/odbackupd-bench] [--size-gb 2] [--runs 3]
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

MiB = 1 << 20


def make_tree(src: Path, total: int) -> int:
    """~40 % text-like, ~40 % incompressible, ~10 % small files, ~10 % in two big files."""
    if (src / ".complete").exists():
        return int((src / ".complete").read_text())
    shutil.rmtree(src, ignore_errors=True)
    rnd = random.Random(42)
    written = 0
    words = [rnd.randbytes(rnd.randint(2, 9)).hex() for _ in range(4000)]
    line_pool = [" ".join(rnd.choice(words) for _ in range(12)).encode() + b"\n" for _ in range(20000)]
    text_block = b"".join(line_pool)  # ~1.8 MB of log-like text
    (src / "logs").mkdir(parents=True)
    n = 0
    while written < total * 0.4:
        data = bytearray(text_block)
        data[:16] = f"{n:016d}".encode()
        (src / "logs" / f"app-{n:04d}.log").write_bytes(bytes(data) * 8)
        written += len(data) * 8
        n += 1
    (src / "media").mkdir()
    n = 0
    while written < total * 0.8:
        (src / "media" / f"blob-{n:04d}.bin").write_bytes(os.urandom(32 * MiB))
        written += 32 * MiB
        n += 1
    for d in range(100):
        p = src / "small" / f"d{d:03d}"
        p.mkdir(parents=True)
        for f in range(200):
            size = rnd.randint(100, 9000)
            (p / f"f{f:03d}.txt").write_bytes(text_block[f * 50 : f * 50 + size])
            written += size
    big = int(total * 0.05)
    for i in range(2):
        with open(src / f"big-{i}.img", "wb") as f:
            left = big
            while left > 0:
                chunk = os.urandom(min(16 * MiB, left)) if i == 0 else text_block[: min(len(text_block), left)]
                f.write(chunk)
                left -= len(chunk)
        written += big
    (src / ".complete").write_text(str(written))
    return written


def timed(cmd: list[str] | str, shell: bool = False, env: dict | None = None,
          watch: Path | None = None) -> tuple[float, int, int]:
    """Wall seconds, peak RSS (bytes) of the child, peak bytes under ``watch``, in one run."""
    peak_spool = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_spool
        while not stop.is_set():
            total = 0
            for dp, _dn, fn in os.walk(watch):  # type: ignore[arg-type]
                for f in fn:
                    try:
                        total += os.lstat(os.path.join(dp, f)).st_blocks * 512
                    except OSError:
                        pass
            peak_spool = max(peak_spool, total)
            stop.wait(0.05)

    t = threading.Thread(target=sample, daemon=True) if watch else None
    if t:
        t.start()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, shell=shell, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read()  # type: ignore[union-attr]
    _, status, ru = os.wait4(proc.pid, 0)  # the child's own rusage: its peak RSS
    dt = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    stop.set()
    if t:
        t.join()
    if proc.returncode != 0:
        sys.exit(f"command failed: {cmd}\n{err.decode(errors='replace')}")
    return dt, ru.ru_maxrss * 1024, peak_spool


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", type=Path, default=Path("/var/tmp/odbackupd-bench"))
    ap.add_argument("--size-gb", type=float, default=2.0)
    ap.add_argument("--volume-size", default="64MiB")
    ap.add_argument("--runs", type=int, default=3, help="rounds of baseline + each odbackupd run")
    args = ap.parse_args()
    work = args.dir
    src = work / "src"
    total = make_tree(src, int(args.size_gb * 1e9))
    print(f"tree: {total / 1e9:.2f} GB in {src}; load average {os.getloadavg()[0]:.2f}")
    key = work / "key.txt"
    if not key.exists():
        subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    recipient = subprocess.run(["age-keygen", "-y", str(key)], check=True, capture_output=True,
                               text=True).stdout.strip()
    from odbackupd.config import parse_size

    vol = args.volume_size
    vs = parse_size(vol)
    variants = (("unencrypted", "", 0.8), ("age", f'recipients = ["{recipient}"]\n', 0.7))
    # warm the page cache so every run reads from memory
    subprocess.run(f"tar -cf - {src} > /dev/null", shell=True, check=True, stderr=subprocess.DEVNULL)
    ratios: dict[str, list[float]] = {label: [] for label, _, _ in variants}
    rss: dict[str, list[int]] = {label: [] for label, _, _ in variants}
    spools: dict[str, list[int]] = {label: [] for label, _, _ in variants}
    for run in range(1, args.runs + 1):
        # the baseline of the same round: the machine may be shared, only ratios compare
        base_t, _, _ = timed(f"tar -cf - {src} 2>/dev/null | zstd -T0 -3 -q > /dev/null", shell=True)
        base = total / base_t / 1e6
        print(f"round {run}: baseline tar | zstd -T0 -3: {base_t:6.2f} s  {base:7.1f} MB/s")
        for label, rec, _target in variants:
            dest = work / "dest"
            for d in (dest, work / "state", work / "spool"):
                shutil.rmtree(d, ignore_errors=True)
            dest.mkdir()
            cfg = work / "bench.toml"
            cfg.write_text(
                f'[daemon]\nstate_dir = "{work}/state"\nspool_dir = "{work}/spool"\n'
                f'[destination.d]\ntype = "local"\npath = "{dest}"\n'
                f'[job.bench]\nsources = ["{src}"]\ndestinations = ["d"]\nvolume_size = "{vol}"\n'
                f"compression_level = 3\n" + rec
            )
            cmd = [sys.executable, "-m", "odbackupd.main", "--config", str(cfg), "--once", "bench",
                   "--log-level", "warning"]
            t, peak_rss, spool = timed(cmd, env=dict(os.environ), watch=work / "spool")
            stored = sum(p.stat().st_size for p in dest.rglob("vol.*"))
            rate = total / t / 1e6
            ratios[label].append(rate / base)
            rss[label].append(peak_rss)
            spools[label].append(spool)
            print(
                f"  odbackupd {label:11s}: {t:6.2f} s  {rate:7.1f} MB/s  ratio {rate / base:4.2f}"
                f"  peak RSS {peak_rss / 1e6:6.1f} MB  peak spool {spool / vs:4.2f} x volume_size"
                f"  stored {stored / 1e6:.0f} MB"
            )
    print(f"median of {args.runs} rounds (load average now {os.getloadavg()[0]:.2f}):")
    for label, _rec, target in variants:
        print(
            f"  {label:11s}: ratio {median(ratios[label]):4.2f} (target >= {target})"
            f"  peak RSS {median(rss[label]) / 1e6:6.1f} MB (max {max(rss[label]) / 1e6:.1f}; target < 150)"
            f"  peak spool {median(spools[label]) / vs:4.2f} x volume_size (target < 3)"
        )


if __name__ == "__main__":
    main()
