"""On OneDrive too: servers sharing the folder and a job name keep each other's snapshots;
hard_delete frees the quota on work or school drives, personal drives keep the recycle
bin (and say so); odctl snapshots shows the recycle bin's bytes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from odbackupd.runner import run_job
from odbackupd.snapshot.catalog import list_snapshots

from .conftest import OneDriveSetup

BUSINESS = pytest.mark.graphemu(mode="business")


def _host(tmp_path, emu, name: str, *, drive: str = "", dest_extra: str = "",
          keep: int = 1) -> OneDriveSetup:
    od = OneDriveSetup(tmp_path / name, emu)
    src = tmp_path / name / "src"
    src.mkdir(parents=True)
    (src / "f.bin").write_bytes(os.urandom(700_000))
    # fulls: keep_last counts one for one
    od.write([src], drive=drive, daemon_extra=f'hostname = "{name}"\n',
             job_extra=f"keep_last = {keep}\nfull_every = 1\n")
    if dest_extra:
        text = od.config_path.read_text().replace('chunk_size = "320KiB"\n',
                                                  'chunk_size = "320KiB"\n' + dest_extra)
        od.config_path.write_text(text)
    od.login()
    return od


def _run(od: OneDriveSetup):  # noqa: ANN202
    cfg, state = od.config(), od.state()
    try:
        run = run_job(cfg, "t", state)
    finally:
        state.close()
    assert run.result.ok, run.result.message
    return run


def test_two_hosts_in_the_default_folder_keep_each_others_snapshots(tmp_path, graph_emulator):
    emu = graph_emulator
    alpha, beta = _host(tmp_path, emu, "alpha"), _host(tmp_path, emu, "beta")
    a = _run(alpha).result.snapshot
    b = [_run(beta).result.snapshot for _ in range(2)]  # beta's keep_last = 1 prunes its first
    dest = beta.destination()
    try:
        assert [m.snapshot for m in list_snapshots(dest, "t", "alpha").complete] == [a]
        assert [m.snapshot for m in list_snapshots(dest, "t", "beta").complete] == [b[1]]
    finally:
        dest.close()
    assert emu.exists(f"{alpha.folder}/alpha/t/{a}/manifest.json")
    assert not emu.exists(f"{beta.folder}/beta/t/{b[0]}")
    emu.assert_no_violations()


@BUSINESS
def test_hard_delete_frees_the_quota_on_a_business_drive(tmp_path, graph_emulator):
    emu = graph_emulator
    drive = emu.drive_id  # a OneDrive for Business (SharePoint libraries may report no quota)
    by_id = f'drive_id = "{drive}"\n'
    soft = _host(tmp_path, emu, "soft", drive=by_id)
    hard = _host(tmp_path, emu, "hard", drive=by_id, dest_extra="hard_delete = true\n")

    first = _run(soft)
    second = _run(soft)
    assert second.pruned == {"od": [first.result.snapshot]}
    in_bin = emu.quota(drive)["deleted"]
    assert in_bin >= first.result.manifest.stored_bytes, "a plain delete goes to the recycle bin"
    assert emu.counters["requests.graph.item.permanent_delete"] == 0

    h1 = _run(hard)
    h2 = _run(hard)
    assert h2.pruned == {"od": [h1.result.snapshot]}
    assert emu.quota(drive)["deleted"] == in_bin, "hard_delete must not fill the recycle bin"
    assert emu.counters["requests.graph.item.permanent_delete"] == 2  # manifest, then folder
    assert not emu.exists(f"{hard.folder}/hard/t/{h1.result.snapshot}", drive)

    # odctl snapshots shows what the recycle bin holds
    r = subprocess.run([sys.executable, "-m", "odctl.cli", "snapshots", "t", "--config",
                        str(soft.config_path), "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    space = json.loads(r.stdout)["destinations"]["od"]["space"]
    assert space["deleted"] == in_bin and space["total"] > 0
    r = subprocess.run([sys.executable, "-m", "odctl.cli", "snapshots", "t", "--config",
                        str(soft.config_path)], capture_output=True, text=True)
    assert r.returncode == 0 and "held by the recycle bin" in r.stderr
    emu.assert_no_violations()


def test_hard_delete_on_a_personal_drive_says_it_cannot(tmp_path, graph_emulator, caplog):
    emu = graph_emulator
    od = _host(tmp_path, emu, "home", dest_extra="hard_delete = true\n")
    # offline, --check-config knows a personal account by its tenant "consumers"
    cfg = tmp_path / "personal.toml"
    cfg.write_text(od.config_path.read_text().replace(f'tenant = "{emu.tenant}"',
                                                      'tenant = "consumers"'))
    r = subprocess.run([sys.executable, "-m", "odbackupd.main", "--config", str(cfg),
                        "--check-config"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "destination.od.hard_delete" in r.stderr and "personal OneDrive" in r.stderr
    first = _run(od)
    with caplog.at_level("WARNING", logger="odbackupd.onedrive"):
        second = _run(od)
    assert second.pruned == {"od": [first.result.snapshot]}
    assert emu.quota()["deleted"] >= first.result.manifest.stored_bytes  # in the recycle bin
    assert emu.counters["requests.graph.item.permanent_delete"] == 0
    assert any("no permanent delete" in rec.getMessage() for rec in caplog.records)
    emu.assert_no_violations()
