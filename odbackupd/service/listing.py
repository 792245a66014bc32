"""ListSnapshots: the complete snapshots of one series on every destination of its job,
each as :func:`odbackupd.jobview.snapshot_entry` describes it (what odctl lists offline too)."""
from __future__ import annotations

from typing import Any

from ..jobview import snapshot_entry
from ..runner import open_destinations
from ..snapshot.catalog import list_snapshots
from ..state import StateStore
from .errors import named_errors


def snapshot_rows(config: Any, job: Any, series: str, state: StateStore | None) -> list[dict]:
    """Blocking (every destination is asked): call it in a worker thread. Raises the
    controller's named errors (NotLoggedIn naming the account, Failed naming the
    destination)."""
    out = []
    for dest in open_destinations(config, job, state):
        try:
            with named_errors(dest.describe()):
                out += [snapshot_entry(m, dest.name)
                        for m in list_snapshots(dest, series, config.daemon.hostname).complete]
        finally:
            dest.close()
    return out
