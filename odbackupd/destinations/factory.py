"""Build destination objects from configuration: each kind opens its own (config/destkinds.py)."""
from __future__ import annotations

from ..config import Config, destkinds
from ..state import StateStore
from .base import Destination, DestinationError


def open_destination(config: Config, name: str, state: StateStore | None = None) -> Destination:
    if name not in config.destinations:
        raise DestinationError(f"no destination named {name!r} in the configuration")
    d = config.destinations[name]
    kind = destkinds.get(d.type)
    if kind is None:
        raise DestinationError(f"destination {name!r}: unknown type {d.type!r}")
    return kind.open(name, destkinds.settings_of(d), config, state)
