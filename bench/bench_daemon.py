#!/usr/bin/env python3
"""The whole daemon at idle: start-up (watch set-up included), then CPU and RSS over a minute.

Runs the real ``odbackupd --config X --no-dbus`` as a subprocess with 3 jobs, each with
``watch = true`` on one of bench_watch.py's trees (50,000 directories in all) and a cron
schedule, under a NOTIFY_SOCKET bound here (as systemd would, with WatchdogSec=30s), and
prints:
  start:  seconds from exec to READY=1 (config, state database, 50,000 watches, timers)
  idle:   the daemon's CPU seconds (user + system, from /proc/PID/stat) and RSS over
          --idle seconds, and how many notify messages it sent meanwhile
  stop:   seconds from SIGTERM to exit
Targets: idle CPU < 1 % of one core; RSS flat during the idle minute.

    python bench/bench_daemon.py [--dir /var/tmp/odbackupd-bench-watch] [--dirs 50000] [--idle 60]
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_watch import trees_from_args  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def write_config(work: Path, roots: list[Path]) -> Path:
    dest = work / "dest"
    dest.mkdir(exist_ok=True)
    text = (f'[daemon]\nstate_dir = "{work / "state"}"\nspool_dir = "{work / "spool"}"\n\n'
            f'[destination.bench]\ntype = "local"\npath = "{dest}"\n')
    for i, root in enumerate(roots):
        text += (f'\n[job.job{i}]\nsources = ["{root}"]\ndestinations = ["bench"]\n'
                 f'schedule = "{i} 3 * * *"\nwatch = true\nquiet_period = "5min"\n')
    path = work / "odbackupd.toml"
    path.write_text(text)
    return path


def main() -> None:
    args, roots = trees_from_args(__doc__)

    with tempfile.TemporaryDirectory(prefix="odbackupd-bench-daemon-") as tmp:
        work = Path(tmp)
        config = write_config(work, roots)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(work / "notify"))
        env = {**os.environ, "NOTIFY_SOCKET": str(work / "notify"), "WATCHDOG_USEC": "30000000"}
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "odbackupd.main", "--config", str(config),
                                 "--no-dbus"],
                                env=env, cwd=HERE.parent, stderr=open(work / "stderr", "w"))  # noqa: SIM115
        try:
            sock.settimeout(120)
            while b"READY=1" not in sock.recv(65536):
                pass
            ready = time.monotonic() - t0
            rss_ready = proc_rss_mb(proc.pid)
            print(f"start  READY=1 after {ready:.2f}s (3 jobs, {args.dirs} watched directories); "
                  f"RSS {rss_ready:.1f} MB")

            c0, w0 = proc_cpu(proc.pid), time.monotonic()
            peak, messages = rss_ready, 0
            sock.settimeout(1.0)
            while time.monotonic() - w0 < args.idle:  # sample RSS each second; count notifies
                try:
                    sock.recv(65536)
                    messages += 1
                except TimeoutError:
                    pass
                peak = max(peak, proc_rss_mb(proc.pid))
            wall = time.monotonic() - w0
            cpu = proc_cpu(proc.pid) - c0
            rss_end = proc_rss_mb(proc.pid)
            print(f"idle   {wall:.0f}s: CPU {cpu:.3f}s ({100 * cpu / wall:.3f} % of one core); "
                  f"RSS {rss_ready:.1f} -> {rss_end:.1f} MB (peak {peak:.1f}); "
                  f"{messages} notify messages")

            t1 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(60)
            print(f"stop   exit {rc} {time.monotonic() - t1:.2f}s after SIGTERM")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            sock.close()
        log = (work / "stderr").read_text()
        for line in log.splitlines():
            if "watching" in line:
                print(f"daemon {line}")


if __name__ == "__main__":
    main()
