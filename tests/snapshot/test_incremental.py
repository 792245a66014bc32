"""Incremental snapshots: only what changed is stored, and a chain restores to exactly the
snapshot's state with odctl and with stock age | zstd | GNU tar -G."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time

import pytest

from odbackupd.crypto.age import load_identities
from odbackupd.destinations.local import LocalDestination
from odbackupd.snapshot.catalog import list_snapshots
from odbackupd.snapshot.chainrestore import restore_chain
from odbackupd.snapshot.incchain import chain_of
from odbackupd.snapshot.restore import restore_snapshot
from tests.layout import series_dir

from .incgen import Runs, level1, level2, stock_restore
from .treegen import assert_same_tree, make_awkward_tree


def odctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "odctl.cli", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "age"])
def test_three_level_chain_restores_with_gnu_tar_and_odctl(setup, tmp_path, age_key, encrypted):
    key, recipient = age_key
    src = make_awkward_tree(tmp_path)
    setup.write([src], recipients=[recipient] if encrypted else [], volume_size="1MiB")
    runs = Runs(setup)
    rnd = random.Random(3)
    dest = LocalDestination("usb", setup.dest)
    ids = load_identities(key) if encrypted else None
    sdir = series_dir(setup.dest)
    made = []
    for level, change in enumerate((None, level1, level2)):
        if change is not None:
            change(src, rnd)
        m = runs.run().result.manifest
        made.append(m)
        assert m.kind == ("full" if level == 0 else "incremental")
        assert m.base == (made[-2].snapshot if level else None)
        chain = chain_of(m, list_snapshots(dest, "t").complete)
        assert [c.snapshot for c in chain] == [x.snapshot for x in made]
        # stock tools, as README and RESTORE.txt say
        text = (sdir / m.snapshot / "RESTORE.txt").read_text()
        assert " ".join(c.snapshot for c in chain) in text and ("-G" in text if level else True)
        out = tmp_path / f"tar{level}"
        stock_restore(sdir, [c.snapshot for c in chain], out, key if encrypted else None)
        assert_same_tree(src, out / str(src).lstrip("/"))
        # one tar for the whole chain (see README: not for level 2's symlink -> directory)
        if level < 2:
            out = tmp_path / f"onetar{level}"
            stock_restore(sdir, [c.snapshot for c in chain], out, key if encrypted else None,
                          one_tar=True)
            assert_same_tree(src, out / str(src).lstrip("/"))
        # odctl's own restore of the chain: each file once, from its newest copy
        out = tmp_path / f"od{level}"
        if len(chain) > 1:
            restore_chain(dest, chain, out, identities=ids, special_files=True)  # our own snapshots
        else:
            restore_snapshot(dest, m, out, identities=ids, special_files=True)
        assert_same_tree(src, out / str(src).lstrip("/"))
    inc1, inc2 = made[1], made[2]
    assert len(inc1.volumes) >= 3  # the big new file spans volumes of the incremental
    assert (inc1.changes["deleted"] >= 5 and inc1.changes["new"] >= 6
            and inc1.changes["unchanged"] >= 3)
    # the same-size rewrite with the mtime set back was seen (ctime), and both its links stored
    assert inc1.data_bytes >= 2 * (3 << 20)
    # level 2 stores none of the 3 MiB files again: the swap costs the swapped directories'
    # files only
    assert inc2.data_bytes < 2 << 20 and inc2.stored_bytes < inc1.stored_bytes / 4
    if encrypted:  # the index holds file names: encrypted like the volumes
        raw = b"".join(p.read_bytes() for p in (sdir / inc1.snapshot).iterdir())
        assert b"hosts.renamed" not in raw and b"pair-a" not in raw


def test_restore_writes_each_file_once_and_needs_an_empty_target(setup, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    big = src / "big.bin"
    big.write_bytes(os.urandom(2 << 20))
    (src / "small").write_text("v1")
    cfg = setup.write([src], volume_size="1MiB")
    runs = Runs(setup)
    runs.run()
    for i in range(2):  # the big file changes in every snapshot of the chain
        with open(big, "r+b") as f:
            f.write(os.urandom(100))
        (src / "small").write_text(f"v{i + 2}")
        m = runs.run().result.manifest
        assert m.kind == "incremental"
    out = tmp_path / "out"
    out.mkdir()
    (out / "unrelated").write_text("x")
    r = odctl("--config", str(cfg), "restore", "t", "--to", str(out))
    assert r.returncode == 2 and "not empty" in r.stderr and "--allow-nonempty" in r.stderr
    r = odctl("--config", str(cfg), "restore", "t", "--to", str(out), "--allow-nonempty", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert len(res["chain"]) == 3 and res["chain"][-1] == m.snapshot
    assert res["files"] == 2 and res["bytes"] == (2 << 20) + 2  # the big file once, not three times
    assert_same_tree(src, out / str(src).lstrip("/"))


def test_restore_of_a_chain_to_a_file_says_so_in_one_line(setup, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "small").write_text("v1")
    cfg = setup.write([src])
    runs = Runs(setup)
    runs.run()
    (src / "small").write_text("v2")
    assert runs.run().result.manifest.kind == "incremental"
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    for to, extra in ((afile, ()), (afile / "sub", ()), (afile, ("--path", str(src).lstrip("/")))):
        r = odctl("--config", str(cfg), "restore", "t", "--to", str(to), *extra)
        assert r.returncode == 2, r.stderr  # usage, as for a full snapshot (odctl(1) EXIT STATUS)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert f"--to {to}" in r.stderr and "not a directory" in r.stderr
    assert afile.read_text() == "not a directory"


def test_no_change_incremental_stores_no_file_data(setup, tmp_path):
    src = make_awkward_tree(tmp_path)
    setup.write([src])
    runs = Runs(setup)
    full = runs.run().result.manifest
    run = runs.run()
    m = run.result.manifest
    assert m.kind == "incremental" and m.base == full.snapshot
    assert m.data_bytes == 0 and m.files == 0
    assert m.changes == {"new": 0, "changed": 0, "unchanged": m.changes["unchanged"], "deleted": 0}
    assert m.changes["unchanged"] >= 15
    assert m.stored_bytes < full.stored_bytes / 20
    assert ("incremental on " + full.snapshot in run.result.message
            and "15 unchanged" in run.result.message
            or f"{m.changes['unchanged']} unchanged" in run.result.message)


def test_a_file_changed_right_after_it_was_read_is_read_again(setup, tmp_path):
    """A file whose mtime is within a second of the listing may change again unseen in the
    same timestamp tick: the next run reads it again even if nothing seems to differ."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "old").write_text("old")
    os.utime(src / "old", (time.time() - 100, time.time() - 100))
    (src / "fresh").write_text("fresh")
    setup.write([src])
    t = os.stat(src / "fresh").st_ctime
    runs = Runs(setup, start=t + 0.2)  # the first run lists "fresh" 0.2 s after it was written
    runs.run(step=3600)
    m = runs.run().result.manifest
    assert m.kind == "incremental"
    # "old" has a ctime of now too (utime moves it), so both were racy at the first run
    assert m.changes["changed"] == 2 and m.files == 2
    m = runs.run().result.manifest
    assert m.changes["changed"] == 0 and m.files == 0  # no longer racy: unchanged


