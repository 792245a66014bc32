"""The state database is a cache: a damaged one is moved aside and the job goes on; a
read-only or full state directory is a one-line error; restore, verify and listing never
need it."""
from __future__ import annotations

import os
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from odbackupd.destinations.local import LocalDestination
from odbackupd.snapshot.catalog import list_snapshots

from .test_kill_points import ROOT, once


def odctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "odctl.cli", *args],
                          capture_output=True, text=True, cwd=ROOT)


def _garbage(db: Path) -> None:
    db.write_bytes(os.urandom(16384))


def _bad_page(db: Path) -> None:
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) >= 3 * page
    data[page:] = os.urandom(len(data) - page)  # every b-tree page but the first
    db.write_bytes(bytes(data))


def _wal_checksum(data: bytes, big: bool, s0: int = 0, s1: int = 0) -> tuple[int, int]:
    words = struct.unpack((">" if big else "<") + f"{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def _bad_wal(db: Path) -> None:
    """A WAL whose frames carry right checksums over wrong pages (what SQLite cannot tell
    from good data until it reads the pages): write a WAL, then rewrite every frame's page
    with garbage and re-checksum it."""
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_autocheckpoint=0")
    con.execute("CREATE TABLE IF NOT EXISTS filler (x TEXT)")
    con.executemany("INSERT INTO filler VALUES (?)", [("x" * 200,)] * 200)
    con.commit()
    wal = bytearray(Path(str(db) + "-wal").read_bytes())
    con.close()  # closing checkpoints and removes the WAL: put the damaged copy back
    magic, _, page = struct.unpack(">III", wal[:12])
    big = magic & 1
    s = _wal_checksum(bytes(wal[:24]), big)
    assert struct.unpack(">II", wal[24:32]) == s
    off = 32
    while off + 24 + page <= len(wal):
        body = bytearray(wal[off + 24: off + 24 + page])
        body[100:] = os.urandom(page - 100)
        wal[off + 24: off + 24 + page] = body
        s = _wal_checksum(bytes(wal[off: off + 8]) + bytes(body), big, *s)
        wal[off + 16: off + 24] = struct.pack(">II", *s)
        off += 24 + page
    Path(str(db) + "-wal").write_bytes(bytes(wal))


@pytest.mark.parametrize("damage", [_garbage, _bad_page, _bad_wal],
                         ids=["garbage", "bad-page", "bad-wal"])
def test_damaged_state_db_is_moved_aside_and_the_job_goes_on(setup, tmp_path, damage):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x\n")
    cfg = setup.write([src])
    assert once(cfg).returncode == 0
    db = setup.state / "state.db"
    damage(db)
    r = once(cfg)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    moved = [p for p in setup.state.iterdir() if p.name.startswith("state.db.damaged-")]
    assert moved, list(setup.state.iterdir())
    assert "moved to" in r.stderr and f"{db}.damaged-" in r.stderr, r.stderr
    assert len(list_snapshots(LocalDestination("usb", setup.dest), "t").complete) == 2
    assert once(cfg).returncode == 0  # the new database works


def test_restore_verify_and_listing_do_not_need_the_state_db(setup, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x\n")
    cfg = setup.write([src])
    assert once(cfg).returncode == 0
    _garbage(setup.state / "state.db")
    for args in (["snapshots", "t"], ["verify", "t", "--download"],
                 ["restore", "t", "--to", str(tmp_path / "o")]):
        r = odctl("--config", str(cfg), *args)
        assert r.returncode == 0, (args, r.stderr)
    assert (tmp_path / "o" / str(src).lstrip("/") / "f").read_text() == "x\n"


@pytest.mark.parametrize("how", ["read-only", "full"])
def test_unwritable_state_dir_is_one_line(setup, tmp_path, how):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x\n")
    cfg = setup.write([src])
    setup.state.mkdir()
    # a tmpfs of its own over the state directory, in a private mount namespace
    mount = (f"mount -t tmpfs -o ro,size=1m tmpfs {setup.state}" if how == "read-only" else
             f"mount -t tmpfs -o size=64k tmpfs {setup.state} && "
             f"(dd if=/dev/zero of={setup.state}/filler bs=4k 2>/dev/null || true)")
    r = subprocess.run(["unshare", "-rm", "sh", "-c",
                        f"{mount} && exec {sys.executable} -m odbackupd.main "
                        f"--config {cfg} --once t"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert str(setup.state / "state.db") in lines[0] and "must be writable" in lines[0]
