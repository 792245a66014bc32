"""A run killed after OneDrive accepted createUploadSession but before the session was
saved leaves a pending session nobody knows the URL of; the job must not wedge on 409
until it expires (minutes to a day)."""
from __future__ import annotations

import os
import subprocess
import sys

from odbackupd.snapshot.catalog import list_snapshots
from odbackupd.snapshot.restore import restore_snapshot, verify_snapshot

from .conftest import ROOT


def test_kill_between_create_session_and_saving_it(od, tmp_path):  # noqa: ANN001
    emu = od.emu
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(os.urandom(900_000))  # more than a chunk: an upload session
    od.write([src])
    od.login()
    r = subprocess.run([sys.executable, "-m", "tests.killpoint", "after-session", "--config",
                        str(od.config_path), "--once", "t"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == -9, r.stderr
    assert emu.counters["sessions_created"] == 1 and len(emu.sessions) == 1  # pending, URL lost

    r = od.once()
    out, err = r.communicate(timeout=120)
    assert r.returncode == 0, err
    dest = od.destination()
    (m,) = list_snapshots(dest, "t").complete
    assert verify_snapshot(dest, m, download=True).ok
    restore_snapshot(dest, m, tmp_path / "out")
    assert ((tmp_path / "out" / str(src).lstrip("/") / "f.bin").read_bytes()
            == (src / "f.bin").read_bytes())
    # nothing but the snapshot's own files is left in its folder
    folder = f"/{od.folder}/{m.location}/{m.snapshot}"
    assert sorted(emu.list_dir(folder)) == sorted(["manifest.json", "RESTORE.txt", m.index["name"]]
                                                  + [v["name"] for v in m.volumes])
    dest.close()
    emu.assert_no_violations()


def test_lost_answer_to_create_session(od, tmp_path):  # noqa: ANN001
    """The same wedge within one run: OneDrive made the session, its answer was lost."""
    emu = od.emu
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(os.urandom(900_000))
    od.write([src])
    od.login()
    emu.faults.add("lost_response", "graph.session.create", nth=1)
    r = od.once()
    _, err = r.communicate(timeout=120)
    assert r.returncode == 0, err
    assert emu.counters["sessions_created"] == 2
    dest = od.destination()
    (m,) = list_snapshots(dest, "t").complete
    assert verify_snapshot(dest, m).ok
    dest.close()
    emu.assert_no_violations()


def test_kill_after_the_manifest_on_onedrive(od, tmp_path):  # noqa: ANN001
    """Killed once the manifest is on OneDrive, before the state database heard of it: the
    next run makes a new snapshot instead of re-completing the old one."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("one\n")
    od.write([src])
    od.login()
    r = subprocess.run([sys.executable, "-m", "tests.killpoint", "after-manifest", "--config",
                        str(od.config_path), "--once", "t"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == -9, r.stderr
    (src / "f").write_text("two\n")
    p = od.once()
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    dest = od.destination()
    snaps = list_snapshots(dest, "t").complete
    assert len(snaps) == 2 and snaps[-1].snapshot in out
    restore_snapshot(dest, snaps[-1], tmp_path / "out")
    assert (tmp_path / "out" / str(src).lstrip("/") / "f").read_text() == "two\n"
    dest.close()
