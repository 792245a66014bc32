"""The tampering suite on a local destination: every case is refused by ``odctl restore``
and ``odctl verify --download`` with exit 4 and the cause named (tests/snapshot/tampering.py
has the cases; tests/onedrive/test_tampering.py runs them on the Graph emulator)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from odbackupd.destinations.local import LocalDestination
from odbackupd.snapshot.builder import JobSpec, SnapshotBuilder
from odbackupd.state import StateStore

from . import tampering
from .conftest import Setup

ROOT = Path(__file__).resolve().parents[2]


def odctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "odctl.cli", *args],
                          capture_output=True, text=True, cwd=ROOT)


def snapshot_dir(dest: Path, snapshot: str) -> Path:
    return next(dest.rglob(f"{snapshot}/manifest.json")).parent


def read_dir(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in d.iterdir() if p.name != "manifest.json"}


def write_dir(d: Path, files: dict[str, bytes], manifest: bytes) -> None:
    for p in d.iterdir():
        p.unlink()
    for n, b in files.items():
        (d / n).write_bytes(b)
    (d / "manifest.json").write_bytes(manifest)


class World:
    """An encrypted job with two snapshots, an unencrypted snapshot of the same tree, the
    host's exported signing key and the age identity."""

    def __init__(self, tmp: Path, age_key: tuple[Path, str]) -> None:
        self.key, recipient = age_key
        src = tmp / "src"
        src.mkdir()
        for i in range(6):
            (src / f"f{i}").write_bytes(os.urandom(900_000))
        self.setup = Setup(tmp)
        # two whole snapshots
        self.cfg = self.setup.write([src], recipients=[recipient], extra="full_every = 1\n")
        for n in range(2):
            (src / "changing").write_text(f"version {n}\n")
            r = subprocess.run([sys.executable, "-m", "odbackupd.main", "--config", str(self.cfg),
                                "--once", "t"],
                               capture_output=True, text=True, cwd=ROOT)
            assert r.returncode == 0, r.stderr
        snaps = json.loads(odctl("--config", str(self.cfg), "snapshots", "t", "--json").stdout)
        self.other, self.victim = [s["snapshot"] for s in snaps["destinations"]["usb"]["snapshots"]]
        self.dir = snapshot_dir(self.setup.dest, self.victim)
        self.files = read_dir(self.dir)
        self.manifest = (self.dir / "manifest.json").read_bytes()
        assert len(self.files) >= 4
        plain_dest = tmp / "plain"
        plain_dest.mkdir()
        state = StateStore(tmp / "plain-state.db")
        r = SnapshotBuilder(JobSpec("t", [src], volume_size=1 << 20),
                            [LocalDestination("p", plain_dest)],
                            state, tmp / "plain-spool", self.setup.config().daemon.hostname).run()
        state.close()
        assert r.ok
        plain_dir = snapshot_dir(plain_dest, r.manifest.snapshot)
        self.ctx = {"other": read_dir(snapshot_dir(self.setup.dest, self.other)),
                    "plain": read_dir(plain_dir)}
        self.plain_id, self.plain_manifest = (r.manifest.snapshot,
                                              (plain_dir / "manifest.json").read_bytes())
        self.pub = tmp / "web1.pub"
        r = odctl("--config", str(self.cfg), "key", "export")
        assert r.returncode == 0 and r.stdout.startswith("ssh-ed25519 "), r.stderr
        self.pub.write_text(r.stdout)
        self.out = tmp / "out"

    def reset(self) -> None:
        write_dir(self.dir, self.files, self.manifest)

    def restore(self, *extra: str) -> subprocess.CompletedProcess:
        return odctl("--config", str(self.cfg), "restore", "t", self.victim, "--to", str(self.out),
                     "-i", str(self.key), *extra)

    def verify(self, *extra: str) -> subprocess.CompletedProcess:
        return odctl("--config", str(self.cfg), "verify", "t", self.victim, "--download",
                     "-i", str(self.key), *extra)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:  # noqa: ANN001
    tmp = tmp_path_factory.mktemp("tamper")
    key = tmp / "key.txt"
    subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    recipient = subprocess.run(["age-keygen", "-y", str(key)],
                               check=True, capture_output=True, text=True).stdout.strip()
    return World(tmp, (key, recipient))


def test_untouched_snapshot_restores_and_verifies_with_the_trusted_key(world):
    world.reset()
    for r in (world.restore("--trusted-key", str(world.pub)),
              world.verify("--trusted-key", str(world.pub))):
        assert r.returncode == 0, r.stderr
    assert "signed by the trusted key" in r.stdout


@pytest.mark.parametrize("case", sorted(tampering.CASES | tampering.POLICY_CASES))
def test_tampered_volumes_are_refused(world, case):
    op, cause = (tampering.CASES | tampering.POLICY_CASES)[case]
    world.reset()
    files, doc = op(dict(world.files), json.loads(world.manifest), world.ctx)
    write_dir(world.dir, files, tampering.dumps(doc))
    for what, r in (("restore", world.restore()), ("verify --download", world.verify())):
        assert r.returncode == 4, f"{what} of {case}: exit {r.returncode}: {r.stdout} {r.stderr}"
        assert cause in r.stderr, f"{what} of {case}: {r.stderr}"


@pytest.mark.parametrize("case", sorted(tampering.SIGNATURE_CASES))
def test_manifest_not_signed_by_the_trusted_key_is_refused(world, case):
    op, cause = tampering.SIGNATURE_CASES[case]
    world.reset()
    write_dir(world.dir, world.files, tampering.dumps(op(json.loads(world.manifest))))
    for what, r in (("restore", world.restore("--trusted-key", str(world.pub))),
                    ("verify", world.verify("--trusted-key", str(world.pub)))):
        assert r.returncode == 4, f"{what} of {case}: exit {r.returncode}: {r.stderr}"
        assert cause in r.stderr, f"{what} of {case}: {r.stderr}"
    # the job's trusted_key does the same without the option
    cfg = world.cfg.read_text()
    try:
        world.cfg.write_text(cfg.replace("[job.t]\n", f'[job.t]\ntrusted_key = "{world.pub}"\n'))
        r = world.verify()
        assert r.returncode == 4 and cause in r.stderr, r.stderr
    finally:
        world.cfg.write_text(cfg)


def test_any_encryption_takes_an_unencrypted_snapshot_when_asked(world):
    world.reset()
    # an unencrypted snapshot of the job, made and stored as odbackupd makes it
    d = world.dir.parent / world.plain_id
    d.mkdir(exist_ok=True)
    write_dir(d, world.ctx["plain"], world.plain_manifest)
    try:
        r = odctl("--config", str(world.cfg), "verify", "t", world.plain_id, "--download")
        assert r.returncode == 4 and "is not encrypted, but job t encrypts" in r.stderr, r.stderr
        r = odctl("--config", str(world.cfg), "verify", "t", world.plain_id, "--download",
                  "--any-encryption")
        assert r.returncode == 0, r.stderr
    finally:
        for p in d.iterdir():
            p.unlink()
        d.rmdir()


def test_plain_volumes_under_age_are_caught_without_the_identity(world):
    world.reset()
    files, doc = tampering.plain_under_age(dict(world.files), json.loads(world.manifest), world.ctx)
    write_dir(world.dir, files, tampering.dumps(doc))
    # reading back needs no key to see that they are no age files
    for extra in ((), ("--download",)):
        r = odctl("--config", str(world.cfg), "verify", "t", world.victim, *extra)
        assert r.returncode == 4, r.stderr
        assert ("not an age file, though the manifest says "
                "the snapshot is encrypted") in r.stderr, r.stderr
