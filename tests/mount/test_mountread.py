"""Member data for odctl mount read on from the member before (odctl/mountread.py), in
process on a real snapshot: files read in directory order decode each volume once; any
order still gives every file's exact bytes; a wrong index entry is refused."""
from __future__ import annotations

import dataclasses
import os

import pytest

from odbackupd.destinations.local import LocalDestination
from odbackupd.snapshot.catalog import list_snapshots
from odbackupd.snapshot.restore_errors import IntegrityError
from odbackupd.snapshot.view import open_view
from odctl.mountread import Decoders, MemberReader

from .conftest import odbackupd


def _snapshot(setup, tmp_path, n: int = 200):  # noqa: ANN001, ANN202
    src = tmp_path / "src"
    (src / "small").mkdir(parents=True)
    for i in range(n):
        (src / "small" / f"f{i:04d}").write_bytes(os.urandom(1000 + i))
    os.link(src / "small" / "f0007", src / "small" / "link-to-7")
    cfg = setup.write([src], volume_size="4MiB")
    r = odbackupd("--config", str(cfg), "--once", "t")
    assert r.returncode == 0, r.stderr
    d = LocalDestination("usb", setup.dest)
    return src, d, list_snapshots(d, "t").complete[-1]


def test_files_in_directory_order_decode_the_volume_once(setup, tmp_path):
    src, d, m = _snapshot(setup, tmp_path)
    assert len(m.volumes) == 1
    with open_view(d, m) as view:
        pool = Decoders()
        reader = MemberReader(view, pool)
        top = f"{str(src).lstrip('/')}/small"
        for node in view.children(top):
            with reader.open(node) as f:
                assert f.read() == (src / "small" / node.name).read_bytes(), node.name
        # 200 files, one decoder read on from file to file; the hard link last in the
        # directory has its data back at f0007: one more
        assert pool.started == 2
        for node in reversed(view.children(top)):  # backwards: slower, still exact
            with reader.open(node) as f:
                assert f.read() == (src / "small" / node.name).read_bytes(), node.name
        first = view.children(top)[0]
        # closed after a few bytes: the rest is not read by the caller
        with reader.open(first) as f:
            assert f.read(10) == (src / "small" / first.name).read_bytes()[:10]
        # at offsets inside the files, after their headers were read
        for node in view.children(top)[:50]:
            want = (src / "small" / node.name).read_bytes()
            with reader.open(node, 700) as f:
                assert f.read() == want[700:], node.name
        pool.close()


def test_an_index_naming_the_wrong_member_is_refused(setup, tmp_path):
    src, d, m = _snapshot(setup, tmp_path, n=8)
    with open_view(d, m) as view:
        pool = Decoders()
        reader = MemberReader(view, pool)
        a, b = view.children(f"{str(src).lstrip('/')}/small")[:2]
        # a node for a that says it is where b is: what a tampered index would do
        forged = dataclasses.replace(a, location=view.location(b))
        with pytest.raises(IntegrityError, match="refused") as e:
            reader.open(forged)
        assert a.path in str(e.value)
        pool.close()
