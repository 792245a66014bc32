"""Build source trees with every awkward case, and compare trees byte- and metadata-wise."""
from __future__ import annotations

import os
import random
import stat
from pathlib import Path

IS_ROOT = os.geteuid() == 0


def _xattr_ok(path: Path) -> bool:
    try:
        os.setxattr(path, "user.probe", b"1")
        os.removexattr(path, "user.probe")
        return True
    except OSError:
        return False


def make_awkward_tree(root: Path, seed: int = 1, big: int = 3 << 20) -> Path:
    """A tree exercising what a server's directories hold. Returns the source dir."""
    rnd = random.Random(seed)
    src = root / "src"
    (src / "etc" / "ssh").mkdir(parents=True)
    (src / "empty" / "nested-empty").mkdir(parents=True)
    (src / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    (src / "etc" / "ssh" / "key").write_bytes(rnd.randbytes(1500))
    os.chmod(src / "etc" / "ssh" / "key", 0o600)
    (src / "bin").mkdir()
    (src / "bin" / "tool").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(src / "bin" / "tool", 0o4755 if IS_ROOT else 0o755)
    (src / "shared").mkdir(mode=0o1777)
    os.chmod(src / "shared", 0o1777)
    # data: incompressible, compressible, empty, exactly block-sized
    (src / "data").mkdir()
    (src / "data" / "random.bin").write_bytes(rnd.randbytes(big))
    (src / "data" / "text.log").write_text(
        "".join(f"line {i} of a log file\n" for i in range(60000))
    )
    (src / "data" / "empty").write_bytes(b"")
    (src / "data" / "block").write_bytes(rnd.randbytes(512))
    # links
    os.symlink("../etc/hosts", src / "data" / "hosts-link")
    os.symlink("/nonexistent/target", src / "data" / "dangling")
    os.link(src / "data" / "random.bin", src / "data" / "random-hardlink.bin")
    # names
    (src / "names").mkdir()
    (src / "names" / "space and ünïcödé ✓").write_text("u")
    os.close(os.open(os.fsencode(str(src / "names")) + b"/latin1-\xe9\xff",
                     os.O_CREAT | os.O_WRONLY, 0o644))
    (src / "names" / "newline\nin name").write_text("n")
    deep = src / "long"
    for i in range(6):
        deep = deep / (f"d{i}-" + "x" * 60)
    deep.mkdir(parents=True)
    (deep / ("f" * 200)).write_text("deep")
    # special files
    os.mkfifo(src / "data" / "fifo")
    if IS_ROOT:
        os.mknod(src / "data" / "null-dev", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.chown(src / "etc" / "hosts", 1234, 5678)
        os.lchown(src / "data" / "hosts-link", 4321, 8765)
    if _xattr_ok(src / "etc" / "hosts"):
        os.setxattr(src / "etc" / "hosts", "user.comment", b"plain text")
        os.setxattr(src / "data" / "block", "user.binary", bytes(range(256)))
        os.setxattr(src / "empty", "user.dir", b"on a directory")
    # mtimes with nanoseconds, one before 1970
    os.utime(src / "etc" / "hosts", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    os.utime(src / "data" / "empty", ns=(-86_400_500_000_000, -86_400_500_000_000))
    os.utime(src / "data" / "hosts-link", ns=(1_500_000_000_987_654_321,) * 2,
             follow_symlinks=False)
    os.utime(src / "empty" / "nested-empty", ns=(1_400_000_000_000_000_001,) * 2)
    return src


def snapshot_tree(top: Path) -> dict[bytes, dict]:
    """Everything a restore must reproduce, keyed by path relative to ``top``."""
    out: dict[bytes, dict] = {}
    topb = os.fsencode(str(top))
    inodes: dict[tuple[int, int], bytes] = {}
    for dirpath, dirnames, filenames in os.walk(topb):
        for name in sorted(dirnames) + sorted(filenames):
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, topb)
            st = os.lstat(p)
            d: dict = {
                "type": stat.S_IFMT(st.st_mode),
                "mode": stat.S_IMODE(st.st_mode),
                "uid": st.st_uid, "gid": st.st_gid,
                "mtime_ns": st.st_mtime_ns,
            }
            if stat.S_ISLNK(st.st_mode):
                d["target"] = os.readlink(p)
                d.pop("mode")  # symlink modes are always 0777 on Linux
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    d["content"] = f.read()
                if st.st_nlink > 1:
                    d["link_group"] = inodes.setdefault((st.st_dev, st.st_ino), rel)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                d["rdev"] = st.st_rdev
            try:
                names = os.listxattr(p, follow_symlinks=False)
                d["xattrs"] = {n: os.getxattr(p, n, follow_symlinks=False) for n in sorted(names)}
            except OSError:
                d["xattrs"] = {}
            out[rel] = d
    return out


def assert_same_tree(a: Path, b: Path, *, owners: bool = True, dir_mtimes: bool = True) -> None:
    ta, tb = snapshot_tree(a), snapshot_tree(b)
    assert sorted(ta) == sorted(tb), (
        f"missing: {sorted(set(ta) - set(tb))[:5]}, extra: {sorted(set(tb) - set(ta))[:5]}"
    )
    for rel in ta:
        x, y = dict(ta[rel]), dict(tb[rel])
        if not owners:
            for d in (x, y):
                d.pop("uid"), d.pop("gid")
        if not dir_mtimes and x["type"] == stat.S_IFDIR:
            x.pop("mtime_ns"), y.pop("mtime_ns")
        assert x == y, (
            f"{rel!r} differs:\n"
            f"  source:   { {k: v for k, v in x.items() if k != 'content'} }\n"
            f"  restored: { {k: v for k, v in y.items() if k != 'content'} }"
            + ("\n  (content differs)" if x.get("content") != y.get("content") else "")
        )
