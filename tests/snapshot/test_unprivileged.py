"""A backup run by a user who cannot read everything (the daemon's own user, without
CAP_DAC_READ_SEARCH): what it cannot read is reported and counted, the rest is backed up.

The suite runs as root in CI, and root reads everything, so the run happens in a forked
child that dropped to ``nobody`` (``as_unprivileged``); the source, state, spool and
destination live in a fresh directory under /tmp that nobody can reach.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from odbackupd.destinations.local import LocalDestination
from odbackupd.runner import run_job
from odbackupd.snapshot.catalog import find_snapshot
from odbackupd.snapshot.restore import restore_snapshot
from odbackupd.state import StateStore
from tests.config.conftest import NOBODY, as_unprivileged

from .conftest import Setup

IS_ROOT = os.geteuid() == 0


@pytest.fixture
def shared_dir():
    """A directory under /tmp owned by nobody (pytest's tmp_path is root's alone)."""
    d = Path(tempfile.mkdtemp(prefix="odbackupd-nobody-"))
    try:
        os.chmod(d, 0o755)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _give_to_nobody(root: Path) -> None:
    if not IS_ROOT:
        return
    os.chown(root, NOBODY, NOBODY)
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            os.lchown(os.path.join(dirpath, n), NOBODY, NOBODY)


def _run_and_collect(config: object) -> dict:
    """In the unprivileged child: one run of job "t", with what it logged."""
    logged: list[tuple[str, str]] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logged.append((record.levelname, record.getMessage()))

    handler = Collect(logging.WARNING)
    logging.getLogger("odbackupd").addHandler(handler)
    state = StateStore(config.daemon.state_dir / "state.db")  # type: ignore[attr-defined]
    try:
        run = run_job(config, "t", state)
    finally:
        state.close()
        logging.getLogger("odbackupd").removeHandler(handler)
    r = run.result
    return {
        "uid": os.geteuid(), "status": r.status, "message": r.message, "snapshot": r.snapshot,
        "warnings": r.warnings,
        "manifest_warnings": dict(r.manifest.warnings) if r.manifest else None,
        "logged": logged,
    }


def test_unreadable_files_are_reported_and_the_rest_restores(shared_dir, tmp_path):
    src = shared_dir / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    (src / "data").mkdir()
    (src / "data" / "big.bin").write_bytes(os.urandom(3 << 20))  # spans volumes
    (src / "data" / "notes.txt").write_text("readable\n" * 1000)
    setup = Setup(shared_dir)
    _give_to_nobody(shared_dir)
    # root's alone: a key file nobody may read, and a directory nobody may list
    secret = src / "etc" / "shadow"
    secret.write_text("root:$6$secret:19000:0:99999:7:::\n")
    os.chmod(secret, 0o600)
    private = src / "private"
    private.mkdir(mode=0o700)
    (private / "inside.txt").write_text("hidden")
    os.chmod(private, 0o700)
    cfg = setup.write([src], volume_size="1MiB")
    if IS_ROOT:
        os.chown(cfg, NOBODY, NOBODY)

    config = setup.config()  # read here: nobody cannot import from root's Python install
    out = as_unprivileged(lambda: _run_and_collect(config))

    if IS_ROOT:
        assert out["uid"] == NOBODY
    assert out["status"] == "completed with warnings", out["message"]
    assert out["manifest_warnings"] == {"unreadable": 2}
    reported = {(kind, Path(path).name) for kind, path, _msg in out["warnings"]}
    assert reported == {("unreadable", "shadow"), ("unreadable", "private")}
    logged = "\n".join(msg for _level, msg in out["logged"])
    assert f"{secret}: Permission denied" in logged
    assert f"{private}: Permission denied" in logged
    assert "completed with warnings" in logged
    assert "$6$secret" not in logged

    # root restores it: everything nobody could read is there, byte for byte
    dest = LocalDestination("usb", setup.dest)
    manifest = find_snapshot(dest, "t", "latest")
    assert manifest.snapshot == out["snapshot"] and manifest.warnings == {"unreadable": 2}
    restore_to = tmp_path / "restored"
    restore_snapshot(dest, manifest, restore_to)
    got = restore_to / str(src).lstrip("/")
    for rel in ("etc/hosts", "data/big.bin", "data/notes.txt"):
        assert (got / rel).read_bytes() == (src / rel).read_bytes(), rel
    assert not (got / "etc" / "shadow").exists()
    assert (got / "private").is_dir() and not (got / "private" / "inside.txt").exists()


def _run_at(config: object, now: float) -> dict:
    state = StateStore(config.daemon.state_dir / "state.db")  # type: ignore[attr-defined]
    try:
        r = run_job(config, "t", state, clock=lambda: now).result
    finally:
        state.close()
    return {"kind": r.manifest.kind if r.manifest else None, "warnings": r.warnings,
            "status": r.status}


def test_an_incremental_tries_an_unreadable_file_again(shared_dir):
    """A file that could not be read is not in the snapshot: the next incremental must
    not take it for unchanged (and silently leave it out for ever), but read it again."""
    src = shared_dir / "src"
    src.mkdir()
    (src / "ok.txt").write_text("fine")
    setup = Setup(shared_dir)
    _give_to_nobody(shared_dir)
    secret = src / "shadow"
    secret.write_text("root:$6$secret:19000:0:99999:7:::\n")
    os.chmod(secret, 0o600)
    cfg = setup.write([src])
    if IS_ROOT:
        os.chown(cfg, NOBODY, NOBODY)
    config = setup.config()
    now = os.stat(secret).st_ctime + 3600
    first = as_unprivileged(lambda: _run_at(config, now))
    second = as_unprivileged(lambda: _run_at(config, now + 3600))
    assert (first["kind"], second["kind"]) == ("full", "incremental")
    for out in (first, second):
        assert {(k, Path(p).name) for k, p, _m in out["warnings"]} == {
            ("unreadable", "shadow")}, out
