"""Root running ``odbackupd --once`` in the service's own directories gives back what it made.

The packaged service runs as its own user and owns state_dir, spool_dir and the built-in
destination. Root running a cron or by-hand ``--once`` there used to leave root-owned
state.db, locks, spool files and snapshot folders behind; the service then died on its next
start with an sqlite "readonly database" traceback, and could neither resume nor prune.
Every entry owned by root below such a directory is handed to the directory's owner, before
the run (what an earlier, killed run left) and after it. A directory root owns is left alone.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from .config import Config
from .config.destkinds import directory_of

log = logging.getLogger("odbackupd")


def give_back(dirs: Iterable[Path]) -> list[str]:
    """chown root's entries below each directory owned by another user to that user; returns
    the problems (a file that could not be handed back is named with the command that does)."""
    if os.geteuid() != 0:
        return []
    problems = []
    for d in dirs:
        try:
            top = os.stat(d)
        except OSError:
            continue
        if top.st_uid == 0:
            continue
        for dirpath, dirnames, filenames in os.walk(d):
            for name in dirnames + filenames:
                p = os.path.join(dirpath, name)
                try:
                    if os.lstat(p).st_uid == 0:
                        os.lchown(p, top.st_uid, top.st_gid)
                except FileNotFoundError:
                    continue
                except OSError as e:
                    problems.append(
                        f"{p} stays owned by root ({e.strerror}); the service cannot use it "
                        f"until: chown -R {top.st_uid}:{top.st_gid} {d}")
    for p in problems:
        log.warning("%s", p)
    return problems


def service_dirs(config: Config, job: str) -> list[Path]:
    """state_dir, spool_dir and the job's local destinations."""
    dirs = [config.daemon.state_dir, config.daemon.spool_dir]
    for name in config.jobs[job].destinations:
        path = directory_of(config.destinations.get(name))
        if path is not None:
            dirs.append(path)
    return dirs
