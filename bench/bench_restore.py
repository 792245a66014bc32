#!/usr/bin/env python3
"""Restore speed of the race-free extractor against ``zstd -d | tar -x`` in the same run.

The extractor opens every directory from its parent's descriptor and sets every attribute
on an open descriptor (extract.py); this measures what that costs where it costs most, many
small files, and on a few large ones. One unencrypted snapshot of a generated tree is
made, then each round restores it:
  baseline:   cat vol.* | zstd -d | tar -xpf - -C OUT        (GNU tar, as root: owners too)
  odbackupd:  restore_snapshot(...) into OUT
and prints files/s, MB/s and the ratio to the baseline of the same round, then the medians
over ``--runs`` rounds (the machine may be shared: compare ratios, not absolute speeds).

    python bench/bench_restore.py [--dir /var/tmp/odbackupd-bench-restore] [--files 20000]
        [--runs 3]
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MiB = 1 << 20


def make_tree(src: Path, files: int) -> int:
    rnd = random.Random(7)
    total = 0
    per_dir = 200
    for i in range(files):
        d = src / "small" / f"d{i // per_dir:04d}"
        if i % per_dir == 0:
            d.mkdir(parents=True)
        data = rnd.randbytes(rnd.randint(100, 8000))
        (d / f"f{i:05d}.txt").write_bytes(data)
        total += len(data)
    (src / "big").mkdir()
    for i in range(4):
        data = os.urandom(64 * MiB)
        (src / "big" / f"blob{i}.bin").write_bytes(data)
        total += len(data)
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="odbackupd-bench-restore-", dir="/var/tmp"))
    base.mkdir(parents=True, exist_ok=True)
    from odbackupd.config import load_config
    from odbackupd.destinations.local import LocalDestination
    from odbackupd.runner import run_job
    from odbackupd.snapshot.catalog import find_snapshot
    from odbackupd.snapshot.restore import restore_snapshot
    from odbackupd.state import StateStore

    try:
        src, dest = base / "src", base / "dest"
        shutil.rmtree(base / "src", ignore_errors=True)
        nbytes = make_tree(src, args.files)
        dest.mkdir(exist_ok=True)
        cfg_path = base / "odbackupd.toml"
        cfg_path.write_text(f'[daemon]\nstate_dir = "{base}/state"\nspool_dir = "{base}/spool"\n\n'
                            f'[destination.d]\ntype = "local"\npath = "{dest}"\n\n'
                            f'[job.b]\nsources = ["{src}"]\ndestinations = ["d"]\n'
                            'volume_size = "64MiB"\n')
        cfg = load_config(cfg_path)
        state = StateStore(base / "state" / "state.db")
        run = run_job(cfg, "b", state, trigger="bench")
        state.close()
        assert run.result.ok, run.result.message
        d = LocalDestination("d", dest)
        m = find_snapshot(d, "b", "latest", cfg.daemon.hostname)
        snapdir = dest / m.location / m.snapshot
        n = m.files + m.dirs + m.others
        print(f"snapshot: {m.files} files, {nbytes / MiB:.0f} MiB, {len(m.volumes)} volumes")
        ratios, ours_s, base_s = [], [], []
        for r in range(args.runs):
            out = base / "out-tar"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            t0 = time.monotonic()
            subprocess.run(["bash", "-o", "pipefail", "-c",
                            f"cat vol.* | zstd -dq | tar -xpf - -C {out}"],
                           cwd=snapdir, check=True)
            tb = time.monotonic() - t0
            shutil.rmtree(out, ignore_errors=True)
            out = base / "out-odbackupd"
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.monotonic()
            stats = restore_snapshot(d, m, out, special_files=True)
            to = time.monotonic() - t0
            assert stats.complete, stats
            shutil.rmtree(out, ignore_errors=True)
            ratios.append(tb / to)
            ours_s.append(to)
            base_s.append(tb)
            print(f"round {r + 1}: tar -x {tb:.2f}s "
                  f"({n / tb:.0f} entries/s, {nbytes / MiB / tb:.0f} MB/s); "
                  f"odbackupd {to:.2f}s ({n / to:.0f} entries/s, {nbytes / MiB / to:.0f} MB/s); "
                  f"speed ratio {tb / to:.2f}")
        print(f"median: tar -x {statistics.median(base_s):.2f}s, "
              f"odbackupd {statistics.median(ours_s):.2f}s, "
              f"ratio {statistics.median(ratios):.2f} (1.0 = as fast as GNU tar)")
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
