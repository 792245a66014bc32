"""Throughput of odbackupd.hashes.QuickXorHash next to hashlib.sha256, in one run.

    .venv/bin/python bench/bench_quickxor.py [--total-mib 512] [--update-mib 8] [--repeat 3]

Both hashes get the same 8 MiB updates (four distinct random buffers, cycled so
the data does not sit in cache) totalling 512 MiB.  MB/s is 10**6 bytes per
second, best of --repeat passes; the ratio is quickXorHash / sha256.
The contract (HACKING.md) asks for >= 200 MB/s; --min-mbps N makes a lower
quickXorHash figure exit with status 1.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from odbackupd.hashes import QuickXorHash  # noqa: E402


def _time_pass(factory, buffers, updates: int) -> float:
    h = factory()
    start = time.perf_counter()
    for i in range(updates):
        h.update(buffers[i % len(buffers)])
    h.digest()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-mib", type=int, default=512)
    parser.add_argument("--update-mib", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--min-mbps", type=float, default=0.0)
    args = parser.parse_args(argv)

    update_bytes = args.update_mib << 20
    updates = args.total_mib // args.update_mib
    total = updates * update_bytes
    buffers = [os.urandom(update_bytes) for _ in range(min(4, updates))]

    results = {}
    for name, factory in (("quickxorhash", QuickXorHash), ("sha256", hashlib.sha256)):
        best = min(_time_pass(factory, buffers, updates) for _ in range(args.repeat))
        results[name] = total / best / 1e6

    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"{total >> 20} MiB in {args.update_mib} MiB updates, best of {args.repeat}"
    )
    for name, mbps in results.items():
        print(f"{name:>13}: {mbps:8.1f} MB/s")
    ratio = results["quickxorhash"] / results["sha256"]
    print(f"{'ratio':>13}: {ratio:8.2f} (quickxorhash / sha256)")
    if results["quickxorhash"] < args.min_mbps:
        print(f"quickxorhash below --min-mbps {args.min_mbps}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
