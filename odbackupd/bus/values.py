"""Controller values (plain JSON-like dicts, missing values omitted) as D-Bus variants."""
from typing import Any

from odbackupd.snapshot.volumes import volume_number as volume_index

from .dbuslib import Variant


def to_variant(value: Any) -> Variant:
    """A JSON-like value as a variant: str s, bool b, int x, float d, dict a{sv}, list of str
    as, list of dicts aa{sv}, other lists av. The controller never sends None (omitted keys)."""
    if isinstance(value, bool):
        return Variant("b", value)
    if isinstance(value, int):
        return Variant("x", value)
    if isinstance(value, float):
        return Variant("d", value)
    if isinstance(value, str):
        return Variant("s", value)
    if isinstance(value, dict):
        return Variant("a{sv}", to_asv(value))
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, str) for v in value):
            return Variant("as", list(value))
        if all(isinstance(v, dict) for v in value):
            return Variant("aa{sv}", [to_asv(v) for v in value])
        return Variant("av", [to_variant(v) for v in value])
    return Variant("s", str(value))


def to_asv(d: dict) -> dict[str, Variant]:
    return {str(k): to_variant(v) for k, v in d.items() if v is not None}


def volume_number(progress: dict) -> int:
    """The number of the volume being written: ``vol.000012.zst.age`` → 12 (0 if none)."""
    return volume_index(str(progress.get("volume", ""))) or 0


def num(d: dict, key: str, kind: type = int) -> Any:
    try:
        return kind(d.get(key) or 0)
    except (TypeError, ValueError):
        return kind(0)
