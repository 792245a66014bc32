"""Whether a stored object is the file meant: one rule set for every place that asks.

Asked after each upload and when a resumed run decides what is stored already (the
builder), when the index is stored (``incbuild``), by verify from the destination's
listing or from what it read back, by restore for each fetched volume and for the index
(``restore``, ``chainrestore``). What was read back is a :class:`StoredObject` too, with
the hashes computed while reading.

The rules, in order:

1. nothing stored: ``missing``;
2. another size: ``size`` (and nothing more: hashes of another length say nothing new);
3. each hash both sides know (SHA-256 compared as hex in any case, quickXorHash as the
   exact base64) must agree: ``sha256``, ``quickxor``, every one that differs;
4. with ``need_hash``, at least one hash must have been compared: ``unverifiable``
   otherwise (a size alone does not show the bytes are right).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .base import Destination, DestinationError, Expected, StoredObject

__all__ = ["Mismatch", "check_stored", "expected_of", "matches", "mismatches"]

_NAMES = {"sha256": "SHA-256", "quickxor": "quickXorHash"}


@dataclass(frozen=True)
class Mismatch:
    """One way a stored object is not the expected one."""

    what: str  # "missing", "size", "sha256", "quickxor" or "unverifiable"
    stored: Any = None
    expected: Any = None

    def __str__(self) -> str:
        if self.what == "missing":
            return "missing"
        if self.what == "unverifiable":
            return "no hash to check it by: the destination reports none that the manifest has"
        return f"{_NAMES.get(self.what, self.what)} {self.stored}, expected {self.expected}"


def _hashes(sha256: str | None, quickxor: str | None) -> dict[str, str]:
    out = {}
    if sha256:
        out["sha256"] = sha256.lower()
    if quickxor:
        out["quickxor"] = quickxor
    return out


def mismatches(
    obj: StoredObject | None, expected: Expected, *, need_hash: bool = False
) -> list[Mismatch]:
    """Every way ``obj`` is not ``expected``, by the rules above; [] when it is."""
    if obj is None:
        return [Mismatch("missing")]
    if obj.size != expected.size:
        return [Mismatch("size", obj.size, expected.size)]
    have, want = _hashes(obj.sha256, obj.quickxor), _hashes(expected.sha256, expected.quickxor)
    both = [h for h in want if h in have]
    out = [Mismatch(h, have[h], want[h]) for h in both if have[h] != want[h]]
    if need_hash and not both:
        out.append(Mismatch("unverifiable"))
    return out


def matches(obj: StoredObject | None, expected: Expected) -> bool:
    return not mismatches(obj, expected)


def check_stored(
    dest: Destination, name: str, obj: StoredObject | None, expected: Expected
) -> None:
    """Raise what a run reports when a destination holds a bad copy of what it was given."""
    problems = mismatches(obj, expected)
    if problems:
        raise DestinationError(
            f"{dest.describe()} holds a bad copy of {name}: " + "; ".join(map(str, problems)))


def expected_of(entry: Mapping[str, Any]) -> Expected:
    """What a manifest says of a volume or of the index: size, SHA-256, quickXorHash if any."""
    return Expected(int(entry["size"]), str(entry["sha256"]), entry.get("quickxor") or None)
