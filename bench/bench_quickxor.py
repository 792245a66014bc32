"""Throughput of odbackupd.hashes.QuickXorHash next to hashlib.sha256, and whether it
leaves the GIL to the other threads, in one run.

    .venv/bin/python bench/bench_quickxor.py [--total-mib 512] [--update-mib 8] [--repeat 3]
        [--thread-update-kib 128] [--min-mbps N] [--min-python-share F]

Single thread: both hashes get the same 8 MiB updates (four distinct random buffers,
cycled so the data does not sit in cache) totalling 512 MiB.  MB/s is 10**6 bytes per
second, best of --repeat passes; the ratio is quickXorHash / sha256.

Two threads: a Python thread builds tar headers (``tarfile.TarInfo.tobuf``, the pure-Python
work of the thread that generates a snapshot's tar stream) while a second thread hashes
in --thread-update-kib updates (the size the volume writer gets).  Printed: the Python
thread's speed next to it alone, as a share (1.00 = not slowed at all; on 2 CPUs a hash
that holds the GIL pushes it towards 0.5 or below), and the hashing thread's MB/s meanwhile.
sha256 (hashlib releases the GIL) and a big-integer XOR fold of the same bytes
(``int.from_bytes``, which holds the GIL, as the pure-Python quickXorHash did) are the
references measured in the same run.

The contract (HACKING.md) asks for >= 200 MB/s; --min-mbps N makes a lower single-thread
quickXorHash figure exit with status 1, and --min-python-share F a lower two-thread share.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import tarfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from odbackupd.hashes import QuickXorHash  # noqa: E402

HEADERS = 60_000  # tar headers per Python-thread pass (about 0.5 s alone)


def _time_pass(factory, buffers, updates: int) -> float:
    h = factory()
    start = time.perf_counter()
    for i in range(updates):
        h.update(buffers[i % len(buffers)])
    h.digest()
    return time.perf_counter() - start


class _IntFold:
    """The GIL-holding reference: XOR the input in as one big integer per update."""

    def __init__(self) -> None:
        self.acc = 0

    def update(self, b) -> None:
        self.acc ^= int.from_bytes(b, "little")


def _python_work() -> float:
    """Seconds to build HEADERS tar headers: pure Python, the GIL held throughout."""
    info = tarfile.TarInfo("srv/data/some/directory/file-name.bin")
    info.size, info.mtime, info.uname, info.gname = 123_456, 1_700_000_000, "root", "root"
    start = time.perf_counter()
    for _ in range(HEADERS):
        info.tobuf(tarfile.PAX_FORMAT)
    return time.perf_counter() - start


def _beside(factory, views) -> tuple[float, float]:
    """(Python thread's seconds, hash thread's MB/s) with the two running together."""
    done = threading.Event()
    hashed = [0, 0.0]

    def hash_loop() -> None:
        h = factory()
        n = 0
        start = time.perf_counter()
        while not done.is_set():
            for v in views:
                h.update(v)
            n += len(views)
        hashed[0], hashed[1] = n * len(views[0]), time.perf_counter() - start

    t = threading.Thread(target=hash_loop)
    t.start()
    time.sleep(0.05)  # let the hashing thread get going before the clock starts
    seconds = _python_work()
    done.set()
    t.join()
    return seconds, hashed[0] / hashed[1] / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-mib", type=int, default=512)
    parser.add_argument("--update-mib", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--thread-update-kib", type=int, default=128)
    parser.add_argument("--min-mbps", type=float, default=0.0)
    parser.add_argument("--min-python-share", type=float, default=0.0)
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

    # 32 MiB of distinct data in pipeline-sized pieces
    piece = args.thread_update_kib << 10
    views = [memoryview(b)[i : i + piece] for b in buffers for i in range(0, len(b), piece)]
    views = views[: max(1, (32 << 20) // piece)]
    alone = min(_python_work() for _ in range(args.repeat))
    print(
        f"two threads: {HEADERS} tar headers in a Python thread, alone {alone:.3f} s; "
        f"beside a thread hashing in {args.thread_update_kib} KiB updates (best of {args.repeat}):"
    )
    shares = {}
    for name, factory in (
        ("quickxorhash", QuickXorHash),
        ("sha256", hashlib.sha256),
        ("int-xor (GIL)", _IntFold),
    ):
        runs = [_beside(factory, views) for _ in range(args.repeat)]
        seconds, mbps = min(runs)
        shares[name] = alone / seconds
        print(
            f"{name:>13}: Python thread {seconds:.3f} s = {shares[name]:.2f} of its speed "
            f"alone; hashing meanwhile {mbps:8.1f} MB/s"
        )

    status = 0
    if results["quickxorhash"] < args.min_mbps:
        print(f"quickxorhash below --min-mbps {args.min_mbps}", file=sys.stderr)
        status = 1
    if shares["quickxorhash"] < args.min_python_share:
        print(f"Python thread's share below --min-python-share {args.min_python_share}",
              file=sys.stderr)
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
