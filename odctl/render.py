"""Output for people (tables, sizes, a progress bar on a TTY) and for programs (--json)."""
from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any


def out_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def iso(ts: float) -> str:
    """RFC 3339 / ISO 8601 in UTC with the "T", as jq's fromdate and every JSON consumer read it."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def size(n: int | None) -> str:
    from odbackupd.config.units import human_size

    return "-" if n is None else human_size(n)


def age(seconds: float) -> str:
    """A coarse age for a table: 45s, 12min, 5h10min, 3d4h."""
    s = int(max(0, seconds))
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if d:
        return f"{d}d{h}h" if h else f"{d}d"
    if h:
        return f"{h}h{m}min" if m else f"{h}h"
    return f"{m}min" if m else f"{s}s"


def use_colour(stream=sys.stdout) -> bool:  # noqa: ANN001
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


_STATE_COLOURS = {"completed": "32", "idle": "32", "logged_in": "32", "failed": "31",
                  "cancelled": "33",
                  "completed with warnings": "33", "cancelling": "33", "stopping": "33"}


def coloured_state(text: str) -> str:
    """A state word in colour on a terminal (never with NO_COLOR or off a TTY)."""
    code = _STATE_COLOURS.get(text) or ("36" if text.startswith("running") else None)
    if code is None or not use_colour():
        return text
    return f"\033[{code}m{text}\033[0m"


_ANSI = re.compile(r"\033\[[0-9;]*m")


def _pad(text: str, width: int) -> str:
    return text + " " * (width - len(_ANSI.sub("", text)))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(_ANSI.sub("", c)))
    bold = ("\033[1m", "\033[0m") if use_colour() else ("", "")
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()
    print(f"{bold[0]}{line}{bold[1]}")
    for r in rows:
        print("  ".join(_pad(c, w) for c, w in zip(r, widths, strict=False)).rstrip())


class Progress:
    """A one-line progress bar on stderr, drawn only on a terminal."""

    def __init__(self, label: str, enabled: bool = True) -> None:
        self.label = label
        self.enabled = enabled and sys.stderr.isatty()
        self._last = 0.0
        self._t0 = time.monotonic()

    def update(self, done: int, total: int | None, *, rate: float | None = None,
               percent: float | None = None, volume: int | None = None) -> None:
        """Redraw (at most 10/s). ``rate``/``percent``/``volume`` come from the daemon when
        it knows them better than this process (backup-now --wait)."""
        now = time.monotonic()
        if not self.enabled or now - self._last < 0.1:
            return
        self._last = now
        if rate is None:
            rate = done / max(now - self._t0, 1e-6)
        if percent is None and total:
            percent = min(100.0, 100.0 * done / total)
        vol = f" vol {volume}" if volume else ""
        if percent is not None:
            width = 30
            fill = int(width * min(percent, 100.0) / 100)
            bar = "#" * fill + "-" * (width - fill)
            of = f"/{size(total)}" if total else ""
            msg = (f"\r{self.label} [{bar}] {percent:5.1f}% {size(done)}{of} "
                   f"{size(int(rate))}/s{vol}")
        else:
            msg = f"\r{self.label} {size(done)} {size(int(rate))}/s{vol}"
        sys.stderr.write(msg[:200] + "\033[K")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
