"""A running run's progress as clients show it (odctl's bar, the Job object's properties,
the status line), computed from the builder's :class:`~odbackupd.snapshot.builder.Progress`."""
from __future__ import annotations

from typing import Any

from ..snapshot.builder import Progress


def progress_dict(p: Progress, now: float) -> dict:
    """What was read, what is stored, and a percentage when the previous snapshot's size
    gives an estimate."""
    elapsed = max(now - p.started, 1e-6)
    out: dict[str, Any] = {
        "phase": p.phase, "files": p.files, "data_bytes": p.data_bytes,
        "bytes_done": p.data_bytes, "rate": round(p.data_bytes / elapsed, 1),
        "volume": p.current_volume, "volumes_done": p.volumes_stored,
    }
    if p.estimated_total:
        out["bytes_total"] = p.estimated_total
    if p.phase == "done":
        out["percent"] = 100.0
    else:
        # half for building, half for storing: reading fast and uploading slowly (OneDrive)
        # shows as such, and the figure does not fall back when building ends
        built = p.phase in ("uploading", "finishing")
        estimate = p.estimated_total
        build = 1.0 if built else (min(1.0, p.data_bytes / estimate) if estimate else None)
        if build:
            expected = p.volumes_built / build if p.volumes_built else 0
            store = min(1.0, p.volumes_stored / expected) if expected else 0.0
            out["percent"] = round(min(99.0, 50.0 * (build + store)), 1)
    return out


def never_back(previous: dict | None, now: dict) -> dict:
    """Estimates wobble; the percentage a client sees never goes back."""
    if "percent" in now and previous and now["percent"] < previous.get("percent", 0):
        now["percent"] = previous["percent"]
    return now
