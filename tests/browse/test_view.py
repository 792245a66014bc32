"""The library odctl mount builds on (snapshot/view.py): the tree at a snapshot from its index,
member data from the volume holding it, symlink targets with and without the index's field."""

from __future__ import annotations

import os
import stat

import pytest

from odbackupd.destinations.factory import open_destination
from odbackupd.snapshot.catalog import list_snapshots
from odbackupd.snapshot.restore_errors import IntegrityError
from odbackupd.snapshot.view import Downloads, open_view
from tests.snapshot.incgen import Runs
from tests.snapshot.treegen import IS_ROOT

from .helpers import odjson, rewrite_index
from .test_local import change_tree, make_tree


def _open(setup, which=-1, source=None):  # noqa: ANN001, ANN201
    d = open_destination(setup.config(), "usb")
    snaps = list_snapshots(d, "t").complete
    return d, snaps, open_view(d, snaps[which], snaps, source=source)


def test_lookup_children_walk_and_member_data(setup, tmp_path):
    src = make_tree(tmp_path)
    os.link(src / "etc/hosts", src / "hosts-again")
    a = str(src).lstrip("/")
    setup.write([src], extra="full_every = 5\n")
    runs = Runs(setup)
    runs.run()
    change_tree(src)
    runs.run()
    d, snaps, v = _open(setup)
    with v:
        assert [n.name for n in v.children(a)] == [
            "big1",
            "big2",
            "docs",
            "etc",
            "hosts-again",
            "link",
        ]
        shop = v.lookup("/" + a + "/etc/nginx//sites-available/shop/")
        assert (shop.type, shop.size, shop.origin) == ("f", 23, snaps[-1].snapshot)
        assert v.read_member(shop, 7, 4) == b"shop"
        big = v.lookup(f"{a}/big2")
        assert big.origin == snaps[0].snapshot and big.location is None
        loc = v.location(big)
        assert loc.snapshot == snaps[0].snapshot and loc.volume >= 4
        want = (src / "big2").read_bytes()
        before = v.source.counts["volumes"]
        assert v.read_member(big, (2 << 20) + 5, 1000) == want[(2 << 20) + 5 : (2 << 20) + 1005]
        assert v.source.counts["volumes"] - before <= 4  # of the full's 7: only those big2 lies in
        # a hard link: its data is under the name the archive met first
        assert v.read_member(v.lookup(f"{a}/hosts-again"), 0, 100) == b"127.0.0.1 localhost\n"
        assert v.lookup(f"{a}/link").link == "etc/nginx"
        assert [n.path for n in v.walk(f"{a}/etc/nginx")] == [
            f"{a}/etc/nginx",
            f"{a}/etc/nginx/sites-available",
            f"{a}/etc/nginx/sites-available/shop",
        ]
        assert v.lookup(f"{a}/nope") is None and v.children(f"{a}/big1") == []
    d.close()


def test_symlink_target_from_the_tar_header_for_an_older_index(setup, tmp_path):
    src = make_tree(tmp_path)
    a = str(src).lstrip("/")
    setup.write([src], extra="full_every = 1\n")
    snap = Runs(setup).run().result.manifest.snapshot

    def strip_links(recs):  # noqa: ANN001
        for r in recs:
            for c in r.get("c") or ():
                del c[11:]

    rewrite_index(setup.dest, snap, strip_links)
    src_counts = Downloads(open_destination(setup.config(), "usb"))
    d, _, v = _open(setup, source=src_counts)
    with v:
        link = v.lookup(f"{a}/link")
        assert link.link is None and src_counts.counts["volumes"] == 0
        assert v.readlink(link) == "etc/hosts" and src_counts.counts["volumes"] == 1
    src_counts.close()
    d.close()


def test_names_that_are_not_utf8_are_found_and_read(setup, tmp_path):
    src = make_tree(tmp_path)
    os.mkdir(os.path.join(os.fsencode(src), b"d\xff"))
    with open(os.path.join(os.fsencode(src), b"d\xff", b'caf\xe9 "q"],"o":1'), "wb") as f:
        f.write(b"latin-1 name")
    a = str(src).lstrip("/")
    setup.write([src], extra="full_every = 1\n")
    Runs(setup).run()
    d, _, v = _open(setup)
    with v:
        (n,) = v.children(f"{a}/{os.fsdecode(b'd' + bytes([255]))}")
        assert os.fsencode(n.name) == b'caf\xe9 "q"],"o":1'
        assert v.read_member(n, 0, 100) == b"latin-1 name"
    d.close()


