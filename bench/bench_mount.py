#!/usr/bin/env python3
"""Reading files through ``odctl mount`` against ``odctl restore --path`` of the same files,
same run, same snapshot (a local destination, so the disk and the CPU are measured, not a
network).

One unencrypted snapshot of a few large files and a directory of small ones is made, then
each round:
  baseline:   odctl restore t --path <file> --to OUT      (one large file; then the small dir)
  mount:      cat <file> > /dev/null on a fresh odctl mount (cold: its volumes fetched into
              the mount's cache), then again (the kernel's page cache), then the small dir
              read with ``ls -lR`` and ``tar -cf - | wc -c``
Both restore timings include odctl's start (Python, the listing); the mount's start is
printed on its own.
and prints MB/s and the ratio to the baseline of the same round, then the medians over
``--runs`` rounds (the machine may be shared: compare ratios, not absolute speeds).

    python bench/bench_mount.py [--dir /var/tmp/odbackupd-bench-mount] [--mib 256] [--runs 3]

Needs FUSE (/dev/fuse) and pyfuse3, as odctl mount does.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MiB = 1 << 20


def timed(*cmd: str, shell: bool = False) -> float:
    """Seconds ``cmd`` took (output thrown away)."""
    t = time.perf_counter()
    subprocess.run(cmd[0] if shell else list(cmd), shell=shell, stdout=subprocess.DEVNULL,
                   check=True, cwd=ROOT)
    return time.perf_counter() - t


def odctl_cmd(cfg: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "odctl.cli", "--config", str(cfg), *args]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--mib", type=int, default=256, help="size of the large file read")
    ap.add_argument("--small", type=int, default=3000, help="small files in the directory read")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="odbackupd-bench-mount-", dir="/var/tmp"))
    src = base / "src"
    if not src.exists():
        (src / "small").mkdir(parents=True)
        half = os.urandom(args.mib * MiB // 2)
        (src / "large.bin").write_bytes(half + bytes(len(half)))  # half incompressible
        for i in range(args.small):
            (src / "small" / f"f{i:05d}").write_bytes(os.urandom(2000))
    cfg = base / "odbackupd.toml"
    cfg.write_text(textwrap.dedent(f"""\
        [daemon]
        state_dir = "{base / 'state'}"
        spool_dir = "{base / 'spool'}"

        [destination.disk]
        type = "local"
        path = "{base / 'dest'}"

        [job.t]
        sources = ["{src}"]
        destinations = ["disk"]
        volume_size = "64MiB"
        full_every = 1
        """))
    (base / "dest").mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "odbackupd.main", "--config", str(cfg), "--once", "t"],
                   check=True, cwd=ROOT, capture_output=True)
    rel = str(src).lstrip("/")
    large = (src / "large.bin").stat().st_size
    rows = []
    for run in range(args.runs):
        out = base / "restored"
        shutil.rmtree(out, ignore_errors=True)
        t_restore = timed(*odctl_cmd(cfg, "restore", "t", "--path", f"{rel}/large.bin",
                                     "--to", str(out)))
        t_restore_small = timed(*odctl_cmd(cfg, "restore", "t", "--path", f"{rel}/small", "--to",
                                           str(out / "s")))
        mnt = base / "mnt"
        mnt.mkdir(exist_ok=True)
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-m", "odctl.cli", "--config", str(cfg),
                              "mount", "t", str(mnt)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        try:
            p.stdout.readline()  # type: ignore[union-attr]  # "… mounted at …": ready
            t_mount = time.perf_counter() - t0
            f = mnt / "latest" / rel / "large.bin"
            t_cold = timed("cat", str(f))
            t_warm = timed("cat", str(f))
            small = mnt / "latest" / rel / "small"
            # through a pipe: GNU tar reads no file data when its archive is /dev/null
            t_small = timed(f"ls -lR {small} >/dev/null && tar -cf - -C {small} . | wc -c",
                            shell=True)
        finally:
            subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
            p.wait(timeout=60)
        row = {"restore MB/s": large / t_restore / 1e6, "mount cold MB/s": large / t_cold / 1e6,
               "mount warm MB/s": large / t_warm / 1e6, "cold/restore": t_restore / t_cold,
               "small: restore s": t_restore_small, "small: mount s": t_small,
               "small mount/restore": t_small / t_restore_small, "mount start s": t_mount}
        rows.append(row)
        print(f"run {run + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
    print("median: " + ", ".join(f"{k} {statistics.median(r[k] for r in rows):.2f}"
                                 for k in rows[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
