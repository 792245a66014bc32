"""What the index records beyond names and modes, seen through ``odctl mount`` and
``odctl ls --long``: device numbers, extended attributes (user.*, security.capability, POSIX
ACLs as the archive holds them), a source directory's own mode, owner and mtime; and an
index written before them still mounts."""
from __future__ import annotations

import errno
import os
import re
import stat
import struct
import subprocess
from pathlib import Path

import pytest

from tests.browse.helpers import rewrite_index
from tests.snapshot.treegen import IS_ROOT

from .conftest import Mount, odctl
from .test_mount import _backup

pytestmark = [pytest.mark.usefixtures("fuse"),
              pytest.mark.skipif(not IS_ROOT, reason="mknod and security.* xattrs need root")]

CAP = struct.pack("<IIIII", 0x02000000, 1 << 12, 0, 0, 0)  # VFS_CAP_REVISION_2: cap_net_admin
ACL = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in [
    (0x01, 6, 0xFFFFFFFF), (0x02, 4, 1000), (0x04, 4, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF),
    (0x20, 0, 0xFFFFFFFF)])  # user::rw- user:1000:r-- group::r-- mask::r-- other::---


def _tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "conf").mkdir(parents=True)
    os.mknod(src / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(src / "disk", stat.S_IFBLK | 0o660, os.makedev(259, 70000))  # a minor over 255
    (src / "tagged").write_text("x")
    os.setxattr(src / "tagged", "user.comment", b"plain text")
    os.setxattr(src / "tagged", "user.binary", bytes(range(256)))
    (src / "ping").write_bytes(b"\x7fELF")
    os.chmod(src / "ping", 0o755)
    os.setxattr(src / "ping", "security.capability", CAP)
    (src / "shared").write_text("acl")
    os.setxattr(src / "shared", "system.posix_acl_access", ACL)
    os.setxattr(src / "conf", "user.dir", b"on a directory")
    os.chown(src, 1234, 5678)
    os.chmod(src, 0o750)
    os.utime(src, ns=(1_500_000_000_000_000_007, 1_500_000_000_000_000_007))
    return src


def _xattrs(p: Path) -> dict[str, bytes]:
    return {n: os.getxattr(p, n, follow_symlinks=False)
            for n in sorted(os.listxattr(p, follow_symlinks=False))}


def _getfattr(p: Path) -> list[str]:
    out = subprocess.run(["getfattr", "--absolute-names", "-d", "-m", "-", "-e", "base64", str(p)],
                         capture_output=True, text=True, check=True).stdout
    return out.splitlines()[1:]  # without "# file: PATH"


def test_devices_xattrs_and_the_source_directory_through_the_mount(setup, tmp_path):
    src = _tree(tmp_path)
    cfg = setup.write([src], extra="full_every = 5\n")
    _backup(cfg)
    (src / "new").write_text("y")  # an incremental: the other files' data stays in the full
    os.utime(src, ns=(1_500_000_000_000_000_007, 1_500_000_000_000_000_007))
    inc = _backup(cfg)
    with Mount(cfg, tmp_path / "mnt") as mnt:
        for snap in os.listdir(mnt.path):
            inside = mnt.path / snap / str(src).lstrip("/")
            if snap == "latest":
                continue
            assert os.stat(inside / "null").st_rdev == os.makedev(1, 3)
            assert stat.S_ISCHR(os.stat(inside / "null").st_mode)
            assert os.stat(inside / "disk").st_rdev == os.makedev(259, 70000)
            for name in ("tagged", "ping", "shared", "conf", "null"):
                assert _xattrs(inside / name) == _xattrs(src / name), name
                assert _getfattr(inside / name) == _getfattr(src / name), name
            assert os.getxattr(inside / "ping", "security.capability") == CAP
            with pytest.raises(OSError) as e:
                os.getxattr(inside / "tagged", "user.missing")
            assert e.value.errno == errno.ENODATA
            with pytest.raises(OSError) as e:
                os.setxattr(inside / "tagged", "user.new", b"1")
            assert e.value.errno == errno.EROFS
            with pytest.raises(OSError) as e:
                os.removexattr(inside / "tagged", "user.comment")
            assert e.value.errno == errno.EROFS
            top, orig = os.stat(inside), os.stat(src)
            assert (top.st_mode, top.st_uid, top.st_gid, top.st_mtime_ns) == \
                (orig.st_mode, orig.st_uid, orig.st_gid, orig.st_mtime_ns) == \
                (stat.S_IFDIR | 0o750, 1234, 5678, 1_500_000_000_000_000_007)
        ls = subprocess.run(["ls", "-l", str(mnt.path / "latest" / str(src).lstrip("/"))],
                            capture_output=True, text=True, check=True).stdout
        assert re.search(r"^c\S+ +1 root root +1, +3 .* null$", ls, re.M), ls
        assert re.search(r"^b\S+ +1 root root +259, +70000 .* disk$", ls, re.M), ls
        assert re.search(r"^-\S+\+ .* shared$", ls, re.M), ls  # ls(1) sees the ACL
    assert mnt.returncode == 0, mnt.stderr
    long = odctl("--config", str(cfg), "ls", "t", inc["snapshot"], str(src).lstrip("/"), "--long")
    assert long.returncode == 0, long.stderr
    rows = {ln.split()[-1]: ln for ln in long.stdout.splitlines()}
    mode = {n: stat.filemode(os.lstat(src / n).st_mode) for n in ("null", "disk")}
    assert rows["null"].split()[:5] == [mode["null"], "0", "0", "1,", "3"]
    assert rows["disk"].split()[:5] == [mode["disk"], "0", "0", "259,", "70000"]


def _old_format(recs: list[dict]) -> None:
    """What an index written before device numbers, xattrs and source attributes looks like."""
    recs[0].pop("xattrs")
    for r in recs[1:]:
        for k in ("x", "xl", "s"):
            r.pop(k, None)
        for c in r.get("c", []):
            if c[1] in "cb":
                del c[11:]


def test_an_index_made_before_them_still_mounts(setup, tmp_path):
    src = _tree(tmp_path)
    cfg = setup.write([src])
    snap = _backup(cfg)
    rewrite_index(setup.dest, snap["snapshot"], _old_format)
    with Mount(cfg, tmp_path / "mnt") as mnt:
        inside = mnt.path / "latest" / str(src).lstrip("/")
        assert (inside / "tagged").read_text() == "x"
        st = os.stat(inside / "null")
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0  # not recorded: 0,0 as before
        assert os.listxattr(inside / "tagged") == []  # not recorded: none shown (restore has them)
        assert stat.S_IMODE(os.stat(inside).st_mode) == 0o755  # not recorded: made up as before
    assert mnt.returncode == 0, mnt.stderr
    long = odctl("--config", str(cfg), "ls", "t", snap["snapshot"], str(src).lstrip("/"), "--long")
    assert long.returncode == 0, long.stderr
    null = [ln.split() for ln in long.stdout.splitlines() if ln.endswith(" null")]
    assert null[0][1:5] == ["0", "0", "0,", "0"]


def test_xattrs_too_large_for_the_index_come_from_the_tar_header(setup, tmp_path):
    """An entry whose xattrs are over the index's cap is marked ``xl``: the mount reads its tar
    header (the index here is rewritten as the builder writes one over the cap)."""
    src = _tree(tmp_path)
    cfg = setup.write([src])
    snap = _backup(cfg)

    def over_cap(recs: list[dict]) -> None:
        marked = [r for r in recs if r.get("k", [None])[-1:] == ["tagged"] and "x" in r]
        assert len(marked) == 1
        marked[0]["xl"] = 70_000
        del marked[0]["x"]

    rewrite_index(setup.dest, snap["snapshot"], over_cap)
    with Mount(cfg, tmp_path / "mnt") as mnt:
        inside = mnt.path / "latest" / str(src).lstrip("/")
        assert _xattrs(inside / "tagged") == _xattrs(src / "tagged")
        assert _xattrs(inside / "ping") == {"security.capability": CAP}
    assert mnt.returncode == 0, mnt.stderr
