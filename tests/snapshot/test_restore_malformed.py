"""Malformed archive metadata and bad command lines: one line naming the member or the
argument, the documented exit code, never a traceback."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile

import pytest

from .archives import snapshot_of, tar_bytes, ti
from .test_cli import odctl

IS_ROOT = os.geteuid() == 0


def _pax(name: str, data: bytes = b"x", **pax: str) -> tuple[tarfile.TarInfo, bytes]:
    t = ti(name, size=len(data))
    t.pax_headers = dict(pax)
    return t, data


MALFORMED = {
    "nul-in-xattr-name": ([_pax("f", **{"SCHILY.xattr.user.a\0b": "v"})],
                          "f: extended attribute name"),
    "nul-in-owner-name": ([_pax("f", uname="ro\0ot")], "f: owner name contains a NUL byte"),
    "nul-in-path": ([_pax("x", path="a\0b")], "its name contains a NUL byte"),
    "nul-in-symlink": ([(ti("l", tarfile.SYMTYPE), None)], "l: symlink target contains a NUL byte"),
    "non-numeric-mtime": ([_pax("f", mtime="yesterday")],
                          "f: modification time 'yesterday' is not a valid time"),
    "out-of-range-mtime": ([_pax("f", mtime="9" * 40)], "f: modification time '" + "9" * 40),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_metadata_is_named_damage(setup, tmp_path, case):
    members, expect = MALFORMED[case]
    if case == "nul-in-symlink":
        members[0][0].pax_headers = {"linkpath": "/etc\0/passwd"}
    cfg = setup.write([tmp_path])
    snapshot_of(setup.dest, members)
    r = odctl("--config", str(cfg), "restore", "t", "--to", str(tmp_path / "out"))
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 4, r.stderr
    assert expect in r.stderr, r.stderr


@pytest.mark.skipif(not IS_ROOT, reason="device nodes are made only as root")
def test_huge_device_number_is_named_damage(setup, tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:  # base-256 numbers
        dev = ti("dev/huge", tarfile.CHRTYPE)
        dev.devmajor, dev.devminor = 2**40, 1
        tf.addfile(dev)
    cfg = setup.write([tmp_path])
    snapshot_of(setup.dest, buf.getvalue())
    r = odctl("--config", str(cfg), "restore", "t", "--to", str(tmp_path / "out"),
              "--special-files")
    assert "Traceback" not in r.stderr, r.stderr
    assert (r.returncode == 4
            and "dev/huge: device number 1099511627776,1 is out of range" in r.stderr), r.stderr


def test_stream_ending_inside_a_file_is_named(setup, tmp_path):
    raw = tar_bytes([(ti("ok", size=2), b"ok"), (ti("cut", size=10000), os.urandom(10000))])
    cut = raw[: raw.index(b"cut") + 512 + 4000]  # its header and 4000 of its 10000 bytes
    cfg = setup.write([tmp_path])
    snapshot_of(setup.dest, cut, files=2, data_bytes=10002)
    out = tmp_path / "out"
    r = odctl("--config", str(cfg), "restore", "t", "--to", str(out))
    assert "Traceback" not in r.stderr, r.stderr
    assert (r.returncode == 4
            and "cut: the archive ends inside this file's data" in r.stderr), r.stderr
    assert (out / "ok").read_bytes() == b"ok" and not (out / "cut").exists()


def test_bad_restore_arguments_are_one_line_usage_errors(setup, tmp_path):
    cfg = setup.write([tmp_path])
    snapshot_of(setup.dest, [(ti("etc/hosts", size=1), b"h")])
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = [
        (["--to", str(afile)], 2, f"--to {afile} is not a directory"),
        (["--to", str(afile / "below")], 2, f"lies below {afile}, which is not a directory"),
        (["--to", "/proc/odbackupd-restore"], 2, "is under /proc, a kernel pseudo file system"),
        (["--to", str(tmp_path / "o1"), "--path", ".."], 2, "--path ..: '..' cannot name anything"),
        (["--to", str(tmp_path / "o2"), "--path", "."], 2, "--path '.' names the whole snapshot"),
    ]
    for extra, code, expect in cases:
        r = odctl("--config", str(cfg), "restore", "t", *extra)
        assert "Traceback" not in r.stderr, (extra, r.stderr)
        assert r.returncode == code and expect in r.stderr, (extra, r.returncode, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


@pytest.mark.parametrize(
    "command", ["restore", "verify", "snapshots", "prune", "backup-now", "cancel", "login"]
)
def test_job_name_that_is_not_utf8(setup, tmp_path, command):
    cfg = setup.write([tmp_path])
    extra = [b"--to", os.fsencode(tmp_path / "out")] if command == "restore" else []
    r = subprocess.run([sys.executable, "-m", "odctl.cli", "--config", os.fsencode(cfg),
                        command.encode(), b"bad\xffname", *extra], capture_output=True)
    err = r.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err, err
    what = "account" if command == "login" else "job"
    assert r.returncode == 3 and f"no {what} 'bad\\udcffname'" in err, err
