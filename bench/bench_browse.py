#!/usr/bin/env python3
"""odctl ls and a one-file restore --path against a full streamed restore of the same 2 GB
snapshot on OneDrive (the Graph emulator over loopback TLS), measured in the same run.

Builds a tree of ``--size-gb`` GB (20,000 small files in 100 directories, ~a quarter of the
bytes, and large incompressible files), backs it up with the default volume size (64 MiB)
and with ``--small-volume`` (16 MiB), then for each times, with the emulator's download
counters:
  full     odctl restore JOB latest --to DIR            (every volume, streamed)
  ls       odctl ls JOB PATH -l                           (the index only)
  one file odctl restore JOB latest --to DIR --path P     (the index and one volume)
and prints seconds, bytes downloaded and their ratios to the full restore. Target (issue
11): ls and the one-file restore at most 2 % of the full restore's time and bytes. One
volume of the default 64 MiB is more than 2 % of a 2 GB snapshot's bytes, so the byte
ratio depends on the volume size: both are printed.

odctl runs as an installed package does: from byte-compiled modules (Debian compiles them
at install; this bench runs compileall and unsets PYTHONDONTWRITEBYTECODE for odctl). ls and
the one-file restore are the median of ``--repeat`` runs. The emulator runs in this process
and shares the machine's cores: on a loaded machine every figure is slower, the ratios less so.

    python bench/bench_browse.py [--dir /var/tmp/odbackupd-bench-browse] [--size-gb 2]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
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
    rnd = random.Random(11)
    words = [rnd.randbytes(rnd.randint(2, 8)).hex() for _ in range(3000)]
    text = " ".join(rnd.choice(words) for _ in range(20000)).encode()
    written = 0
    small = total // 4 // 20000
    for i in range(20000):
        d = src / "srv" / f"site-{i // 200:03d}"
        if i % 200 == 0:
            d.mkdir(parents=True)
        body = text[:small] if i % 2 else os.urandom(small)
        (d / f"page-{i:05d}.html").write_bytes(body)
        written += len(body)
    (src / "etc/nginx/sites-available").mkdir(parents=True)
    (src / "etc/nginx/sites-available/shop").write_text(
        "server { listen 443 ssl; server_name shop; }\n"
    )
    (src / "blobs").mkdir()
    n = 0
    while written < total:
        size = min(96 * MiB, total - written)
        (src / "blobs" / f"blob-{n:03d}.bin").write_bytes(os.urandom(size))
        written += size
        n += 1
    marker.write_text(f"{written} {total}")
    return written


def timed(emu, env: dict, *args: str) -> tuple[float, int, int]:  # noqa: ANN001
    """Seconds, bytes downloaded and download requests of one odctl command."""
    b0, d0 = emu.counters["bytes_downloaded"], emu.counters["downloads"]
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "odctl.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"odctl {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    return dt, emu.counters["bytes_downloaded"] - b0, emu.counters["downloads"] - d0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("/var/tmp/odbackupd-bench-browse"))
    ap.add_argument("--size-gb", type=float, default=2.0)
    ap.add_argument("--small-volume", default="16MiB")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from odbackupd.config import load_config
    from tests.graphemu import GraphEmulator
    from tests.onedrive.conftest import account_toml, device_login

    work = args.dir
    work.mkdir(parents=True, exist_ok=True)
    src = work / "src"
    print(f"building a {args.size_gb} GB tree in {src} ...", flush=True)
    data_bytes = make_tree(src, int(args.size_gb * 1e9))
    for d in ("state", "spool", "emu", "out"):
        shutil.rmtree(work / d, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "odbackupd"), str(ROOT / "odctl")],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    one = str(src / "etc/nginx/sites-available/shop").lstrip("/")
    listed = str(src / "srv" / "site-050").lstrip("/")

    with GraphEmulator(work / "emu", mode="personal", device_code_interval=0, strict=False) as emu:
        config = work / "odbackupd.toml"
        jobs = {"vol64": "", "vol_small": f'volume_size = "{args.small_volume}"\n'}
        config.write_text(
            textwrap.dedent(f"""\
            [daemon]
            state_dir = "{work / "state"}"
            spool_dir = "{work / "spool"}"
            max_parallel_uploads = 2
            """)
            + account_toml(emu)
            + textwrap.dedent("""
            [destination.od]
            type = "onedrive"
            account = "a"
            folder = "Backups/bench"
            chunk_size = "10MiB"
            """)
            + "".join(
                f'\n[job.{j}]\nsources = ["{src}"]\ndestinations = ["od"]\n{extra}'
                for j, extra in jobs.items()
            )
        )
        device_login(emu, load_config(config))
        cfg = ["--config", str(config)]
        for job in jobs:
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "odbackupd.main", *cfg, "--once", job],
                cwd=ROOT,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            print(f"{job}: backed up in {time.perf_counter() - t0:.1f} s", flush=True)

        start, _, _ = timed(emu, env, "--version")
        print(
            f"\nsource data {data_bytes / 1e9:.2f} GB; "
            f"odctl --version (start-up alone): {start:.2f} s"
        )
        print(
            f"{'job':10} {'case':9} {'seconds':>8} {'downloaded':>12} {'requests':>8} "
            f"{'time %':>7} {'bytes %':>8}"
        )
        for job in jobs:
            out = work / "out"
            full = timed(
                emu, env, *cfg, "restore", job, "latest", "--to", str(out / f"{job}-full"), "-q"
            )
            shutil.rmtree(out / f"{job}-full")
            cases = {"full": full}
            for name, argv in (
                ("ls", ["ls", job, listed, "-l"]),
                ("one file", ["restore", job, "latest", "--path", one, "-q"]),
            ):
                runs = []
                for i in range(args.repeat):
                    extra = ["--to", str(out / f"{job}-{i}")] if name == "one file" else []
                    runs.append(timed(emu, env, *cfg, *argv, *extra))
                cases[name] = (statistics.median(r[0] for r in runs), runs[0][1], runs[0][2])
            for name, (s, b, n) in cases.items():
                print(
                    f"{job:10} {name:9} {s:8.2f} {b / MiB:10.1f}Mi {n:8d} "
                    f"{100 * s / full[0]:6.1f}% "
                    f"{100 * b / full[1]:7.2f}%"
                )
        print(f"emulator rule violations: {len(emu.violations)}")
    shutil.rmtree(work / "out", ignore_errors=True)


if __name__ == "__main__":
    main()