def test_a_lost_local_index_makes_a_full_and_says_why(setup, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a")
    setup.write([src])
    runs = Runs(setup)
    runs.run()
    assert runs.run().result.manifest.kind == "incremental"
    cache = setup.state / "index" / "t.zst"
    assert cache.is_file() and (cache.stat().st_mode & 0o777) == 0o600
    cache.unlink()
    run = runs.run()
    assert run.result.manifest.kind == "full" and run.result.manifest.base is None
    assert "no local index" in run.result.message and f"{cache} is missing" in run.result.message
    # a damaged cache (a torn write, a bad disk) is not read: a full, saying so
    assert runs.run().result.manifest.kind == "incremental"
    data = bytearray(cache.read_bytes())
    data[len(data) // 2] ^= 1
    cache.write_bytes(bytes(data))
    run = runs.run()
    assert run.result.manifest.kind == "full" and "is damaged" in run.result.message
    # and the cache of another snapshot is not taken for the latest one's
    old = (setup.state / "index" / "t.json").read_text()
    assert runs.run().result.manifest.kind == "incremental"
    (setup.state / "index" / "t.json").write_text(old)
    run = runs.run()
    assert run.result.manifest.kind == "full" and "is of snapshot" in run.result.message


def test_full_every_and_full_if_older_than(setup, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a")
    setup.write([src], extra='full_every = 3\nfull_if_older_than = "2d"\n')
    runs = Runs(setup)
    kinds = [runs.run(step=3600).result.manifest.kind for _ in range(7)]
    assert kinds == ["full", "incremental", "incremental"] * 2 + ["full"]
    setup.write([src], extra='full_every = 100\nfull_if_older_than = "2d"\n')
    kinds = [runs.run(step=86400).result.manifest.kind for _ in range(4)]
    assert kinds == ["incremental", "incremental", "full", "incremental"]
    setup.write([src], extra="full_every = 1\n")
    assert runs.run().result.manifest.kind == "full"


def test_restore_of_one_path_from_a_chain(setup, tmp_path):
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "var").mkdir()
    (src / "etc" / "a").write_text("a1")
    (src / "etc" / "b").write_text("b1")
    (src / "var" / "log").write_text("log")
    cfg = setup.write([src])
    runs = Runs(setup)
    runs.run()
    (src / "etc" / "a").write_text("a2")  # the newest copy is in the incremental
    os.unlink(src / "etc" / "b")
    m = runs.run().result.manifest
    assert m.kind == "incremental"
    out = tmp_path / "out"
    rel = str(src / "etc").lstrip("/")
    r = odctl("--config", str(cfg), "restore", "t", "--to", str(out), "--path", rel)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (out / rel).iterdir()) == ["a"]
    assert ((out / rel / "a").read_text() == "a2"
            and not (out / str(src / "var").lstrip("/")).exists())
    r = odctl("--config", str(cfg), "restore", "t", "--to", str(tmp_path / "out2"),
              "--path", rel + "/b")
    # deleted in the chain: not there
    assert r.returncode == 3 and "nothing in snapshot" in r.stderr


class _Recording(LocalDestination):
    """The local destination, noting which objects a restore reads."""

    def __init__(self, *a, **kw) -> None:  # noqa: ANN002, ANN003
        super().__init__(*a, **kw)
        self.read: list[tuple[str, str]] = []

    def open_read(self, folder, snapshot, name):  # noqa: ANN001, ANN201
        self.read.append((snapshot, name))
        return super().open_read(folder, snapshot, name)


def test_a_chain_restore_fetches_only_volumes_holding_newest_copies(setup, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    big, keep = src / "big.bin", src / "keep.bin"
    big.write_bytes(os.urandom(3 << 20))
    keep.write_bytes(os.urandom(2 << 20))  # never changes: its copy in the full is the newest
    setup.write([src], volume_size="1MiB")
    runs = Runs(setup)
    made = [runs.run().result.manifest]
    for _ in range(2):
        big.write_bytes(os.urandom(3 << 20))  # a new version in every snapshot of the chain
        made.append(runs.run().result.manifest)
    full, inc1, inc2 = made
    assert len(full.volumes) >= 5 and len(inc1.volumes) >= 3
    dest = _Recording("usb", setup.dest)
    out = tmp_path / "out"
    restore_chain(dest, made, out, identities=None)
    assert_same_tree(src, out / str(src).lstrip("/"))
    got = {s: sorted(n for s2, n in dest.read if s2 == s and n.startswith("vol."))
           for s in (m.snapshot for m in made)}
    assert got[inc1.snapshot] == []  # its big.bin was replaced by inc2's: nothing of it is read
    assert got[inc2.snapshot] == [v["name"] for v in inc2.volumes]
    # of the full, only the volumes keep.bin lies in (it follows big.bin, 3 MiB in)
    assert 1 <= len(got[full.snapshot]) < len(full.volumes) - 1
    assert "vol.000001.zst" not in got[full.snapshot]
