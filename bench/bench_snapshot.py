#!/usr/bin/env python3
"""Snapshot throughput and memory against ``tar -cf - SRC | zstd -T0 -3 > FILE`` in the same run.

The targets of issue 10, measured the way the issue measured them: whole-process wall
time, output written to the same disk as the baseline's, pairs run interleaved.

Builds a mixed tree of ``--size-gb`` (20,000 small files, log-like text, 30 % random
data, a few large files; the issue's tree is 1.1 GB), warms the page cache, then runs
``--pairs`` rounds of, in this order:
  baseline:   tar -cf - SRC | zstd -T0 -3 > WORK/baseline.tar.zst
  odbackupd:  odbackupd --once JOB to a local destination under WORK, unencrypted
  baseline again
  odbackupd:  the same, age-encrypted
Each odbackupd run is compared with the baseline run just before it (the machine may be
shared: only ratios compare). Prints per run the seconds, MB/s, ratio, the CPU seconds
of both (baseline CPU / odbackupd CPU is the speed ratio a machine saturated by the run
alone would show: the figure that a loaded machine changes least), peak RSS of the
whole odbackupd process (``wait4`` rusage, see SPAWN) and the peak bytes in its spool; then the
medians. Targets: ratio >= 0.9 unencrypted, >= 0.8 encrypted; peak RSS < 100 MB.

    python bench/bench_snapshot.py [--dir /var/tmp/odbackupd-bench] [--size-gb 1.1] [--pairs 5]
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

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20
TARGETS = {"unencrypted": 0.9, "age": 0.8}
RSS_TARGET = 100e6


def make_tree(src: Path, total: int) -> int:
    """20,000 small files (~100 MB), then of the rest ~30 % random, ~60 % log-like text
    and two big files (one random, one text)."""
    marker = src / ".complete"
    if marker.exists() and marker.read_text().split()[1:] == [str(total)]:
        return int(marker.read_text().split()[0])
    shutil.rmtree(src, ignore_errors=True)
    rnd = random.Random(42)
    words = [rnd.randbytes(rnd.randint(2, 9)).hex() for _ in range(4000)]
    line_pool = [" ".join(rnd.choice(words) for _ in range(12)).encode() + b"\n"
                 for _ in range(20000)]
    text_block = b"".join(line_pool)  # ~1.8 MB of log-like text
    written = 0
    for d in range(100):
        p = src / "small" / f"d{d:03d}"
        p.mkdir(parents=True)
        for f in range(200):
            size = rnd.randint(100, 9000)
            start = rnd.randrange(len(text_block) - size)
            (p / f"f{f:03d}.txt").write_bytes(text_block[start : start + size])
            written += size
    rest = max(0, total - written)
    big = int(rest * 0.05)
    (src / "media").mkdir()
    n, goal = 0, written + rest * 0.30 - big
    while written < goal:
        size = min(32 * MiB, int(goal - written) + 1)
        (src / "media" / f"blob-{n:04d}.bin").write_bytes(os.urandom(size))
        written += size
        n += 1
    (src / "logs").mkdir()
    n, goal = 0, total - 2 * big
    while written < goal:
        data = bytearray(text_block)
        data[:16] = f"{n:016d}".encode()
        reps = max(1, min(8, int((goal - written) // len(data)) + 1))
        (src / "logs" / f"app-{n:04d}.log").write_bytes(bytes(data) * reps)
        written += len(data) * reps
        n += 1
    for i in range(2):
        with open(src / f"big-{i}.img", "wb") as f:
            left = big
            while left > 0:
                chunk = (os.urandom(min(16 * MiB, left)) if i == 0
                         else text_block[: min(len(text_block), left)])
                f.write(chunk)
                left -= len(chunk)
        written += big
    marker.write_text(f"{written} {total}")
    return written


# The peak RSS of a process, as ``wait4`` reports it, includes the memory of the process it
# was forked from, up to its exec (Linux keeps the larger hiwater mark across exec). A bench
# that holds the Graph emulator has hundreds of MB: so the measured command is forked from
# this small interpreter instead, which reports the command's own peak on its last line.
SPAWN = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, ru = os.wait4(pid, 0)
sys.stderr.write("\\npeak-rss-kb %d\\n" % ru.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def spawn_measured(cmd: list[str], **kw) -> subprocess.Popen:  # noqa: ANN003
    """Start ``cmd`` so that :func:`peak_rss` can tell its own peak RSS from its stderr."""
    return subprocess.Popen([sys.executable, "-S", "-c", SPAWN, *cmd], stderr=subprocess.PIPE, **kw)


def peak_rss(stderr: bytes) -> tuple[int, bytes]:
    """(peak RSS in bytes, the command's own stderr) from a :func:`spawn_measured` run."""
    head, _, last = stderr.rstrip().rpartition(b"\n")
    return int(last.split()[1]) * 1024, head


def timed(cmd: list[str] | str, shell: bool = False, env: dict | None = None,
          watch: Path | None = None) -> tuple[float, int, int, float]:
    """Wall seconds, peak RSS (bytes) of the command's process (0 for a shell pipeline),
    peak bytes under ``watch``, CPU seconds (user + system, children included)."""
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
            stop.wait(0.1)

    t = threading.Thread(target=sample, daemon=True) if watch else None
    if t:
        t.start()
    t0 = time.perf_counter()
    if shell:
        proc = subprocess.Popen(cmd, shell=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
    else:
        proc = spawn_measured(list(cmd), env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    err = proc.stderr.read()  # type: ignore[union-attr]
    _, status, ru = os.wait4(proc.pid, 0)  # CPU time: its own and its children's (tar, zstd)
    proc.returncode = os.waitstatus_to_exitcode(status)
    dt = time.perf_counter() - t0
    stop.set()
    if t:
        t.join()
    rss = 0
    if not shell:
        rss, err = peak_rss(err)
    if proc.returncode != 0:
        sys.exit(f"command failed: {cmd}\n{err.decode(errors='replace')}")
    return dt, rss, peak_spool, ru.ru_utime + ru.ru_stime


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("/var/tmp/odbackupd-bench"))
    ap.add_argument("--size-gb", type=float, default=1.1, help="size of the generated tree")
    ap.add_argument("--volume-size", default="64MiB")
    ap.add_argument("--pairs", type=int, default=5,
                    help="baseline + odbackupd pairs of each variant")
    ap.add_argument("--only", choices=sorted(TARGETS), help="run one variant only")
    args = ap.parse_args()
    work = args.dir
    src = work / "src"
    total = make_tree(src, int(args.size_gb * 1e9))
    files = sum(len(fn) for _, _, fn in os.walk(src))
    print(f"tree: {total / 1e9:.2f} GB, {files} files in {src}; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    key = work / "key.txt"
    if not key.exists():
        subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    recipient = subprocess.run(["age-keygen", "-y", str(key)], check=True, capture_output=True,
                               text=True).stdout.strip()
    sys.path.insert(0, str(ROOT))
    from odbackupd.config import parse_size

    vs = parse_size(args.volume_size)
    variants = [(label, rec)
                for label, rec in (("unencrypted", ""), ("age", f'recipients = ["{recipient}"]\n'))
                if args.only in (None, label)]
    # warm the page cache so every run reads from memory
    subprocess.run(f"tar -cf - {src} > /dev/null", shell=True, check=True,
                   stderr=subprocess.DEVNULL)
    out = work / "baseline.tar.zst"
    base_cmd = f"tar -cf - {src} 2>/dev/null | zstd -T0 -3 -q -f -o {out}"
    ratios: dict[str, list[float]] = {label: [] for label, _ in variants}
    rss: dict[str, list[int]] = {label: [] for label, _ in variants}
    spools: dict[str, list[int]] = {label: [] for label, _ in variants}
    cpu_ratios: dict[str, list[float]] = {label: [] for label, _ in variants}
    base_rates: list[float] = []
    for run in range(1, args.pairs + 1):
        for label, rec in variants:
            out.unlink(missing_ok=True)
            base_t, _, _, base_cpu = timed(base_cmd, shell=True)
            base = total / base_t / 1e6
            base_rates.append(base)
            base_size = out.stat().st_size
            out.unlink()
            dest = work / "dest"
            for d in (dest, work / "state", work / "spool"):
                shutil.rmtree(d, ignore_errors=True)
            dest.mkdir()
            cfg = work / "bench.toml"
            cfg.write_text(
                f'[daemon]\nstate_dir = "{work}/state"\nspool_dir = "{work}/spool"\n'
                f'[destination.d]\ntype = "local"\npath = "{dest}"\n'
                f'[job.bench]\nsources = ["{src}"]\ndestinations = ["d"]\n'
                f'volume_size = "{args.volume_size}"\n'
                f"compression_level = 3\n" + rec
            )
            cmd = [sys.executable, "-m", "odbackupd.main", "--config", str(cfg), "--once", "bench",
                   "--log-level", "warning"]
            t, peak_rss, spool, cpu = timed(cmd, env=dict(os.environ), watch=work / "spool")
            stored = sum(p.stat().st_size for p in dest.rglob("vol.*"))
            rate = total / t / 1e6
            ratios[label].append(rate / base)
            rss[label].append(peak_rss)
            spools[label].append(spool)
            cpu_ratios[label].append(base_cpu / cpu)
            print(
                f"pair {run} {label:11s}: baseline {base_t:6.2f} s {base:6.1f} MB/s "
                f"({base_size / 1e6:.0f} MB) | "
                f"odbackupd {t:6.2f} s {rate:6.1f} MB/s ({stored / 1e6:.0f} MB) | "
                f"ratio {rate / base:4.2f} | "
                f"CPU {base_cpu:5.2f} s vs {cpu:5.2f} s | "
                f"peak RSS {peak_rss / 1e6:5.1f} MB | peak spool {spool / vs:4.2f} x volume_size",
                flush=True)
    print(f"median of {args.pairs} pairs each (baseline median {median(base_rates):.1f} MB/s; "
          f"load average now {os.getloadavg()[0]:.2f}):")
    for label, _rec in variants:
        r, m = median(ratios[label]), max(rss[label])
        print(
            f"  {label:11s}: ratio {r:4.2f} (target >= {TARGETS[label]}: "
            f"{'met' if r >= TARGETS[label] else 'NOT met'})"
            f"  CPU ratio {median(cpu_ratios[label]):4.2f}"
            f"  peak RSS median {median(rss[label]) / 1e6:5.1f} MB, max {m / 1e6:5.1f} MB "
            f"(target < 100: {'met' if m < RSS_TARGET else 'NOT met'})"
            f"  peak spool {median(spools[label]) / vs:4.2f} x volume_size"
        )


if __name__ == "__main__":
    main()
