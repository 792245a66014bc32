"""Build destination objects from configuration."""
from __future__ import annotations

from ..state import StateStore
from .base import Destination, DestinationError
from .local import LocalDestination

BUILTIN_LOCAL = "local"


def open_destination(config: object, name: str, state: StateStore | None = None) -> Destination:
    dests = config.destinations  # type: ignore[attr-defined]
    if name not in dests:
        raise DestinationError(f"no destination named {name!r} in the configuration")
    d = dests[name]
    if d.type == "local":
        # The built-in default destination is created on first use; a configured one must
        # exist, so an unmounted disk is an error rather than a silent write to /.
        create = bool(getattr(d, "create", False)) or name == BUILTIN_LOCAL
        return LocalDestination(name, d.path, create=create)
    if d.type == "onedrive":
        from .onedrive import OneDriveDestination

        account = config.accounts[d.account]  # type: ignore[attr-defined]
        return OneDriveDestination(name, d, account, state=state, daemon=config.daemon)  # type: ignore[attr-defined]
    raise DestinationError(f"destination {name!r}: unknown type {d.type!r}")
