"""Incremental chains on OneDrive (the Graph emulator): three levels up, verified by
OneDrive's hashes, restored by odctl's chain restore and by stock tools from a download."""
from __future__ import annotations

import random

from odbackupd.crypto.age import load_identities
from odbackupd.snapshot.catalog import list_snapshots
from odbackupd.snapshot.chainrestore import restore_chain, verify_chain
from odbackupd.snapshot.incchain import chain_of
from tests.snapshot.incgen import Runs, level1, level2, stock_restore
from tests.snapshot.treegen import assert_same_tree, make_awkward_tree


def test_three_level_chain_round_trip(od, age_key, tmp_path):
    src = make_awkward_tree(tmp_path / "tree", big=1 << 20)
    key, recipient = age_key
    od.write([src], recipients=[recipient], job_extra="keep_last = 1\n")
    od.login()
    runs = Runs(od)
    rnd = random.Random(5)
    made = [runs.run().result.manifest]
    for change in (level1, level2):
        change(src, rnd)
        made.append(runs.run().result.manifest)
    assert [m.kind for m in made] == ["full", "incremental", "incremental"]
    state = od.state()
    dest = od.destination(state)
    try:
        snaps = list_snapshots(dest, "t").complete
        # keep_last = 1 on OneDrive keeps the newest and the chain it needs
        assert [m.snapshot for m in snaps] == [m.snapshot for m in made]
        chain = chain_of(snaps[-1], snaps)
        assert all(r.ok for r in verify_chain(dest, snaps[-1], snaps))  # OneDrive's quickXorHashes
        ids = load_identities(key)
        out = tmp_path / "od"
        restore_chain(dest, chain, out, identities=ids, special_files=True)  # our own snapshots
        assert_same_tree(src, out / str(src).lstrip("/"))
        # what a sysadmin does without odbackupd: download the chain's folders, run RESTORE.txt
        local = tmp_path / "download"
        for m in chain:
            (local / m.snapshot).mkdir(parents=True)
            for name in dest.list_objects(m.location, m.snapshot):
                with dest.open_read(m.location, m.snapshot, name) as f:
                    (local / m.snapshot / name).write_bytes(f.read())
        assert " ".join(m.snapshot for m in chain) in (
            local / chain[-1].snapshot / "RESTORE.txt").read_text()
        stock_restore(local, [m.snapshot for m in chain], tmp_path / "tar", key)
        assert_same_tree(src, tmp_path / "tar" / str(src).lstrip("/"))
    finally:
        dest.close()
        state.close()
