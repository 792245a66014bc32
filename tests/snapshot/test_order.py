"""A series is ordered by the sequence its snapshots carry, not by the wall clock: a
snapshot made while the clock was set back (NTP step, dead RTC battery) is still the
newest for ``restore latest`` and for ``keep_last``."""
from __future__ import annotations

import time

from odbackupd.destinations.local import LocalDestination
from odbackupd.runner import apply_retention
from odbackupd.snapshot.builder import JobSpec, SnapshotBuilder
from odbackupd.snapshot.catalog import find_snapshot, list_snapshots
from odbackupd.state import StateStore


def _snapshot(setup, cfg, state, clock):  # noqa: ANN001, ANN202
    dest = LocalDestination("usb", setup.dest)
    spec = JobSpec.from_config(cfg.jobs["t"])
    r = SnapshotBuilder(spec, [dest], state, setup.spool, cfg.daemon.hostname, clock=clock).run()
    assert r.ok, r.message
    return r.manifest


def test_clock_set_back_still_newest(setup, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("old\n")
    # fulls: keep_last = 1 prunes the one before
    setup.write([src], extra="keep_last = 1\nfull_every = 1\n")
    cfg = setup.config()
    state = StateStore(setup.state / "state.db")
    now = time.time()
    first = _snapshot(setup, cfg, state, lambda: now)
    (src / "f").write_text("new\n")
    month_ago = now - 30 * 86400
    second = _snapshot(setup, cfg, state, lambda: month_ago)  # the clock was stepped back
    state.close()
    dest = LocalDestination("usb", setup.dest)
    assert second.started < first.started
    host = cfg.daemon.hostname
    assert [m.snapshot for m in list_snapshots(dest, "t", host).complete] == [
        first.snapshot, second.snapshot]
    assert find_snapshot(dest, "t", "latest", host).snapshot == second.snapshot
    assert second.previous == first.snapshot and second.sequence == first.sequence + 1
    plan = apply_retention(cfg.jobs["t"], dest, host)
    assert [m.snapshot for m in plan.delete] == [first.snapshot]
    assert [m.snapshot for m in list_snapshots(dest, "t", host).complete] == [second.snapshot]
