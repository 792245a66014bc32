"""The spool janitor: what earlier runs left behind that this one cannot use.

In the spool, the folders of other snapshots of the series (an interrupted one that is
not resumed); on the destinations, incomplete snapshot folders this host made and will
never finish.
"""

from __future__ import annotations

import logging
import shutil

from ..destinations.base import MANIFEST_NAME
from .catalog import SNAPSHOT_ID_RE
from .runctx import RunContext

log = logging.getLogger("odbackupd.snapshot")


def clean_spool(ctx: RunContext) -> None:
    """Everything in the series' spool but this snapshot's folder; that one is made."""
    d = ctx.spool_root / ctx.name
    if d.is_dir():
        for p in d.iterdir():
            if p.name != ctx.snapshot:
                shutil.rmtree(p, ignore_errors=True)
    ctx.spool.mkdir(parents=True, exist_ok=True, mode=0o700)


def remove_leftovers(ctx: RunContext) -> list[str]:
    """Incomplete snapshot folders of earlier interrupted runs of this host that cannot be
    resumed: in this host's folder and in the old shared layout's, only those the state
    database says this host made (a folder without a manifest names no host: it may be
    another server's upload in progress). Returns ``destination:snapshot`` of each."""
    job, keep = ctx.name, ctx.snapshot
    removed = []
    for d in ctx.dests:
        for folder in (ctx.folder, job):
            for name in d.list_snapshot_dirs(folder):
                if name == keep or (folder == job and not SNAPSHOT_ID_RE.fullmatch(name)):
                    continue
                if MANIFEST_NAME in d.list_objects(folder, name):
                    continue
                if not ctx.state.made_here(job, name):
                    log.info(
                        "job %s: leaving incomplete snapshot folder %s/%s on %s: this host's "
                        "state does not show it made it",
                        job,
                        folder,
                        name,
                        d.describe(),
                    )
                    continue
                log.info("job %s: removing incomplete snapshot %s from %s", job, name, d.describe())
                d.delete_snapshot(folder, name)
                removed.append(f"{d.name}:{name}")
    return removed
