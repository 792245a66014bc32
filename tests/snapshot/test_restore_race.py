"""Root restoring into a directory another user can write, while that user attacks it.

The attacker is a forked child running as ``nobody``: while root restores, it renames every
directory the restore has just made and puts a symlink to a root-only directory in its
place, over and over. Whatever it manages, nothing outside the target may change: not the
root-only directory's files, nor its mode, owner or times.
"""
from __future__ import annotations

import os
import select
import shutil
import stat
import tarfile
import tempfile
from pathlib import Path

import pytest

from odbackupd.destinations.local import LocalDestination
from odbackupd.snapshot.restore import BadTarget, restore_snapshot
from tests.config.conftest import NOBODY

from .archives import snapshot_of, ti

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the attack needs root restoring and another uid"
)

DIRS = 150
RESTORES = 25


@pytest.fixture
def arena():
    """/tmp/...: a root-only directory with a file in it, and a parent nobody can write."""
    base = Path(tempfile.mkdtemp(prefix="odbackupd-race-"))
    try:
        os.chmod(base, 0o755)
        secret = base / "secret"
        secret.mkdir(mode=0o700)
        (secret / "victim").write_text("original")
        os.chmod(secret / "victim", 0o600)
        shared = base / "shared"
        shared.mkdir()
        os.chown(shared, NOBODY, NOBODY)
        yield base, secret, shared
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _attacker(shared: Path, secret: Path, stop_fd: int) -> None:
    """As nobody: swap each directory of the newest target for a symlink to ``secret``."""
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)
    n = 0
    while not select.select([stop_fd], [], [], 0)[0]:
        try:
            target = shared / max(os.listdir(shared))
            for name in os.listdir(target):
                p = target / name
                if name.startswith("moved") or p.is_symlink() or not p.is_dir():
                    continue
                n += 1
                os.rename(p, target / f"moved{n}")
                os.symlink(secret, p)
        except (OSError, ValueError):
            pass  # the restore or a new target got there first: try again


def _fingerprint(d: Path) -> dict:
    out = {}
    for p in [d, *sorted(d.rglob("*"))]:
        st = os.lstat(p)
        out[str(p)] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns,
                       p.read_bytes() if p.is_file() else b"")
    return out


def test_symlink_swaps_by_another_user_never_reach_outside(arena, tmp_path):
    base, secret, shared = arena
    members = []
    for i in range(DIRS):
        # a directory another user will own and anyone may write, with a root file inside
        members.append((ti(f"d{i:03d}", tarfile.DIRTYPE, mode=0o777, uid=NOBODY, gid=NOBODY,
                           uname="", gname=""), None))
        members.append((ti(f"d{i:03d}/victim", size=6, mode=0o4755, uid=0, gid=0), b"PWNED\n"))
    m = snapshot_of(tmp_path / "dest", members)
    dest = LocalDestination("usb", tmp_path / "dest")
    before = _fingerprint(secret)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(w)
            _attacker(shared, secret, r)
        finally:
            os._exit(0)
    os.close(r)
    refused = 0
    try:
        for k in range(RESTORES):
            target = shared / f"t{k:03d}"
            target.mkdir()
            os.chown(target, NOBODY, NOBODY)  # the other user's directory, restored into by root
            stats = restore_snapshot(dest, m, target, special_files=True)
            # a swap the restore ran into: a member refused, or a directory not given its attributes
            refused += len(stats.refused) + sum("owner, mode and times not set" in w
                                                for w in stats.warnings)
            assert _fingerprint(secret) == before, f"restore {k} changed the root-only directory"
            # the warning says who else can write there
            assert any("writable by its owner nobody" in w for w in stats.warnings)
            assert any(f"{shared}, above the restore target, can be changed" in w
                       for w in stats.warnings)
    finally:
        os.close(w)
        os.waitpid(pid, 0)
    assert _fingerprint(secret) == before
    print(f"swaps the restores ran into: {refused}")
    assert refused > 0, "the attacker never won a race: the test proved nothing"


def test_to_that_is_a_planted_symlink_is_refused(arena, tmp_path):
    base, secret, shared = arena
    m = snapshot_of(tmp_path / "dest", [(ti("victim", size=3), b"new")])
    dest = LocalDestination("usb", tmp_path / "dest")
    link = shared / "restore"
    os.symlink(secret, link)
    os.lchown(link, NOBODY, NOBODY)
    with pytest.raises(BadTarget,
                       match=r"--to .*restore is a symbolic link \(to .*secret\), owned by nobody"):
        restore_snapshot(dest, m, link)
    # a link on the way to --to, planted by another user, is refused as well
    with pytest.raises(BadTarget, match=r"is a symbolic link .* owned by user nobody, "
                                        r"who could point it anywhere"):
        restore_snapshot(dest, m, link / "sub")
    assert (secret / "victim").read_text() == "original" and not (secret / "sub").exists()
    # root's own links on the way (/var/run -> /run style) are followed as before
    real = base / "real"
    real.mkdir()
    os.symlink(real, base / "alias")
    restore_snapshot(dest, m, base / "alias" / "out")
    assert (real / "out" / "victim").read_bytes() == b"new"
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o700
