"""A restore that did not put back everything says so, names what is missing and exits non-zero.

Disk full on a real (small) tmpfs, a name too long for the file system, a directory the
user cannot write; a damaged header in the middle of the archive; counts that differ
from the manifest; a missing volume; damaged manifests under verify and restore latest.
"""
from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from odbackupd.destinations.local import LocalDestination
from odbackupd.snapshot.restore import restore_snapshot
from tests.config.conftest import NOBODY, as_unprivileged
from tests.layout import series_dir

from .archives import snapshot_of, tar_bytes, ti
from .test_cli import odctl

IS_ROOT = os.geteuid() == 0


def _files(*specs: tuple[str, bytes]) -> list:
    return [(ti(name, size=len(data)), data) for name, data in specs]


@pytest.fixture
def small_fs(tmp_path):
    """A real 1 MiB tmpfs: the disk that fills up during the restore."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_stops_says_partial_and_leaves_no_truncated_file(setup, tmp_path, small_fs):
    cfg = setup.write([tmp_path])
    members = _files(("a", b"a" * 100_000), ("big", os.urandom(3 << 20)), ("c", b"c" * 10))
    snapshot_of(setup.dest, members)
    r = odctl("--config", str(cfg), "restore", "t", "--to", str(small_fs / "out"))
    assert r.returncode == 1, r.stderr
    assert "big: No space left on device" in r.stderr
    assert ("holds a PARTIAL restore" in r.stderr
            and "every member after that point is missing" in r.stderr)
    assert "Traceback" not in r.stderr
    assert (small_fs / "out" / "a").read_bytes() == b"a" * 100_000
    assert not (small_fs / "out" / "big").exists(), "a truncated file was left looking restored"


def test_name_too_long_is_named_and_the_rest_restored(setup, tmp_path):
    cfg = setup.write([tmp_path])
    long = "n" * 300
    snapshot_of(setup.dest, _files(("d/" + long, b"x"), ("d/ok", b"ok")))
    out = tmp_path / "out"
    r = odctl("--config", str(cfg), "restore", "t", "--to", str(out), "--json")
    assert r.returncode == 1, r.stderr
    res = json.loads(r.stdout)
    assert res["failed"] == [f"d/{long}: File name too long"] and not res["complete"]
    assert (out / "d" / "ok").read_bytes() == b"ok"
    assert "holds a PARTIAL restore" in r.stderr


@pytest.mark.skipif(not IS_ROOT, reason="needs root to act as another user")
def test_unwritable_directory_is_a_failure_not_a_warning(tmp_path):
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="odbackupd-perm-"))
    try:
        os.chmod(base, 0o755)
        m = snapshot_of(base / "dest", _files(("ro/f", b"f"), ("ok", b"ok")))
        out = base / "out"
        (out / "ro").mkdir(parents=True)
        os.chown(out, NOBODY, NOBODY)
        os.chmod(out / "ro", 0o555)
        for p in [base / "dest", *(base / "dest").rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)

        def restore():  # noqa: ANN202
            s = restore_snapshot(LocalDestination("usb", base / "dest"), m, out)
            return s.failed, s.complete, (out / "ok").read_bytes()

        failed, complete, ok = as_unprivileged(restore)
        assert failed == ["ro/f: Permission denied"] and not complete and ok == b"ok"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _broken_header(raw: bytes, offset: int, zero: bool) -> bytes:
    blk = bytearray(raw[offset:offset + 512])
    if zero:
        blk[:] = bytes(512)
    else:
        blk[148:156] = b"9999999\0"  # a checksum that cannot match
    return raw[:offset] + bytes(blk) + raw[offset + 512:]


@pytest.mark.parametrize("zero", [False, True], ids=["bad-checksum", "zero-block"])
def test_bad_header_mid_stream_is_damage_not_the_end(setup, tmp_path, zero):
    cfg = setup.write([tmp_path])
    members = _files(("a", b"a" * 10), ("b", b"b" * 10), ("c", b"c" * 10))
    raw = tar_bytes(members)
    # PAX: a, then b's extended header, then b: find b's ustar header block
    off = _header_offset(raw, "b")
    snapshot_of(setup.dest, _broken_header(raw, off, zero), files=3, data_bytes=30)
    out = tmp_path / "out"
    r = odctl("--config", str(cfg), "restore", "t", "--to", str(out))
    assert r.returncode == 4, r.stderr
    assert ("bad header at archive offset" in r.stderr if not zero
            else "end-of-archive marker" in r.stderr), r.stderr
    assert "holds a PARTIAL restore" in r.stderr
    assert (out / "a").read_bytes() == b"a" * 10
    r = odctl("--config", str(cfg), "verify", "t", "--download")
    assert r.returncode == 4, r.stderr


def _header_offset(raw: bytes, name: str) -> int:
    with tarfile.open(fileobj=__import__("io").BytesIO(raw)) as tf:
        return next(m.offset for m in tf.getmembers() if m.name == name)


def test_counts_that_differ_from_the_manifest_are_damage(setup, tmp_path):
    cfg = setup.write([tmp_path])
    snapshot_of(setup.dest, _files(("a", b"a"), ("b", b"b")), files=5, data_bytes=900)
    r = odctl("--config", str(cfg), "restore", "t", "--to", str(tmp_path / "out"))
    assert r.returncode == 4, r.stderr
    assert "2 files with 2 bytes, the manifest says 5 files with 900 bytes" in r.stderr
    r = odctl("--config", str(cfg), "verify", "t", "--download")
    assert r.returncode == 4 and "the manifest says 5 files" in r.stderr, r.stderr


def test_missing_volume_is_damage(setup, tmp_path):
    cfg = setup.write([tmp_path])
    raw = tar_bytes(_files(("a", b"a" * 5000), ("b", b"b" * 5000)))
    m = snapshot_of(setup.dest, raw, volumes=[raw[:4096], raw[4096:]], files=2, data_bytes=10000)
    (series_dir(setup.dest) / m.snapshot / "vol.000002.zst").unlink()
    r = odctl("--config", str(cfg), "restore", "t", "--to", str(tmp_path / "out"))
    assert r.returncode == 4, r.stderr
    assert "vol.000002.zst is missing" in r.stderr and "PARTIAL" in r.stderr


def test_damaged_newest_manifest_is_reported_not_skipped(setup, tmp_path):
    cfg = setup.write([tmp_path])
    old = snapshot_of(setup.dest, _files(("a", b"old")), snap="20260101T000000Z-aaaaaa")
    new = snapshot_of(setup.dest, _files(("a", b"new")), snap="20260102T000000Z-bbbbbb")
    (series_dir(setup.dest) / new.snapshot / "manifest.json").write_text(
        '{"format": "odbackupd-snapshot", "trunc')
    for ref in ("all", "latest"):
        r = odctl("--config", str(cfg), "verify", "t", ref)
        assert r.returncode == 4, (ref, r.stdout, r.stderr)
        assert new.snapshot in r.stdout + r.stderr and "manifest" in r.stderr
    r = odctl("--config", str(cfg), "restore", "t", "latest", "--to", str(tmp_path / "out"))
    assert r.returncode == 4, r.stderr
    assert new.snapshot in r.stderr and f"odctl restore t {old.snapshot}" in r.stderr
    assert not (tmp_path / "out" / "a").exists(), "restore latest quietly took the older snapshot"
    r = odctl("--config", str(cfg), "restore", "t", old.snapshot, "--to", str(tmp_path / "out"))
    assert r.returncode == 0 and (tmp_path / "out" / "a").read_bytes() == b"old"
    r = odctl("--config", str(cfg), "ls", "t")
    assert r.returncode == 4, r.stderr
    assert new.snapshot in r.stderr and f"odctl ls t {old.snapshot}" in r.stderr
    for ref in (old.snapshot, old.snapshot[:12]):  # reads that folder's manifest only
        r = odctl("--config", str(cfg), "ls", "t", ref)
        assert r.returncode == 0 and r.stdout.split() == ["a"], (ref, r.stderr)


def test_each_warning_is_printed_once(setup, tmp_path):
    cfg = setup.write([tmp_path])
    snapshot_of(setup.dest, _files(("../escape", b"x"), ("ok", b"ok")))
    r = odctl("--config", str(cfg), "restore", "t", "--to", str(tmp_path / "out"))
    assert r.returncode == 4, r.stderr
    assert r.stderr.count("contains '..'") == 1, r.stderr
