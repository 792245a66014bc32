"""What lands: a full disk leaves nothing half-landed, expired uploads go, and every stored
file becomes a snapshot of the drop series (the daemon's DropDir + run_job) that restores
byte-identical."""
from __future__ import annotations

import asyncio
import functools
import os
import subprocess
from pathlib import Path

import pytest

from odbackupd.config import load_config
from odbackupd.destinations.local import LocalDestination
from odbackupd.intake.landing import land, rename_noreplace, sanitize_name
from odbackupd.intake.store import Store
from odbackupd.runner import drop_series, run_job
from odbackupd.service.dropdir import DropDir
from odbackupd.snapshot.catalog import list_snapshots
from odbackupd.snapshot.restore import restore_snapshot
from odbackupd.state import StateStore

from .conftest import Intake

MiB = 1 << 20


def test_rename_noreplace_never_replaces(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("new")
    (tmp_path / "b").write_text("old")
    with pytest.raises(FileExistsError):
        rename_noreplace(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b").read_text() == "old" and (tmp_path / "a").exists()
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "x.tar.zst").write_text("first")
    assert land(tmp_path / "a", drop, "x.tar.zst") == "x-2.tar.zst"
    assert (drop / "x.tar.zst").read_text() == "first" and sanitize_name("") == "upload"


@pytest.fixture
def tmpfs(tmp_path: Path):
    """A real 6 MiB file system holding the drop and partial directories."""
    root = tmp_path / "small"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6M,mode=0700", "tmpfs", str(root)],
                   check=True)
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=True)


def _used(root: Path) -> int:
    st = os.statvfs(root)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def test_a_full_disk_answers_507_and_leaves_nothing_half_landed(tmp_path: Path,
                                                                tmpfs: Path) -> None:
    svc = Intake(tmp_path, drop_root=tmpfs, max_file_size="100MiB")
    svc.start()
    try:
        before = _used(tmpfs)
        status, body = svc.put("too-big.bin", os.urandom(8 * MiB))
        assert status == 507 and "disk is full" in body["text"]
        chunked = (os.urandom(MiB) for _ in range(8))
        assert svc.put("too-big.bin", chunked, headers={"Transfer-Encoding": "chunked"})[0] == 507
        assert svc.waiting() == {} and svc.partials() == [] and _used(tmpfs) == before
        loc = svc.create(8 * MiB)
        assert svc.patch(loc, 0, os.urandom(2 * MiB))[0] == 204
        status, h, _ = svc.patch(loc, 2 * MiB, os.urandom(6 * MiB))
        assert status == 507 and h["upload-offset"] == str(2 * MiB)
        assert svc.offset(loc) == 2 * MiB and svc.waiting() == {}
        assert svc.request("DELETE", loc, user="alice", tus=True)[0] == 204
        data = os.urandom(3 * MiB)  # room again: it works
        assert svc.put("fits.bin", data)[0] == 201 and svc.waiting() == {"fits.bin": data}
    finally:
        svc.close()


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_unfinished_uploads_expire_and_leftovers_go_at_start(tmp_path: Path) -> None:
    svc = Intake(tmp_path)  # its configuration, without running it
    config = load_config(svc.config)
    clock = _Clock()
    store = Store(config.intake, config.jobs, clock=clock)
    store.open()
    old = store.create("alice", "old.bin", 100, "test", {})
    (store.partial(old)).write_bytes(b"x" * 10)
    store.acknowledge(old, 10)  # the last time it received something
    clock.now += 3600
    fresh = store.create("alice", "fresh.bin", 100, "test", {})
    clock.now = old.touched + config.intake.upload_expiry - 1
    assert store.sweep() == []
    clock.now += 1
    assert [u.id for u in store.sweep()] == [old.id]
    assert not store.partial(old).exists() and store.partial(fresh).exists()
    (store.areas["alice"].partial_dir / "put-deadbeef").write_bytes(b"a PUT cut by a crash")
    again = Store(config.intake, config.jobs, clock=clock)
    again.open()
    assert list(again.uploads) == [fresh.id]
    assert sorted(os.listdir(store.areas["alice"].partial_dir)) == [fresh.id]


def test_every_stored_file_becomes_a_drop_snapshot_that_restores(intake: Intake) -> None:
    """The daemon's side, for real: its DropDir on alice's drop directory hands each landed
    file to run_job on the drop series, which stores, verifies and then removes it."""
    put_data = os.urandom(1_500_000)
    tus_data = os.urandom(2_500_000)
    config = load_config(intake.config)
    state = StateStore(config.daemon.state_dir / "state.db")

    async def body() -> list:
        loop = asyncio.get_running_loop()
        runs: list = []
        done = asyncio.Event()

        async def on_file(path: Path) -> bool:
            run = await loop.run_in_executor(None, functools.partial(
                run_job, config, "alice-files", state, sources=[path],
                series=drop_series("alice-files"), trigger="drop"))
            runs.append(run)
            if len(runs) == 2:
                done.set()
            return run.result.ok

        d = DropDir(loop, "alice-files", intake.drop["alice"], on_file=on_file, settle=0.2)
        d.start()
        try:
            assert await loop.run_in_executor(None, intake.put, "db.sql.zst", put_data) == \
                (201, {"name": "db.sql.zst", "size": len(put_data),
                       "sha256": __import__("hashlib").sha256(put_data).hexdigest()})
            loc = await loop.run_in_executor(None, intake.create, len(tus_data), "vm.vma")
            for off in range(0, len(tus_data), MiB):
                r = await loop.run_in_executor(None, intake.patch, loc, off,
                                               tus_data[off:off + MiB])
                assert r[0] == 204
            await asyncio.wait_for(done.wait(), 120)
        finally:
            d.stop()
        return runs

    try:
        runs = asyncio.run(body())
    finally:
        state.close()
    assert all(r.result.ok for r in runs)
    assert intake.waiting() == {}  # stored and verified, so the daemon removed them
    dest = LocalDestination("usb", intake.dest)
    snaps = list_snapshots(dest, "alice-files+drop").complete
    assert len(snaps) == 2
    restored = {}
    for i, snap in enumerate(snaps):
        out = intake.tmp / f"restored-{i}"
        restore_snapshot(dest, snap, out)
        for p in out.rglob("*"):
            if p.is_file():
                restored[p.name] = p.read_bytes()
    assert restored == {"db.sql.zst": put_data, "vm.vma": tus_data}


def test_the_running_service_sweeps_expired_uploads(tmp_path: Path) -> None:
    svc = Intake(tmp_path, upload_expiry="2s")
    svc.start()
    try:
        loc = svc.create(1000, "abandoned.bin")
        assert svc.patch(loc, 0, b"x" * 10)[0] == 204
        svc.wait_log("expired (10 of 1000 bytes); deleted")
        assert svc.offset(loc) is None and svc.partials() == []
        assert list((svc.state / "uploads").iterdir()) == []
    finally:
        svc.close()
