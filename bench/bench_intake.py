#!/usr/bin/env python3
"""odbackupd-intake upload throughput and memory, against ``cp`` on the same disk in the same run.

Makes one incompressible file of ``--size-gb`` (the issue asks 10 GB), then times, each
round:
  baseline:  cp FILE DIR/copy && sync DIR/copy       (the disk's limit: read + write + fsync)
  direct:    curl -T FILE http://127.0.0.1:PORT/upload/NAME  (the socket-activated service)
  nginx:     curl -T FILE https://127.0.0.1:PORT/upload/NAME (the packaged sample site in a
             test-local nginx: TLS, proxy_request_buffering off)
and prints MB/s, the ratio to the baseline of the same round, and the service's peak RSS
(VmHWM of its process: the high-water mark over the whole upload, read from /proc). The
target: RSS flat and under 100 MB whatever the size. Landed files are deleted after
each upload. The machine may be shared: compare ratios, not absolute speeds.

    .venv/bin/python bench/bench_intake.py [--dir /var/tmp/odbackupd-bench-intake]
        [--size-gb 10] [--runs 1]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.intake.conftest import TOKENS, Intake  # noqa: E402 - the tests' real launcher
from tests.intake.nginxsite import Nginx  # noqa: E402

MiB = 1 << 20


def make_file(path: Path, size: int) -> None:
    if path.exists() and path.stat().st_size == size:
        return
    block = os.urandom(64 * MiB)  # incompressible; repeated, so making 10 GB is quick
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n


def drop_caches_of(path: Path) -> None:
    """Evict *path* from the page cache, so every run reads it from the disk alike."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed(cmd: list[str]) -> float:
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads): steadier than MB/s when the
    machine is shared."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("/var/tmp/odbackupd-bench-intake"))
    ap.add_argument("--size-gb", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the test file for the next run")
    args = ap.parse_args()
    size = int(args.size_gb * 1e9)
    work = args.dir
    work.mkdir(parents=True, exist_ok=True)
    src = work / "upload.bin"
    print(f"making {size / 1e9:.1f} GB test file {src} ...", flush=True)
    make_file(src, size)
    svc_dir = work / "svc"
    shutil.rmtree(svc_dir, ignore_errors=True)
    svc_dir.mkdir()
    svc = Intake(svc_dir, max_file_size=f"{size + MiB}")
    svc.start()
    ngx = Nginx(svc_dir, svc.port)
    ca = svc_dir / "ca.pem"
    ca.write_bytes(ngx.ca_pem)
    auth = ["-H", f"Authorization: Bearer {TOKENS['alice']}"]
    curl = ["curl", "-sS", "--fail", "-o", "/dev/null", *auth, "-T", str(src)]
    rows: dict[str, list[float]] = {"cp": [], "direct": [], "nginx": []}
    cpu: dict[str, list[float]] = {"direct": [], "nginx": []}
    try:
        for r in range(args.runs):
            drop_caches_of(src)
            copy = work / "copy.bin"
            rows["cp"].append(timed(["sh", "-c", f'cp "{src}" "{copy}" && sync "{copy}"']))
            copy.unlink()
            for name, url in (("direct", f"{svc.url}/upload/direct.bin"),
                              ("nginx", f"https://127.0.0.1:{ngx.port}/upload/nginx.bin")):
                drop_caches_of(src)
                extra = ["--cacert", str(ca)] if name == "nginx" else []
                before = cpu_seconds(svc.proc.pid)
                rows[name].append(timed([*curl, *extra, url]))
                cpu[name].append(cpu_seconds(svc.proc.pid) - before)
                for p in svc.drop["alice"].iterdir():
                    p.unlink()
            mbs = {k: size / v[-1] / 1e6 for k, v in rows.items()}
            print(f"round {r + 1}: cp {mbs['cp']:.0f} MB/s, direct {mbs['direct']:.0f} MB/s "
                  f"({mbs['direct'] / mbs['cp']:.2f} x cp), through nginx {mbs['nginx']:.0f} MB/s "
                  f"({mbs['nginx'] / mbs['cp']:.2f} x cp)", flush=True)
        rss = peak_rss(svc.proc.pid)
    finally:
        ngx.stop()
        svc.close()
        shutil.rmtree(svc_dir, ignore_errors=True)
        if not args.keep:
            src.unlink(missing_ok=True)
    med = {k: size / statistics.median(v) / 1e6 for k, v in rows.items()}
    print(f"\nfile {size / 1e9:.1f} GB, median of {args.runs} round(s):")
    print(f"  cp + sync (baseline)   {med['cp']:8.0f} MB/s")
    print(f"  intake direct          {med['direct']:8.0f} MB/s   "
          f"{med['direct'] / med['cp']:.2f} x cp")
    print(f"  intake through nginx   {med['nginx']:8.0f} MB/s   "
          f"{med['nginx'] / med['cp']:.2f} x cp")
    for k in ("direct", "nginx"):
        print(f"  service CPU, {k:6s}    {statistics.median(cpu[k]) / (size / 1e9):8.2f} s per GB")
    print(f"  service peak RSS       {rss / 1e6:8.1f} MB     (target < 100 MB, flat in the size)")
    print(f"  (load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
