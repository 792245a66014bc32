"""Retention over chains: keeping a snapshot keeps its bases; only whole chains or chain
tails go; max_size deletes whole oldest chains, never the current one."""
from __future__ import annotations

import os
from datetime import datetime

from odbackupd.destinations.local import LocalDestination
from odbackupd.runner import prune_job
from odbackupd.snapshot.catalog import list_snapshots
from odbackupd.snapshot.incchain import chain_of

from .incgen import Runs


def _check_chains(snaps):  # noqa: ANN001, ANN202
    """Every snapshot there restores: its whole chain is there (chain_of raises otherwise)."""
    return {m.snapshot: [c.snapshot for c in chain_of(m, snaps)] for m in snaps}


def test_forty_runs_full_every_7_keep_daily(setup, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "static").write_bytes(os.urandom(4096))
    setup.write([src], extra="full_every = 7\nkeep_daily = 4\n")
    dest = LocalDestination("usb", setup.dest)
    # a manual clock: 01:00 and 13:00 each day
    runs = Runs(setup, start=datetime(2026, 3, 2, 1, 0).timestamp())
    kinds, ever = [], {}
    for i in range(40):
        (src / "counter").write_text(str(i))
        m = runs.run(step=12 * 3600).result.manifest
        kinds.append(m.kind)
        ever[m.snapshot] = m
        snaps = list_snapshots(dest, "t").complete
        chains = _check_chains(snaps)
        present = set(chains)
        # what is gone is a whole chain or the tail of one: never a base of something still there
        for chain in chains.values():
            assert set(chain) <= present
        # the newest snapshot of each of the last 4 days that have one is there
        days = {}
        for s in sorted(ever):
            days[datetime.fromtimestamp(ever[s].started).date()] = s
        assert set(sorted(days.items())[-4:][j][1] for j in range(min(4, len(days)))) <= present
    assert kinds == (["full"] + ["incremental"] * 6) * 5 + ["full"] + ["incremental"] * 4
    # 40 runs, the last 4 days kept: the chains they need and nothing else
    snaps = list_snapshots(dest, "t").complete
    assert len(snaps) < 20
    plan = prune_job(setup.config(), "t", None, dry_run=True)["usb"]
    assert not plan.delete
    reasons = plan.reasons
    assert any(r.startswith("base of ") for rs in reasons.values() for r in rs)
    for m in snaps:
        assert reasons[m.snapshot], m.snapshot  # every kept snapshot says why


def test_max_size_deletes_whole_oldest_chains_never_the_current_one(setup, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    big = src / "big.bin"
    big.write_bytes(os.urandom(1 << 20))  # each full stores ~1 MiB, each incremental a few KiB
    setup.write([src], extra='full_every = 3\nmax_size = "2500KiB"\n')
    dest = LocalDestination("usb", setup.dest)
    runs = Runs(setup)
    for i in range(10):
        (src / "counter").write_text(str(i))
        runs.run()
        snaps = list_snapshots(dest, "t").complete
        chains = _check_chains(snaps)
        roots = {c[0] for c in chains.values()}
        assert len(roots) <= 2  # two fulls fit under 2500 KiB, three do not
        newest = snaps[-1].snapshot
        assert chains[newest][0] in roots  # the current chain is whole
        if len(roots) == 2:  # a chain that is there is there whole (the older one kept all 3)
            old = min(roots)
            assert sum(1 for c in chains.values() if c[0] == old) == 3