def test_volumes_are_released_and_reused(setup, tmp_path):
    """Downloads keeps the last volumes for reuse and never deletes one a reader holds."""
    src = make_tree(tmp_path)
    a = str(src).lstrip("/")
    setup.write([src], extra="full_every = 1\n")
    Runs(setup).run()
    d = open_destination(setup.config(), "usb")
    source = Downloads(d, keep=1)
    _, _, v = _open(setup, source=source)
    with v:
        big1, big2 = v.lookup(f"{a}/big1"), v.lookup(f"{a}/big2")
        f1 = v.open_member(big1)
        head = f1.read(10)
        with v.open_member(big2) as f2:  # other volumes, fetched while big1's is held
            assert f2.read() == (src / "big2").read_bytes()
        assert head + f1.read() == (src / "big1").read_bytes()
        f1.close()
        n = source.counts["volumes"]
        assert v.read_member(big2, (3 << 20) - 4, 10) == (src / "big2").read_bytes()[-4:]
        assert source.counts["volumes"] == n  # the last volume of big2 was kept
        assert len(list(source.dir.iterdir())) <= 3  # one kept, plus the index files
    source.close()
    d.close()


def test_xattrs_over_the_cap_are_a_marker_not_the_values():
    from odbackupd.snapshot.incremental import XATTR_CAP, xattr_fields, xattrs_of

    small = [(b"SCHILY.xattr.user.a", b"\0\xff"), (b"GNU.dumpdir", b"Yf\0\0")]
    assert xattr_fields(small) == {"x": {"user.a": "AP8="}}
    assert xattrs_of(xattr_fields(small)) == {"user.a": b"\0\xff"}
    big = [(b"SCHILY.xattr.user.a", bytes(XATTR_CAP)), (b"SCHILY.xattr.user.b", b"1")]
    assert xattr_fields(big) == {"xl": XATTR_CAP + len("user.a") + len("user.b") + 1}
    assert xattrs_of(xattr_fields(big)) is None  # read from the tar header
    assert xattr_fields([]) == {} and xattrs_of({}) == {}


@pytest.mark.parametrize("lie", ["rdev", "xattr"])
def test_device_numbers_and_xattrs_that_do_not_read_are_refused(setup, tmp_path, lie):
    src = tmp_path / "src"
    src.mkdir()
    os.mkfifo(src / "fifo")
    (src / "f").write_text("x")
    os.setxattr(src / "f", "user.a", b"1")
    if IS_ROOT:
        os.mknod(src / "null", stat.S_IFCHR | 0o644, os.makedev(1, 3))
    setup.write([src])
    snap = Runs(setup).run().result.manifest.snapshot
    a = str(src).lstrip("/")

    def edit(recs: list[dict]) -> None:
        for r in recs:
            if lie == "rdev":
                for c in r.get("c", []):
                    if c[0] == "fifo":  # a device with numbers that are not two numbers
                        c[1] = "c"
                        c[11:] = [[1, "3"]]
            elif "x" in r:
                r["x"] = {"user.a": "not base64!"}

    rewrite_index(setup.dest, snap, edit)
    _, _, v = _open(setup)
    with v, pytest.raises(IntegrityError, match="refused"):
        n = v.lookup(f"{a}/fifo" if lie == "rdev" else f"{a}/f")
        v.xattrs(n)


def test_a_file_source_and_the_json_rows_carry_them(setup, tmp_path):
    f = tmp_path / "lone"
    f.write_text("x")
    os.setxattr(f, "user.only", b"me")
    setup.write([f])
    Runs(setup).run()
    _, _, v = _open(setup)
    with v:
        assert v.xattrs(v.lookup(str(f).lstrip("/"))) == {"user.only": b"me"}
    if IS_ROOT:
        src = tmp_path / "src"
        src.mkdir()
        os.mknod(src / "tty", stat.S_IFCHR | 0o620, os.makedev(4, 1))
        cfg = setup.write([src])
        Runs(setup).run()
        rows = odjson("--config", str(cfg), "ls", "t", str(src).lstrip("/"))["entries"]
        assert [(r["name"], r["device"]) for r in rows] == [("tty", [4, 1])]
