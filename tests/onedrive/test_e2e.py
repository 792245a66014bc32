"""End to end on the Graph emulator: login → backups → list → verify → restore → retention,
for a personal OneDrive and for OneDrive for Business reached by site and by drive id."""
from __future__ import annotations

import os
import random

import pytest

from odbackupd.crypto.age import load_identities
from odbackupd.runner import run_job
from odbackupd.snapshot.catalog import list_snapshots
from odbackupd.snapshot.restore import restore_snapshot, verify_snapshot
from tests.layout import HOST
from tests.snapshot.treegen import assert_same_tree, make_awkward_tree

from .conftest import CHUNK

BUSINESS = pytest.mark.graphemu(mode="business")

VARIANTS = [
    pytest.param("me", True, id="personal-encrypted"),
    pytest.param("site", False, id="business-site-plain", marks=BUSINESS),
    pytest.param("drive_id", True, id="business-drive_id-encrypted", marks=BUSINESS),
]


def _drive_settings(emu, how: str) -> tuple[str, str | None]:  # noqa: ANN001
    """(config lines, the emulator drive id the backups land in)."""
    if how == "site":
        return 'site = "contoso.sharepoint.com:/sites/backups"\n', emu.site_drive_id
    if how == "drive_id":
        return f'drive_id = "{emu.drive_id}"\n', emu.drive_id
    return "", None


@pytest.mark.parametrize("how,encrypted", VARIANTS)
def test_backup_list_verify_restore_prune(od, age_key, tmp_path, how, encrypted):
    emu = od.emu
    src = make_awkward_tree(tmp_path / "tree", big=3 << 20)
    key, recipient = age_key
    lines, drive_id = _drive_settings(emu, how)
    od.write([src], recipients=[recipient] if encrypted else [], drive=lines,
             job_extra="keep_last = 1\nfull_every = 1\n")
    assert od.login() == emu.default_user
    cfg, state = od.config(), od.state()

    first = run_job(cfg, "t", state)
    assert first.result.ok, first.result.message
    vols = first.result.manifest.volumes
    assert len(vols) >= 3, "the test wants a multi-volume snapshot"
    # volumes over one chunk went up in upload sessions of 320 KiB fragments, the rest
    # (and the index, RESTORE.txt and the manifest) by one simple PUT each
    big = [v for v in vols if v["size"] > CHUNK]
    assert big, "the test wants volumes larger than a chunk"
    assert emu.counters["sessions_completed"] == len(big)
    assert emu.counters["fragments_committed"] == sum(-(-v["size"] // CHUNK) for v in big)
    assert emu.counters["simple_uploads"] == len(vols) - len(big) + 3
    folder = f"/{od.folder}/{HOST}/t/{first.result.snapshot}"
    for v in vols:  # what OneDrive reports is what we made
        item = emu.item(f"{folder}/{v['name']}", drive_id)
        assert item["size"] == v["size"]
        assert item["file"]["hashes"]["quickXorHash"] == v["quickxor"]
    assert emu.item(f"{folder}/manifest.json", drive_id) is not None
    assert list(state.sessions("od")) == [], "finished uploads leave no session behind"

    (src / "data" / "added.bin").write_bytes(random.Random(3).randbytes(400_000))
    second = run_job(cfg, "t", state)
    assert second.result.ok, second.result.message
    assert second.pruned == {"od": [first.result.snapshot]}  # keep_last = 1, on OneDrive
    assert emu.item(folder, drive_id) is None

    dest = od.destination(state)
    listing = list_snapshots(dest, "t")
    assert [m.snapshot for m in listing.complete] == [second.result.snapshot]
    assert listing.incomplete == []
    m = listing.complete[0]

    downloads = emu.counters["requests.download.get"] + emu.counters["requests.graph.content.get"]
    rep = verify_snapshot(dest, m)
    assert rep.ok, rep.problems
    assert rep.method == "destination hashes"
    assert (emu.counters["requests.download.get"] + emu.counters["requests.graph.content.get"]
            == downloads), "verify without --download must not download"

    ids = load_identities(key) if encrypted else None
    rep = verify_snapshot(dest, m, download=True, identities=ids)
    assert rep.ok, rep.problems
    assert emu.counters["bytes_downloaded"] >= m.stored_bytes

    out = tmp_path / "out"
    restore_snapshot(dest, m, out, identities=ids, special_files=True)
    assert_same_tree(src, out / str(src).lstrip("/"))
    dest.close()
    state.close()

    agents = {r["user_agent"] for r in emu.requests if r["host"] in ("graph", "files")}
    assert len(agents) == 1 and agents.pop().startswith("ISV|odbackupd|odbackupd/")
    emu.assert_no_violations()


def test_damaged_copy_is_caught_by_hash_verify(od, tmp_path):
    """A volume whose bytes change on OneDrive fails verify without any download."""
    emu = od.emu
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(os.urandom(1_500_000))
    od.write([src])
    od.login()
    cfg, state = od.config(), od.state()
    run = run_job(cfg, "t", state)
    assert run.result.ok, run.result.message
    m = run.result.manifest
    vol = m.volumes[0]["name"]
    path = f"/{od.folder}/{HOST}/t/{m.snapshot}/{vol}"
    data = bytearray(emu.read_file(path))
    data[1000] ^= 0xFF
    emu.put_file(path, bytes(data))  # same size, other bytes

    dest = od.destination(state)
    downloads = emu.counters["requests.download.get"]
    rep = verify_snapshot(dest, m)
    assert not rep.ok
    assert any(vol in p and "quickXorHash" in p for p in rep.problems), rep.problems
    assert emu.counters["requests.download.get"] == downloads
    dest.close()
    state.close()
    emu.assert_no_violations()
