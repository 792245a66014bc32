"""ListSnapshots: the complete snapshots of one series on every destination of its job,
as the rows odctl shows (the same words as the offline listing: a snapshot is
"completed", or "completed with warnings" when files were skipped)."""
from __future__ import annotations

from typing import Any

from ..runner import open_destinations
from ..runstatus import RunStatus
from ..signing import signed_by
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
                for m in list_snapshots(dest, series, config.daemon.hostname).complete:
                    out.append({
                        "id": m.snapshot, "destination": dest.name, "started": m.started,
                        "finished": m.finished, "files": m.files, "data_bytes": m.data_bytes,
                        "stored_bytes": m.stored_bytes, "volumes": len(m.volumes),
                        "status": RunStatus.COMPLETED_WITH_WARNINGS if m.warnings else RunStatus.COMPLETED,
                        "host": m.host, "kind": m.kind, "base": m.base or "", "encrypted": m.encrypted,
                        "sequence": m.sequence, "signed_by": signed_by(m.raw or {}) or "",
                        "warnings": dict(m.warnings),  # counts per kind, as offline
                    })
        finally:
            dest.close()
    return out
