"""Change detection settings, what a run reports, and chains that start with a format-1 full."""
from __future__ import annotations

import json
import logging
import os
import shutil

from odbackupd.destinations.local import LocalDestination
from odbackupd.snapshot.catalog import list_snapshots
from odbackupd.snapshot.chainrestore import restore_chain
from odbackupd.snapshot.incchain import chain_of
from tests.layout import series_dir

from .incgen import Runs, stock_restore
from .treegen import assert_same_tree


def _replace_by_copy(p):  # noqa: ANN001, ANN202
    """What an rsync without --inplace does: same bytes, size and mtime, a new inode."""
    st = os.stat(p)
    tmp = p.with_name(p.name + ".tmp")
    shutil.copyfile(p, tmp)
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, p)


def test_ignore_inode_and_ctime(setup, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for n in "abc":
        (src / n).write_text(n * 100)
    setup.write([src])
    runs = Runs(setup)
    runs.run()
    _replace_by_copy(src / "a")
    m = runs.run().result.manifest
    assert m.changes["changed"] == 1 and m.files == 1  # a new inode and ctime: read again
    setup.write([src], extra="ignore_inode = true\nignore_ctime = true\n")
    _replace_by_copy(src / "b")
    m = runs.run().result.manifest
    assert m.changes["changed"] == 0 and m.files == 0  # told to trust size and mtime only
    (src / "c").write_text("c" * 101)
    m = runs.run().result.manifest
    assert m.changes["changed"] == 1  # a size change is still seen


def test_run_summary_and_journal_fields_say_kind_and_counts(setup, tmp_path, caplog):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a")
    (src / "b").write_text("b")
    setup.write([src])
    runs = Runs(setup)
    first = runs.run()
    assert first.result.message.startswith("full (the first snapshot of the series)")
    (src / "a").write_text("aa")
    (src / "new").write_text("n")
    os.unlink(src / "b")
    with caplog.at_level(logging.INFO, logger="odbackupd.run"):
        run = runs.run()
    msg = run.result.message
    assert msg.startswith(f"incremental on {first.result.snapshot}: "
                          "2 files (1 new, 1 changed, 0 unchanged, 1 deleted)")
    [rec] = [r for r in caplog.records if getattr(r, "journal_fields", {}).get("MESSAGE_ID")
             and r.journal_fields.get("STATUS") == "completed"]
    f = rec.journal_fields
    assert (f["KIND"], f["BASE"], f["NEW"], f["CHANGED"], f["UNCHANGED"], f["DELETED"]) == (
        "incremental", first.result.snapshot, "1", "1", "0", "1")
    from odbackupd.state import StateStore

    state = StateStore(setup.state / "state.db")
    try:
        stats = state.run(run.run_id)["stats"]
    finally:
        state.close()
    stats = stats if isinstance(stats, dict) else json.loads(stats)
    assert stats["kind"] == "incremental" and stats["new"] == 1 and stats["deleted"] == 1


def test_a_chain_may_start_with_a_format_1_full(setup, tmp_path):
    """A full made before incrementals existed (manifest format 1, no index, no dumpdirs in
    its meaning) reads as a full, and a chain on it restores with odctl and stock tools."""
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "old").write_text("old")
    (src / "keep").write_text("keep")
    setup.write([src])
    runs = Runs(setup)
    full = runs.run().result.manifest
    os.unlink(src / "d" / "old")
    (src / "keep2").write_text("new")
    inc = runs.run().result.manifest
    snapdir = series_dir(setup.dest) / full.snapshot
    d = json.loads((snapdir / "manifest.json").read_text())
    for k in ("kind", "base", "index", "changes"):
        d.pop(k)
    d["format_version"] = 1
    (snapdir / "manifest.json").write_text(json.dumps(d))
    (snapdir / full.index["name"]).unlink()
    dest = LocalDestination("usb", setup.dest)
    snaps = list_snapshots(dest, "t").complete
    assert (snaps[0].kind == "full" and snaps[0].index is None
            and not list_snapshots(dest, "t").unreadable)
    chain = chain_of(snaps[-1], snaps)
    assert [c.snapshot for c in chain] == [full.snapshot, inc.snapshot]
    restore_chain(dest, chain, tmp_path / "od")
    assert_same_tree(src, tmp_path / "od" / str(src).lstrip("/"))
    stock_restore(series_dir(setup.dest), [c.snapshot for c in chain], tmp_path / "tar", None)
    assert_same_tree(src, tmp_path / "tar" / str(src).lstrip("/"))


def test_a_clock_set_back_keeps_the_chain(setup, tmp_path):
    """An incremental made while the clock was stepped back still builds on the snapshot
    before it (the series' sequence orders a chain, not the start times)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("old")
    setup.write([src])
    runs = Runs(setup)
    first = runs.run().result.manifest
    (src / "f").write_text("new")
    runs.now -= 40 * 86400
    second = runs.run().result.manifest
    assert (second.kind == "incremental" and second.base == first.snapshot
            and second.started < first.started)
    dest = LocalDestination("usb", setup.dest)
    snaps = list_snapshots(dest, "t").complete
    chain = chain_of(snaps[-1], snaps)
    assert [c.snapshot for c in chain] == [first.snapshot, second.snapshot]
    restore_chain(dest, chain, tmp_path / "out")
    assert (tmp_path / "out" / str(src).lstrip("/") / "f").read_text() == "new"
