"""The daemon's one-line status: sd_notify ``STATUS=``, the ``StatusLine`` property and
``odctl status``. Pure text from what the controller knows, at most :data:`STATUS_MAX`
characters, one line."""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..snapshot.volumes import volume_number as volume_index

STATUS_MAX = 200


@dataclass(frozen=True)
class StatusFacts:
    stopping: bool
    running: Sequence[tuple[str, dict]]  # (series, progress) of started runs, by name
    jobs: int
    next_run: tuple[float, str] | None  # the soonest scheduled run: (epoch, job)
    reload_error: str | None = None
    last_failure: dict | None = None  # {"job", "run_id", "message"}


def volume_label(name: str) -> str:
    """``vol.000012.zst.age`` → ``vol 12``."""
    n = volume_index(name)
    return name if n is None else f"vol {n}"


def status_line(f: StatusFacts) -> str:
    parts = []
    if f.stopping:
        parts.append("stopping")
    if f.running:
        for name, p in f.running:
            bit = f"running {name}"
            if "percent" in p:
                bit += f" {p['percent']:.0f}%"
            if p.get("volume"):
                bit += f" ({volume_label(p['volume'])})"
            parts.append(bit)
    elif not f.stopping:
        parts.append(f"idle; {f.jobs} job{'' if f.jobs == 1 else 's'}")
        if f.next_run is not None:
            t, n = f.next_run
            parts.append(f"next: {n} at {time.strftime('%Y-%m-%d %H:%M', time.localtime(t))}")
    if f.reload_error:
        parts.append(f"reload failed, old configuration kept: {f.reload_error}")
    if f.last_failure:
        lf = f.last_failure
        parts.append(f"last failure: {lf['job']} (run {lf['run_id']}): {lf['message']}")
    line = "; ".join(parts).replace("\n", " ")
    return line if len(line) <= STATUS_MAX else line[: STATUS_MAX - 1] + "…"
