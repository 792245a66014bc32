"""Servers sharing a destination and a job name never prune, clean up or resume each other's
snapshots; the layout before per-host folders stays listed, restorable and pruned; odctl
--host reads another server's snapshots (a dead server's backup on its replacement)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from odbackupd.config import load_config
from odbackupd.destinations.local import LocalDestination
from odbackupd.runner import run_job
from odbackupd.snapshot.catalog import list_snapshots
from odbackupd.snapshot.restore import restore_snapshot
from odbackupd.state import StateStore
from tests.layout import series_dir

from .treegen import assert_same_tree


class Host:
    """One server: its own config (hostname, state, spool) and source tree, a shared destination."""

    def __init__(self, tmp: Path, name: str, dest: Path, keep_last: int = 2) -> None:
        self.name = name
        self.src = tmp / name / "etc"
        self.src.mkdir(parents=True)
        (self.src / "hostname").write_text(f"{name}\n")
        (self.src / "data").write_bytes(os.urandom(3 << 20))
        self.config_path = tmp / name / "odbackupd.toml"
        # full_every = 1: fulls, so keep_last counts snapshots one for one
        # (chains: test_incremental*)
        self.config_path.write_text(textwrap.dedent(f"""\
            [daemon]
            hostname = "{name}"
            state_dir = "{tmp / name / 'state'}"
            spool_dir = "{tmp / name / 'spool'}"

            [destination.shared]
            type = "local"
            path = "{dest}"

            [job.etc]
            sources = ["{self.src}"]
            destinations = ["shared"]
            volume_size = "1MiB"
            keep_last = {keep_last}
            full_every = 1
            """))

    def run(self, cancel_after_volume: bool = False):  # noqa: ANN201
        cfg = load_config(self.config_path)
        state = StateStore(cfg.daemon.state_dir / "state.db")
        cancel = threading.Event()

        def progress(p):  # noqa: ANN001
            if cancel_after_volume and p.volumes_stored >= 1:
                cancel.set()

        try:
            return run_job(cfg, "etc", state, progress=progress, cancel=cancel).result
        finally:
            state.close()


def _odctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "odctl.cli", *args], capture_output=True, text=True
    )


def _ids(dest: LocalDestination, host: str) -> list[str]:
    return [m.snapshot for m in list_snapshots(dest, "etc", host).complete]


def test_two_hosts_with_the_same_job_keep_each_others_snapshots(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    alpha, beta = Host(tmp_path, "alpha", shared), Host(tmp_path, "beta", shared)
    a = [alpha.run().snapshot for _ in range(2)]
    b = [beta.run().snapshot for _ in range(3)]  # beta's retention (keep_last = 2) runs three times
    dest = LocalDestination("shared", shared)
    assert _ids(dest, "alpha") == a, "beta's retention deleted alpha's snapshots"
    assert _ids(dest, "beta") == b[1:]
    assert sorted(p.name for p in (shared / "alpha" / "etc").iterdir()) == sorted(a)
    # each host's manifest says who made it
    for host, snaps in (("alpha", a), ("beta", b[1:])):
        for s in snaps:
            assert json.loads(
                (series_dir(shared, "etc", host) / s / "manifest.json").read_text()
            )["host"] == host


def test_an_upload_in_progress_on_another_host_is_not_cleaned_up(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    alpha, beta = Host(tmp_path, "alpha", shared), Host(tmp_path, "beta", shared)
    half = alpha.run(cancel_after_volume=True)  # alpha stopped mid-upload: no manifest yet
    assert half.status == "cancelled"
    folder = series_dir(shared, "etc", "alpha") / half.snapshot
    stored = sorted(p.name for p in folder.iterdir())
    assert stored and "manifest.json" not in stored
    for _ in range(2):
        r = beta.run()
        assert r.ok and r.removed_leftovers == []
    assert sorted(p.name for p in folder.iterdir()) == stored
    # alpha resumes its own snapshot, reusing what it had stored
    done = alpha.run()
    assert done.ok and done.snapshot == half.snapshot and done.resumed and done.reused_volumes >= 1


def _to_old_layout(shared: Path, host: str) -> list[str]:
    """Move a host's snapshots to ``<root>/<job>/<snapshot>/`` as odbackupd 0.1 stored them
    (the manifest is the same: it always named its host)."""
    old = shared / "etc"
    old.mkdir(exist_ok=True)
    moved = []
    for d in sorted(series_dir(shared, "etc", host).iterdir()):
        d.rename(old / d.name)
        moved.append(d.name)
    return moved


def test_snapshots_of_the_old_layout_stay_listed_restorable_and_pruned_by_their_host(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    alpha = Host(tmp_path, "alpha", shared, keep_last=2)
    beta = Host(tmp_path, "beta", shared, keep_last=1)
    old_alpha = [alpha.run().snapshot for _ in range(2)]
    old_beta = [beta.run().snapshot]
    _to_old_layout(shared, "alpha")
    _to_old_layout(shared, "beta")
    # an old-layout folder without a manifest: nobody's on record, never cleaned up
    orphan = shared / "etc" / "20250101T000000Z-0ddba1"
    orphan.mkdir()
    (orphan / "vol.000001.zst").write_bytes(b"partial")
    dest = LocalDestination("shared", shared)
    assert _ids(dest, "alpha") == old_alpha and _ids(dest, "beta") == old_beta
    listing = list_snapshots(dest, "etc", "alpha")
    assert listing.legacy_incomplete == [orphan.name] and listing.incomplete == []

    # restorable where they are
    out = tmp_path / "restored"
    restore_snapshot(dest, listing.complete[0], out, special_files=True)
    assert_same_tree(alpha.src, out / str(alpha.src).lstrip("/"), dir_mtimes=False)

    # counted by retention: alpha's next run keeps 2 (one old, one new),
    # beta's does not touch alpha's
    new = alpha.run()
    assert new.ok
    assert _ids(dest, "alpha") == [old_alpha[1], new.snapshot]
    assert not (shared / "etc" / old_alpha[0]).exists()
    b = beta.run()
    assert b.ok and _ids(dest, "beta") == [b.snapshot]
    assert (shared / "etc" / old_alpha[1] / "manifest.json").is_file(), \
        "beta pruned alpha's old snapshot"
    assert orphan.is_dir()
    # new snapshots go to the per-host folder
    assert (series_dir(shared, "etc", "alpha") / new.snapshot / "manifest.json").is_file()


def test_odctl_host_reads_and_restores_another_servers_snapshots(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    dead, new = Host(tmp_path, "alpha", shared), Host(tmp_path, "beta", shared)
    snap = dead.run().snapshot
    shutil.rmtree(tmp_path / "alpha" / "state")  # the server is gone, its state with it
    r = _odctl("snapshots", "etc", "--config", str(new.config_path), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["destinations"]["shared"]["snapshots"] == []
    r = _odctl("snapshots", "etc", "--config", str(new.config_path), "--host", "alpha", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["destinations"]["shared"]["snapshots"]
    assert [(s["snapshot"], s["host"]) for s in rows] == [(snap, "alpha")]
    r = _odctl("verify", "etc", "latest", "--config", str(new.config_path), "--host", "alpha",
               "--download")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "restored"
    r = _odctl("restore", "etc", "latest", "--config", str(new.config_path), "--host", "alpha",
               "--to", str(out), "--special-files")
    assert r.returncode == 0, r.stderr
    assert_same_tree(dead.src, out / str(dead.src).lstrip("/"), dir_mtimes=False)
    # without --host, beta has nothing of its own to restore: exit 3 naming --host
    r = _odctl("restore", "etc", "latest", "--config", str(new.config_path),
               "--to", str(tmp_path / "x"))
    assert r.returncode == 3 and "--host" in r.stderr
    r = _odctl("snapshots", "etc", "--config", str(new.config_path), "--host", "../x")
    assert r.returncode == 2 and "--host" in r.stderr and "invalid host name" in r.stderr
