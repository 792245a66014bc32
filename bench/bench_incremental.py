#!/usr/bin/env python3
"""Incremental snapshots against restic, measured in the same run on the same tree.

Builds a tree of ``--files`` files (default 100,000, ~``--size-gb`` GB in all: many small
text-like and binary files, a few large ones), then for odbackupd (``odbackupd --once``,
local destination, unencrypted) and restic (Debian's package, local repository) measures
time, bytes stored and peak RSS of:
  (a) the first (full) backup,
  (b) a second run with nothing changed,
  (c) a run after rewriting 1 % of the files (spread over the tree, sizes kept).
Targets (issue 14): (b) under 5 s and under 0.25 x (a)'s time; (c) stores at most 1.2 x the
zstd-3 compressed size of the changed files plus the index; peak RSS under 100 MB in all
three. The machine may be shared: restic's figures from the same run are the yardstick.

    python bench/bench_incremental.py [--dir /var/tmp/odbackupd-bench-inc] [--files 100000]
                                      [--size-gb 2] [--no-restic]

restic: ``apt-get install restic`` (the bench skips it with --no-restic).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import zstandard

MiB = 1 << 20
ROOT = Path(__file__).resolve().parents[1]


def make_tree(src: Path, files: int, total: int) -> None:
    """``files`` files in directories of 200, ~``total`` bytes: 10 large files hold a fifth,
    the rest is small files, half text-like (compressible), half random."""
    stamp = src / ".complete"
    if stamp.exists() and stamp.read_text() == f"{files} {total}":
        return
    shutil.rmtree(src, ignore_errors=True)
    rnd = random.Random(14)
    words = [rnd.randbytes(rnd.randint(2, 8)).hex().encode() for _ in range(3000)]
    text = b" ".join(rnd.choice(words) for _ in range(400_000))  # ~2.4 MB of word salad
    big_each = total // 5 // 10
    (src / "big").mkdir(parents=True)
    for i in range(10):
        (src / "big" / f"big-{i}.bin").write_bytes(os.urandom(big_each))
    small = files - 10
    mean = max(1, (total - 10 * big_each) // small)
    for i in range(small):
        d = src / "tree" / f"d{i // 200:04d}"
        if i % 200 == 0:
            d.mkdir(parents=True)
        size = rnd.randint(mean // 4, mean * 7 // 4)
        if i % 2:
            off = rnd.randrange(0, len(text) - size - 1)
            data = text[off : off + size]
        else:
            data = os.urandom(size)
        (d / f"f{i:06d}.dat").write_bytes(data)
    stamp.write_text(f"{files} {total}")


def change_one_percent(src: Path, files: int) -> tuple[int, int]:
    """Rewrite every 100th small file (same size, new content): (count, zstd-3 size)."""
    cctx = zstandard.ZstdCompressor(level=3)
    n = compressed = 0
    rnd = random.Random(time.time_ns())
    for i in range(0, files - 10, 100):
        p = src / "tree" / f"d{i // 200:04d}" / f"f{i:06d}.dat"
        size = p.stat().st_size
        data = rnd.randbytes(size) if i % 2 == 0 else bytes(reversed(p.read_bytes()))
        p.write_bytes(data)
        compressed += len(cctx.compress(data))
        n += 1
    return n, compressed


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, int, float]:
    """Wall seconds, the child's peak RSS (bytes), its CPU seconds (user + system: on a
    shared machine the wall time also counts the time others had the CPUs)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                            cwd=ROOT)
    err = proc.stderr.read()  # type: ignore[union-attr]
    _, status, ru = os.wait4(proc.pid, 0)
    dt = time.monotonic() - t0
    if status != 0:
        sys.exit(f"{cmd[0]} failed ({status}): {err.decode(errors='replace')[-2000:]}")
    return dt, ru.ru_maxrss * 1024, ru.ru_utime + ru.ru_stime


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=Path("/var/tmp/odbackupd-bench-inc"))
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--size-gb", type=float, default=2.0)
    ap.add_argument("--no-restic", action="store_true")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    work = args.dir
    src = work / "src"
    t0 = time.monotonic()
    make_tree(src, args.files, int(args.size_gb * 1e9))
    print(f"tree: {args.files} files, {du(src) / 1e9:.2f} GB "
          f"({time.monotonic() - t0:.0f} s to make or reuse)")
    # files written in the second before a run are "racy" and read again by the next one:
    # let the tree settle as a real one has, so (b) measures an incremental, not that rule
    time.sleep(1.1)

    for d in ("dest", "state", "spool", "restic"):
        shutil.rmtree(work / d, ignore_errors=True)
    cfg = work / "odbackupd.toml"
    cfg.write_text(textwrap.dedent(f"""\
        [daemon]
        state_dir = "{work / 'state'}"
        spool_dir = "{work / 'spool'}"
        [destination.bench]
        type = "local"
        path = "{work / 'dest'}"
        [job.bench]
        sources = ["{src}"]
        destinations = ["bench"]
        """))
    (work / "dest").mkdir()
    odb = [sys.executable, "-m", "odbackupd.main", "--config", str(cfg), "--once", "bench"]
    use_restic = not args.no_restic and shutil.which("restic")
    renv = dict(os.environ, RESTIC_PASSWORD="bench", RESTIC_REPOSITORY=str(work / "restic"),
                RESTIC_CACHE_DIR=str(work / "restic-cache"))
    if use_restic:
        subprocess.run(["restic", "init", "--quiet"], env=renv, check=True, capture_output=True)
    rows: dict[str, dict[str, tuple[float, int, int]]] = {"odbackupd": {}, "restic": {}}
    changed = (0, 0)

    def manifests() -> list[dict]:
        return sorted((json.loads(p.read_text()) for p in (work / "dest").rglob("manifest.json")),
                      key=lambda m: m["started"])

    for step in ("a", "b", "c"):
        if step == "c":
            changed = change_one_percent(src, args.files)
        dt, rss, cpu = timed(odb)
        m = manifests()[-1]
        stored = m["counts"]["stored_bytes"]  # volumes and the index
        rows["odbackupd"][step] = (dt, m["counts"]["stored_bytes"], rss)
        idx = (m.get("index") or {}).get("size", 0)
        print(f"({step}) odbackupd {m['kind']:<11} {dt:7.2f} s (CPU {cpu:6.2f} s)  "
              f"stored {stored / MiB:9.2f} MiB (index {idx / MiB:.2f} MiB)  "
              f"peak RSS {rss / 1e6:6.1f} MB  changes {m.get('changes')}")
        if use_restic:
            before = du(work / "restic")
            dt, rss, cpu = timed(["restic", "backup", "--quiet", str(src)], env=renv)
            stored = du(work / "restic") - before
            rows["restic"][step] = (dt, stored, rss)
            print(f"({step}) restic               {dt:7.2f} s (CPU {cpu:6.2f} s)  "
                  f"stored {stored / MiB:9.2f} MiB                    "
                  f"peak RSS {rss / 1e6:6.1f} MB")

    o = rows["odbackupd"]
    idx = (manifests()[-1].get("index") or {}).get("size", 0)
    n, zsize = changed
    print()
    print(f"changed files: {n}, zstd-3 size {zsize / MiB:.2f} MiB; (c)'s index {idx / MiB:.2f} MiB")
    checks = [
        ("(b) under 5 s", o["b"][0] < 5.0, f"{o['b'][0]:.2f} s"),
        ("(b) under 0.25 x (a)", o["b"][0] < 0.25 * o["a"][0], f"{o['b'][0] / o['a'][0]:.3f} x"),
        ("(c) stores <= 1.2 x changed (compressed) + index", o["c"][1] <= 1.2 * zsize + idx,
         f"{o['c'][1] / MiB:.2f} MiB vs {(1.2 * zsize + idx) / MiB:.2f} MiB"),
        ("peak RSS < 100 MB in (a), (b), (c)", all(v[2] < 100e6 for v in o.values()),
         ", ".join(f"{v[2] / 1e6:.0f}" for v in o.values()) + " MB"),
    ]
    if use_restic:
        r = rows["restic"]
        for s in "abc":
            print(f"({s}) odbackupd / restic: time {o[s][0] / r[s][0]:.2f} x, stored "
                  f"{o[s][1] / max(1, r[s][1]):.2f} x")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    for what, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {what}: {detail}")


if __name__ == "__main__":
    main()
