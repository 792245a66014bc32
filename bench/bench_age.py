#!/usr/bin/env python3
"""Throughput of odbackupd.crypto.age against the age CLI on the same data, same run.

    .venv/bin/python bench/bench_age.py [--size-mib 512] [--repeat 3] [--dir /tmp]

Both sides read a file from the page cache and write to /dev/null; MB/s is 10^6 bytes
of plaintext per second, best of ``--repeat`` runs. Afterwards the age CLI decrypts our
ciphertext and the plaintext hash is compared, so the numbers are for correct output.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cryptography

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from odbackupd.crypto import age  # noqa: E402

READ_SIZE = 1 << 20


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def our_encrypt(plain: Path, out: Path, recipient: age.X25519Recipient) -> None:
    buf = bytearray(READ_SIZE)
    view = memoryview(buf)
    with open(plain, "rb", buffering=0) as src, open(out, "wb") as sink:
        w = age.AgeWriter(sink, [recipient])
        while n := src.readinto(buf):
            w.write(view[:n])
        w.close()


def our_decrypt(ct: Path, identity: age.X25519Identity, digest=None) -> None:
    buf = bytearray(READ_SIZE)
    view = memoryview(buf)
    with open(ct, "rb", buffering=0) as src:
        reader = age.AgeReader(src, [identity])
        while n := reader.readinto(buf):
            if digest is not None:
                digest.update(view[:n])


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(READ_SIZE):
            h.update(block)
    return h.hexdigest()


def sha256_of_command(args: list[str]) -> str:
    h = hashlib.sha256()
    with subprocess.Popen(args, stdout=subprocess.PIPE) as proc:
        while block := proc.stdout.read(READ_SIZE):
            h.update(block)
    if proc.returncode:
        raise SystemExit(f"{args[0]} failed with status {proc.returncode}")
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to put the temporary files")
    opts = ap.parse_args()
    age_cli = shutil.which("age")
    if not age_cli:
        raise SystemExit("age CLI not found (apt install age)")
    version = subprocess.run([age_cli, "--version"], capture_output=True, text=True).stdout
    size = opts.size_mib << 20
    mb = size / 1e6

    with tempfile.TemporaryDirectory(dir=opts.dir, prefix="bench-age-") as tmp:
        d = Path(tmp)
        plain, ours_ct, cli_ct = d / "plain", d / "ours.age", d / "cli.age"
        with open(plain, "wb") as f:
            for _ in range(opts.size_mib // 16):
                f.write(os.urandom(16 << 20))
            f.write(os.urandom(size - f.tell()))
        identity = age.generate_identity()
        key = d / "key.txt"
        key.write_text(f"{identity}\n")
        recipient = str(identity.recipient)
        want = sha256_file(plain)  # also warms the page cache

        def cli_encrypt() -> None:
            subprocess.run([age_cli, "-r", recipient, "-o", str(cli_ct), str(plain)], check=True)

        def cli_decrypt() -> None:
            subprocess.run(
                [age_cli, "-d", "-i", str(key), "-o", os.devnull, str(cli_ct)], check=True
            )

        t_cli_enc = best_of(opts.repeat, cli_encrypt)
        t_our_enc = best_of(opts.repeat, lambda: our_encrypt(plain, ours_ct, identity.recipient))
        t_cli_dec = best_of(opts.repeat, cli_decrypt)
        t_our_dec = best_of(opts.repeat, lambda: our_decrypt(cli_ct, identity))

        got_cli = sha256_of_command([age_cli, "-d", "-i", str(key), str(ours_ct)])
        ours_hash = hashlib.sha256()
        our_decrypt(cli_ct, identity, ours_hash)
        if got_cli != want or ours_hash.hexdigest() != want:
            raise SystemExit("MISMATCH: decrypted data differs from the plaintext")

    print(f"age v1, {opts.size_mib} MiB of random data, best of {opts.repeat}")
    print(
        f"python {sys.version.split()[0]}, cryptography {cryptography.__version__}, "
        f"age CLI {version.strip()}, {os.cpu_count()} CPUs"
    )
    print(f"{'':8} {'odbackupd':>12} {'age CLI':>12} {'ratio':>7}")
    for what, ours, cli in (("encrypt", t_our_enc, t_cli_enc), ("decrypt", t_our_dec, t_cli_dec)):
        print(f"{what:8} {mb / ours:8.0f} MB/s {mb / cli:7.0f} MB/s {cli / ours:6.2f}x")
    print("(ratio > 1: odbackupd is faster; outputs cross-checked with the age CLI)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
