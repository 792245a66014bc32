"""Sizes and durations as a sysadmin writes them ("64MiB", "1h30min").

Sizes follow the IEC/SI split that `df`, `ls -h --si` and systemd use: ``K``, ``M``,
``G``, ``T`` (with or without ``B``) are decimal, ``KiB`` … ``TiB`` binary, so
``"500M"`` is 500,000,000 bytes and ``"64MiB"`` is 67,108,864. Units are
case-insensitive (nobody sizes backups in bits). Durations use systemd's units, where
``m`` means minutes.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

__all__ = ["format_duration", "format_size", "parse_duration", "parse_size"]

KiB = 1024
MiB = 1024**2
GiB = 1024**3
TiB = 1024**4

_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 1000, "kb": 1000,
    "m": 1000**2, "mb": 1000**2,
    "g": 1000**3, "gb": 1000**3,
    "t": 1000**4, "tb": 1000**4,
    "kib": KiB, "mib": MiB, "gib": GiB, "tib": TiB,
}  # fmt: skip

_DURATION_UNITS: dict[str, float] = {
    "ms": 0.001, "msec": 0.001,
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}  # fmt: skip

_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*")
_DURATION_PART_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)")

SIZE_HINT = "a number of bytes or a size like '64MiB', '20GiB', '500M' or '1.5GiB'"
DURATION_HINT = "a number of seconds or a duration like '90s', '10min', '2h', '1d' or '1h30min'"


def _is_number(value: object) -> bool:
    # A TOML boolean is a Python bool, which is an int: never let `true` mean 1.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_size(s: str | int) -> int:
    """Return the number of bytes that *s* stands for.

    Fractions are allowed with a unit and rounded down to whole bytes ("1.5KiB" is
    1536, "0.3KiB" is 307).
    """
    if isinstance(s, bool) or not isinstance(s, (int, str)):
        raise ValueError(f"invalid size {s!r}: expected {SIZE_HINT}")  # noqa: TRY004
    if isinstance(s, int):
        if s < 0:
            raise ValueError(f"invalid size {s}: must not be negative")
        return s
    text = s.strip()
    if text.startswith("-"):
        raise ValueError(f"invalid size {s!r}: must not be negative")
    m = _SIZE_RE.fullmatch(text)
    if not m:
        raise ValueError(f"invalid size {s!r}: expected {SIZE_HINT}")
    number, unit = m.groups()
    factor = _SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(
            f"invalid size {s!r}: unknown unit {unit!r} (use B, K, KiB, M, MiB, G, GiB, T or TiB)"
        )
    try:
        value = Decimal(number) * factor
    except InvalidOperation:  # pragma: no cover - the regex admits only decimals
        raise ValueError(f"invalid size {s!r}: expected {SIZE_HINT}") from None
    return int(value)


def parse_duration(s: str | int | float) -> float:  # noqa: PYI041 - reads as documented
    """Return the number of seconds that *s* stands for ("1h30min" -> 5400.0)."""
    if _is_number(s):
        if not math.isfinite(s):
            raise ValueError(f"invalid duration {s!r}: must be a finite number")
        if s < 0:
            raise ValueError(f"invalid duration {s!r}: must not be negative")
        return float(s)
    if not isinstance(s, str):
        raise ValueError(f"invalid duration {s!r}: expected {DURATION_HINT}")  # noqa: TRY004
    text = s.strip()
    if text.startswith("-"):
        raise ValueError(f"invalid duration {s!r}: must not be negative")
    if not text:
        raise ValueError(f"invalid duration {s!r}: expected {DURATION_HINT}")
    total = Decimal(0)
    pos = 0
    parts = 0
    while pos < len(text):
        m = _DURATION_PART_RE.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"invalid duration {s!r}: expected {DURATION_HINT}")
        number, unit = m.groups()
        if not unit and parts == 0 and m.end() == len(text):
            unit = "s"  # a bare number in a string: seconds
        factor = _DURATION_UNITS.get(unit.lower() if unit != "M" else "M")
        if factor is None:
            raise ValueError(
                f"invalid duration {s!r}: unknown unit {unit!r} (use ms, s, min, h, d or w)"
            )
        total += Decimal(number) * Decimal(str(factor))
        parts += 1
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return float(total)


def format_size(n: int) -> str:
    """The shortest exact spelling of *n* bytes: 67108864 -> "64MiB"."""
    for unit, factor in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n and n % factor == 0:
            return f"{n // factor}{unit}"
    return str(n)


def human_size(n: int) -> str:
    """A size for people to read, rounded: 4000000 -> "3.8 MiB", 512 -> "512 B"."""
    v = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(v) < 1024 or unit == "TiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return f"{n} B"


def plural(n: int, word: str) -> str:
    """ "1 file", "2 files" (regular English plurals only)."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of a duration: 5400 -> "1h30min"."""
    if seconds != int(seconds) or seconds == 0:
        return f"{seconds:g}s"
    rest = int(seconds)
    out = []
    for unit, factor in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if rest >= factor:
            out.append(f"{rest // factor}{unit}")
            rest %= factor
    return "".join(out)
