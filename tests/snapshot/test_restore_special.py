"""Special files from a snapshot nobody proved authentic: root does not recreate setuid/setgid
files, file capabilities and device nodes silently. Whoever can write to the destination
could otherwise plant a setuid-root shell or a raw disk device in a root restore."""
from __future__ import annotations

import json
import os
import stat
import struct
import tarfile

import pytest

from odbackupd.destinations.local import LocalDestination
from odbackupd.snapshot.restore import restore_snapshot

from .archives import snapshot_of, ti
from .test_cli import odctl

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="special files are restored only by root")

CAP_NET_RAW = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)  # vfs_cap_data v2, effective


def _specials(root) -> object:  # noqa: ANN001
    su = ti("bin/su", size=4, mode=0o4755, uid=0, gid=0)
    sg = ti("bin/wall", size=4, mode=0o2755, uid=0, gid=0)
    ping = ti("bin/ping", size=4, mode=0o755)
    ping.pax_headers = {
        "SCHILY.xattr.security.capability": CAP_NET_RAW.decode("utf-8", "surrogateescape")
    }
    disk = ti("dev/sda", tarfile.BLKTYPE, mode=0o660, devmajor=8, devminor=0)
    plain = ti("etc/motd", size=2)
    return snapshot_of(root, [(su, b"su!\n"), (sg, b"wal\n"), (ping, b"png\n"), (disk, None),
                              (plain, b"hi")])


def _state(out) -> dict:  # noqa: ANN001
    return {
        "su": stat.S_IMODE(os.stat(out / "bin/su").st_mode),
        "wall": stat.S_IMODE(os.stat(out / "bin/wall").st_mode),
        "cap": "security.capability" in os.listxattr(out / "bin/ping"),
        "dev": (out / "dev/sda").exists(),
    }


def test_not_authentic_root_restore_leaves_special_files_out_and_counts_them(tmp_path):
    m = _specials(tmp_path / "dest")
    dest = LocalDestination("usb", tmp_path / "dest")
    out = tmp_path / "untrusted"
    (out / "dev").mkdir(parents=True)
    (out / "dev" / "sda").write_text("was here")  # left alone: the device is left out, not this
    stats = restore_snapshot(dest, m, out)  # authentic defaults to False
    assert (out / "dev" / "sda").read_text() == "was here"
    (out / "dev" / "sda").unlink()
    assert _state(out) == {"su": 0o755, "wall": 0o755, "cap": False, "dev": False}
    assert stats.special == {"setuid": 2, "capability": 1, "device": 1}
    assert stats.special_left_out == stats.special and not stats.complete
    assert "not verified authentic" in stats.special_reason
    assert (out / "etc/motd").read_bytes() == b"hi" and (out / "bin/su").read_bytes() == b"su!\n"

    out = tmp_path / "authentic"
    stats = restore_snapshot(dest, m, out, authentic=True)
    assert _state(out) == {"su": 0o4755, "wall": 0o2755, "cap": True, "dev": True}
    assert os.getxattr(out / "bin/ping", "security.capability") == CAP_NET_RAW
    assert (stat.S_ISBLK(os.stat(out / "dev/sda").st_mode)
            and os.stat(out / "dev/sda").st_rdev == os.makedev(8, 0))
    assert (stats.special == {"setuid": 2, "capability": 1, "device": 1}
            and not stats.special_left_out)
    assert stats.complete

    out = tmp_path / "asked"
    stats = restore_snapshot(dest, m, out, authentic=True, special_files=False)
    assert _state(out) == {"su": 0o755, "wall": 0o755, "cap": False, "dev": False}
    assert stats.special_left_out == {"setuid": 2, "capability": 1, "device": 1}


def test_odctl_says_what_it_left_out_and_how_to_go_on(setup, tmp_path):
    cfg = setup.write([tmp_path])
    _specials(setup.dest)
    r = odctl("--config", str(cfg), "restore", "t", "--to", str(tmp_path / "a"))
    assert r.returncode == 1, r.stderr
    assert "left out 1 capability attribute, 1 device node, 2 setuid/setgid files" in r.stderr
    assert ("--special-files" in r.stderr and "--no-special-files" in r.stderr
            and "PARTIAL" in r.stderr)
    assert "special files: 1 capability attribute, 1 device node, 2 setuid/setgid files" in r.stdout

    r = odctl("--config", str(cfg), "restore", "t", "--to", str(tmp_path / "b"),
              "--no-special-files", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["special_left_out"] == {"setuid": 2, "capability": 1, "device": 1}
    assert res["special_reason"] == "--no-special-files was given"

    r = odctl("--config", str(cfg), "restore", "t", "--to", str(tmp_path / "c"), "--special-files")
    assert r.returncode == 0, r.stderr
    assert _state(tmp_path / "c") == {"su": 0o4755, "wall": 0o2755, "cap": True, "dev": True}


def test_a_snapshot_verified_against_the_trusted_key_restores_them(setup, tmp_path):
    """The daemon signs what it makes; with its public key, the snapshot is authentic and
    root restores setuid files and devices without being asked."""
    from .test_cli import odbackupd

    src = tmp_path / "src"
    src.mkdir()
    (src / "su").write_bytes(b"su!\n")
    os.chmod(src / "su", 0o4755)
    os.mknod(src / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    cfg = setup.write([src])
    r = odbackupd("--config", str(cfg), "--once", "t")
    assert r.returncode == 0, r.stderr
    pub = tmp_path / "signing.pub"
    r = odctl("--config", str(cfg), "key", "export")
    assert r.returncode == 0, r.stderr
    pub.write_text(r.stdout)
    out = tmp_path / "out"
    r = odctl("--config", str(cfg), "restore", "t", "--to", str(out), "--trusted-key", str(pub))
    assert r.returncode == 0, r.stderr
    got = out / str(src).lstrip("/")
    assert (stat.S_IMODE(os.stat(got / "su").st_mode) == 0o4755
            and stat.S_ISCHR(os.lstat(got / "null").st_mode))
    # no key: left out
    r = odctl("--config", str(cfg), "restore", "t", "--to", str(tmp_path / "plain"))
    assert r.returncode == 1 and "not verified authentic" in r.stderr, r.stderr
