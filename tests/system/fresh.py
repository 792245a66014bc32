"""The README's quick start, both commands, on a fresh Debian 12 (a booted container).

    sudo .venv/bin/python -m tests.system.fresh [--tests] [--keep]

Boots the same debootstrapped bookworm as the system test (minbase: no python3, no
sudo, no git), copies in the committed tree (``git archive HEAD``: what a clean clone
has) with ``../shared`` beside it, as CI has it, and runs command 1,
``scripts/quickstart.sh``, as root. With ``--tests`` it then runs command 2,
``.venv/bin/python -m pytest -q``, inside the container too, without tests/system (a
container in a container is not what that test is for).

The only things taken from this machine are its apt mirror and its CA certificates
(with the environment variables that point pip and requests at them), because this
machine reaches the package registries through a TLS-inspecting proxy: a fresh machine
on this network would be set up the same way. Not run by the suite (it downloads the
whole tool set and the Python dependencies: minutes); its results go in the notes.
"""
from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from .nspawn import Container, base_tarball

REPO = Path(__file__).resolve().parents[2]
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
CA_ENV = "PIP_CERT={ca} REQUESTS_CA_BUNDLE={ca} SSL_CERT_FILE={ca}"


def _committed_tree() -> bytes:
    return subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=REPO, check=True,
                          capture_output=True).stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tests", action="store_true",
                    help="also run command 2 (the test suite) inside")
    ap.add_argument("--keep", action="store_true", help="leave the container running")
    args = ap.parse_args(argv)
    ct = Container("odbfresh")
    t0 = time.monotonic()
    rc = 1
    try:
        ct.create(base_tarball())
        ct.boot()
        print(f"booted a fresh Debian 12 in {time.monotonic() - t0:.0f}s")
        dest = ct.path("/root/odbackupd")
        dest.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(_committed_tree())) as tf:
            tf.extractall(dest, filter="tar")
        # CI puts ../shared (the public test vectors) beside the clone: so does this
        shared = REPO.parent / "shared"
        if shared.is_dir():
            subprocess.run(["cp", "-a", "--dereference", str(shared),
                            str(ct.path("/root/shared"))], check=True)
        ca = "/usr/local/share/ca-certificates/this-network.crt"
        ct.path(ca).write_bytes(HOST_CA.read_bytes())
        ct.run("update-ca-certificates >/dev/null 2>&1"
               " || cat /usr/local/share/ca-certificates/this-network.crt"
               " >> /etc/ssl/certs/ca-certificates.crt")
        env = CA_ENV.format(ca="/etc/ssl/certs/ca-certificates.crt")
        t1 = time.monotonic()
        p = ct.run(f"cd /root/odbackupd && {env} bash scripts/quickstart.sh", check=False,
                   timeout=1800)
        took = time.monotonic() - t1
        print(p.stdout[-3000:], p.stderr[-3000:], sep="\n")
        ok = p.returncode == 0 and "quickstart: backup, verify and restore OK" in p.stdout
        print(f"command 1 (sudo scripts/quickstart.sh): {'OK' if ok else 'FAILED'}, "
              f"exit {p.returncode}, {took:.0f}s")
        rc = 0 if ok else 1
        if ok and args.tests:
            t2 = time.monotonic()
            p = ct.run(f"cd /root/odbackupd && {env} .venv/bin/python -m pytest -q "
                       "-p no:cacheprovider --ignore=tests/system/test_system.py",
                       check=False, timeout=3600)
            print(p.stdout[-4000:], p.stderr[-2000:], sep="\n")
            print(f"command 2 (pytest, without tests/system): exit {p.returncode}, "
                  f"{time.monotonic() - t2:.0f}s")
            rc = rc or p.returncode
    finally:
        if args.keep:
            print(f"container left running: nsenter -t {ct.pid} -m -u -i -p -r -w bash")
        else:
            ct.destroy()
    print(f"total {time.monotonic() - t0:.0f}s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
