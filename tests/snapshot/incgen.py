"""Changes between snapshots that incrementals get wrong in practice (INCREMENTAL-NOTES.md),
and the helpers that run a job on a clock and restore a chain with stock tools."""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from pathlib import Path

from odbackupd.runner import run_job
from odbackupd.state import StateStore


class Runs:
    """Runs job ``t`` of a Setup, each an hour after the one before (files touched by the
    test are then never "racy": that has a test of its own)."""

    def __init__(self, setup, start: float | None = None) -> None:  # noqa: ANN001
        self.setup = setup
        self.now = start if start is not None else time.time() + 3600

    def run(self, step: float = 3600.0):  # noqa: ANN201
        cfg = self.setup.config()
        state = StateStore(cfg.daemon.state_dir / "state.db")
        try:
            run = run_job(cfg, "t", state, clock=lambda: self.now)
        finally:
            state.close()
        self.now += step
        assert run.result.ok, run.result.message
        return run


def stock_restore(series_dir: Path, chain: list[str], out: Path, key: Path | None, *,
                  one_tar: bool = False) -> subprocess.CompletedProcess:
    """RESTORE.txt's command: every snapshot of the chain in order, its volumes through age
    (or cat) and zstd into GNU tar -G. ``one_tar``: the whole chain through one tar -G -i."""
    out.mkdir(parents=True, exist_ok=True)
    dec = f'age -d -i {key} "$v"' if key else 'cat "$v"'
    tar = f"tar --xattrs --xattrs-include='*' -p -x -G -f - -C {out}"
    if one_tar:
        cmd = (f'for s in {" ".join(chain)}; do for v in $s/vol.*; do {dec}; done; done '
               f'| zstd -d | {tar} -i')
    else:
        cmd = (f'for s in {" ".join(chain)}; do for v in $s/vol.*; do {dec}; done '
               f'| zstd -d | {tar} || exit 1; done')
    r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=series_dir, capture_output=True)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    noise = [ln for ln in r.stderr.decode(errors="replace").splitlines()
             if "implausibly old time stamp" not in ln]
    assert not noise, noise  # no complaint from GNU tar about our dumpdirs or headers
    return r


def level1(src: Path, rnd: random.Random) -> None:
    """Deletions, renames, moves, type changes, chmod, a rewrite with the mtime set back,
    hard links, non-UTF-8 names, an emptied and a deleted subtree, a big new file."""
    os.unlink(src / "data" / "block")                                   # deleted
    os.rename(src / "etc" / "hosts", src / "etc" / "hosts.renamed")     # renamed file
    os.rename(src / "etc" / "ssh", src / "etc" / "ssh-renamed")         # renamed directory
    os.rename(src / "bin" / "tool", src / "data" / "tool")              # moved between directories
    os.unlink(src / "data" / "empty")                                   # file -> directory
    (src / "data" / "empty").mkdir()
    (src / "data" / "empty" / "inside").write_text("was a file")
    os.rmdir(src / "empty" / "nested-empty")                            # directory -> file
    (src / "empty" / "nested-empty").write_text("was a directory")
    os.unlink(src / "data" / "dangling")                                # symlink -> directory
    (src / "data" / "dangling").mkdir()
    os.chmod(src / "data" / "text.log", 0o600)                          # chmod only
    r = src / "data" / "random.bin"                                     # same size, mtime set back
    st = os.stat(r)
    with open(r, "r+b") as f:
        f.write(rnd.randbytes(4096))
    os.utime(r, ns=(st.st_atime_ns, st.st_mtime_ns))
    (src / "data" / "pair-a").write_bytes(rnd.randbytes(3000))          # a new hard-link pair
    os.link(src / "data" / "pair-a", src / "data" / "pair-b")
    names = os.fsencode(str(src / "names"))
    os.unlink(names + b"/latin1-\xe9\xff")                              # non-UTF-8 names
    with open(names + b"/latin1-\xe9\xfe-new", "wb") as f:
        f.write(b"non-utf8")
    deep = src / "long"                                                 # emptied subtree
    for p in sorted(deep.rglob("*"), reverse=True):
        if p.is_file():
            p.unlink()
    shutil.rmtree(src / "shared")                                       # deleted subtree
    (src / "big.bin").write_bytes(rnd.randbytes(3 << 20))               # several volumes


def level2(src: Path, rnd: random.Random) -> None:
    """A swap of two directory names (GNU tar's own -g failed on it), a symlink where a
    directory was, a directory where a symlink was, the new hard link pair split, more
    deletions and a growing log."""
    os.rename(src / "bin", src / "swap")
    os.rename(src / "etc", src / "bin")
    os.rename(src / "swap", src / "etc")
    shutil.rmtree(src / "data" / "dangling")                            # directory -> symlink
    os.symlink("tool", src / "data" / "dangling")
    os.unlink(src / "data" / "hosts-link")                              # symlink -> directory
    (src / "data" / "hosts-link").mkdir()
    (src / "data" / "hosts-link" / "f").write_text("f")
    os.unlink(src / "data" / "pair-b")
    os.unlink(src / "big.bin")
    with open(src / "data" / "text.log", "a") as f:
        f.write("appended\n" * 1000)
    (src / "names" / "space and ünïcödé ✓").write_text("changed")
