"""Traps a careful operator still falls into: root's --once in the service's directories, a
source that is a symlink to a directory."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.config.conftest import NOBODY

from .conftest import Setup
from .test_cli import odbackupd


def test_a_source_that_links_to_a_directory_fails_the_run_and_the_check(setup, tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "f").write_text("data")
    link = tmp_path / "srv-data"
    link.symlink_to(real)
    cfg = setup.write([link])
    r = odbackupd("--config", str(cfg), "--once", "t")
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"source {link} is a symbolic link to the directory {real}" in r.stderr
    assert f'sources = ["{real}"]' in r.stderr and "nothing was backed up" in r.stderr
    assert not any(setup.dest.rglob("manifest.json"))
    r = odbackupd("--config", str(cfg), "--check-config")
    assert r.returncode == 2 and f"{link} is a symbolic link to the directory" in r.stderr, r.stderr
    # a link to a file (/etc/localtime) is a source like any other: the link is what is meant
    flink = tmp_path / "localtime"
    flink.symlink_to(real / "f")
    cfg = setup.write([real, flink])
    r = odbackupd("--config", str(cfg), "--once", "t")
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="root running --once in another user's directories")
def test_root_once_leaves_the_service_user_able_to_run():
    base = Path(tempfile.mkdtemp(prefix="odbackupd-svc-"))
    try:
        os.chmod(base, 0o755)
        svc = Setup(base)  # base/dest, base/state, base/spool as in any other test
        for d in ("state", "spool", "src"):
            (base / d).mkdir()
        (base / "src" / "f").write_text("data")
        # fulls: the second run prunes
        cfg = svc.write([base / "src"], extra="keep_last = 1\nfull_every = 1\n")
        for p in [base / d for d in ("state", "spool", "dest", "src")] + [base / "src" / "f"]:
            os.chown(p, NOBODY, NOBODY)  # the service's user owns its directories
        r = odbackupd("--config", str(cfg), "--once", "t")  # root, by hand or from root's crontab
        assert r.returncode == 0, r.stderr
        rootowned = [str(p) for d in ("state", "spool", "dest") for p in (base / d).rglob("*")
                     if p.lstat().st_uid == 0]
        assert rootowned == [], rootowned
        # the service, as its own user: the state database, locks, resume and retention work
        r = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                            sys.executable, "-m", "odbackupd.main", "--config", str(cfg),
                            "--once", "t"],
                           capture_output=True, text=True, cwd="/",
                           env=dict(os.environ, PYTHONPATH=os.getcwd()))
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        assert "pruned" in r.stdout  # it could delete root's earlier snapshot
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(
    os.geteuid() != 0, reason="needs a file owned by root and a run as another user"
)
def test_the_service_names_a_root_owned_state_file_and_the_chown():
    """State left by a root run before it could hand it back (killed): the service's run says
    which file and which chown, in one line."""
    from odbackupd.state import StateStore

    base = Path(tempfile.mkdtemp(prefix="odbackupd-svc-"))
    try:
        os.chmod(base, 0o755)
        svc = Setup(base)
        for d in ("state", "spool", "src"):
            (base / d).mkdir()
        (base / "src" / "f").write_text("data")
        cfg = svc.write([base / "src"])
        for p in (base / "state", base / "spool", base / "dest", base / "src", base / "src" / "f"):
            os.chown(p, NOBODY, NOBODY)
        StateStore(base / "state" / "state.db").close()  # root's, as a killed root run leaves it
        os.chmod(base / "state" / "state.db", 0o644)
        r = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                            sys.executable, "-m", "odbackupd.main", "--config", str(cfg),
                            "--once", "t"],
                           capture_output=True, text=True, cwd="/",
                           env=dict(os.environ, PYTHONPATH=os.getcwd()))
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert f"{base}/state/state.db is owned by root, not by nobody" in r.stderr, r.stderr
        assert f"chown -R nobody: {base}/state" in r.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)
