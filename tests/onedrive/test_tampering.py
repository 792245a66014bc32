"""The tampering suite on OneDrive (the Graph emulator): what someone holding a leaked token
does to a snapshot — volumes dropped, swapped, replayed, re-ordered, replaced by plain ones,
the manifest fixed up, re-signed or unsigned — is refused by restore and verify --download
with the cause named, and by odctl with exit 4."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from odbackupd.crypto.age import load_identities
from odbackupd.destinations.local import LocalDestination
from odbackupd.runner import run_job
from odbackupd.signing import load_public_key
from odbackupd.snapshot.builder import JobSpec, SnapshotBuilder
from odbackupd.snapshot.catalog import find_snapshot, list_snapshots
from odbackupd.snapshot.restore import IntegrityError, restore_snapshot, verify_snapshot
from odbackupd.snapshot.trust import Trust, UntrustedSnapshot, check_snapshot
from odbackupd.state import StateStore
from tests.snapshot import tampering
from tests.snapshot.test_tampering import read_dir, snapshot_dir

from .conftest import ROOT


def _folder(emu, top: str, name: str) -> str:  # noqa: ANN001
    """The drive path of the folder ``name`` below ``top`` (whatever the layout above it)."""
    for child in emu.list_dir(top):
        path = f"{top}/{child}"
        if child == name:
            return path
        item = emu.item(path)
        if item is not None and "folder" in item:
            found = _folder(emu, path, name)
            if found:
                return found
    return ""


def _write(emu, folder: str, files: dict[str, bytes], manifest: bytes) -> None:  # noqa: ANN001
    """What the attacker leaves in the snapshot's folder."""
    with emu.lock:
        for name in emu.list_dir(folder):
            emu.model.delete(emu._item(f"{folder}/{name}", None), permanent=True)
    for n, b in files.items():
        emu.put_file(f"{folder}/{n}", b)
    emu.put_file(f"{folder}/manifest.json", manifest)


def test_tampering_on_onedrive(od, tmp_path, age_key):  # noqa: ANN001
    key, recipient = age_key
    emu = od.emu
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        (src / f"f{i}").write_bytes(os.urandom(700_000))
    od.write([src], recipients=[recipient])
    od.login()
    cfg, state = od.config(), od.state()
    for n in range(2):
        (src / "changing").write_text(f"version {n}\n")
        assert run_job(cfg, "t", state).result.ok
    dest = od.destination(None)
    other, victim = list_snapshots(dest, "t").complete
    folder = _folder(emu, "/" + od.folder, victim.snapshot)
    files = {n: emu.read_file(f"{folder}/{n}") for n in emu.list_dir(folder)
             if n != "manifest.json"}
    manifest = emu.read_file(f"{folder}/manifest.json")
    other_folder = _folder(emu, "/" + od.folder, other.snapshot)
    plain_dest = tmp_path / "plain"
    plain_dest.mkdir()
    pstate = StateStore(tmp_path / "plain.db")
    r = SnapshotBuilder(JobSpec("t", [src], volume_size=1 << 20),
                        [LocalDestination("p", plain_dest)], pstate, tmp_path / "pspool",
                        "h").run()
    pstate.close()
    ctx = {"other": {n: emu.read_file(f"{other_folder}/{n}") for n in emu.list_dir(other_folder)},
           "plain": read_dir(snapshot_dir(plain_dest, r.manifest.snapshot))}
    ids = load_identities(key)
    pub = tmp_path / "host.pub"
    pub.write_text(subprocess.run([sys.executable, "-m", "odctl.cli", "--config",
                                   str(od.config_path), "key", "export"],
                                  capture_output=True, text=True, cwd=ROOT, check=True).stdout)
    trust = Trust(keys=(load_public_key(pub),), recipients=(recipient,), job="t")

    # untouched: authentic, restores and verifies
    m = find_snapshot(dest, "t", victim.snapshot)
    assert check_snapshot(m, trust) is True
    assert verify_snapshot(dest, m, download=True, identities=ids).ok

    missed = []
    for case, (op, cause) in sorted(tampering.CASES.items()):
        f2, doc = op(dict(files), json.loads(manifest), ctx)
        _write(emu, folder, f2, tampering.dumps(doc))
        m = find_snapshot(dest, "t", victim.snapshot)
        rep = verify_snapshot(dest, m, download=True, identities=ids)
        if rep.ok or not any(cause in p for p in rep.problems):
            missed.append(f"verify {case}: {rep.problems}")
        try:
            restore_snapshot(dest, m, tmp_path / f"out-{case}", identities=ids)
            missed.append(f"restore {case}: no error")
        except IntegrityError as e:
            if cause not in str(e):
                missed.append(f"restore {case}: {e}")
    for case, (op, cause) in sorted(tampering.POLICY_CASES.items()):
        f2, doc = op(dict(files), json.loads(manifest), ctx)
        _write(emu, folder, f2, tampering.dumps(doc))
        try:
            check_snapshot(find_snapshot(dest, "t", victim.snapshot),
                           Trust(recipients=(recipient,), job="t"))
            missed.append(f"{case}: accepted")
        except UntrustedSnapshot as e:
            if cause not in str(e):
                missed.append(f"{case}: {e}")
    for case, (op, cause) in sorted(tampering.SIGNATURE_CASES.items()):
        _write(emu, folder, files, tampering.dumps(op(json.loads(manifest))))
        try:
            check_snapshot(find_snapshot(dest, "t", victim.snapshot), trust)
            missed.append(f"{case}: accepted")
        except UntrustedSnapshot as e:
            if cause not in str(e):
                missed.append(f"{case}: {e}")
    assert missed == []

    # and odctl says so with exit 4 (here: volumes swapped, the manifest fixed up)
    f2, doc = tampering.swap(dict(files), json.loads(manifest), ctx)
    _write(emu, folder, f2, tampering.dumps(doc))
    r = subprocess.run([sys.executable, "-m", "odctl.cli", "--config", str(od.config_path),
                        "restore", "t", victim.snapshot, "--to", str(tmp_path / "odctl-out"),
                        "-i", str(key)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 4 and "stands at place 2" in r.stderr, r.stderr
    dest.close()
    state.close()
