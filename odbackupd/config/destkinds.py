"""The registry of destination kinds: what a ``type = "..."`` of ``[destination.NAME]`` brings.

A kind is one module under ``odbackupd/destinations/kinds/`` (found there by name, as
TuneD finds its plugins) that calls :func:`register` with a :class:`DestinationKind`:
its keys (a dataclass of :func:`~.fields.key` fields, as borgmatic gives each hook its
own schema), the rules between them and other tables, its sample table, what it can do
(:class:`Capabilities`) and how to open one. The schema, the sample, the config checks,
the factory (``destinations/factory.py``) and the runner ask this registry, so a new kind
is that module plus its tests.

It lives in ``config`` because the configuration is made from it; it imports nothing of
the destinations, and a kind module imports its implementation only when one is opened,
so loading a configuration never loads ``requests`` or the Graph client.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .kinds import check_name

if TYPE_CHECKING:
    from ..destinations.base import Destination
    from ..state import StateStore
    from .checks import Reporter, Table
    from .schema import Config

__all__ = [
    "BUILTIN_PACKAGE", "HASHES", "Capabilities", "CheckContext", "DestinationKind", "directory_of",
    "get", "kinds", "register", "settings_of", "unregister",
]  # fmt: skip

#: The hashes a destination may report of what it stores (``StoredObject``).
HASHES = ("sha256", "quickxor")

#: Where the built-in kinds are: every module of this package is one.
BUILTIN_PACKAGE = "odbackupd.destinations.kinds"


@dataclass(frozen=True)
class Capabilities:
    """What a kind of destination can do; the code that cares asks this, not the kind's name.

    Only what code outside the kind consults is here: how much space is left, or whether
    deletes skip a recycle bin, each destination answers itself (``space()``, its keys).
    """

    #: The hashes ``list_objects``/``put_file`` report of what is stored (of HASHES): what
    #: verify can check without reading anything back. Empty: verify reads the data.
    hashes: frozenset[str] = frozenset()
    #: Whether uploading several volumes at once pays (a network service), or only
    #: competes for one disk (a local directory: one upload worker).
    parallel_uploads: bool = False


@dataclass
class CheckContext:
    """What a kind's rules may look at besides its own table."""

    accounts: dict[str, Table]
    used_accounts: set[str]  # a kind adds the [account.NAME]s its tables name
    check_sources: bool  # --check-config: also look at the file system


@dataclass(frozen=True, eq=False)
class DestinationKind:
    """One kind of destination. ``settings`` is a frozen dataclass of ``key()`` fields, each
    with a default (a key this kind needs is listed in ``required``)."""

    name: str
    #: For the doc of ``type``: 'a directory, e.g. a mounted disk'.
    summary: str
    settings: type
    #: Opens one: ``open(name, settings, config, state)`` with ``settings`` an instance of
    #: ``self.settings``.
    open: Callable[[str, Any, Config, StateStore | None], Destination]
    capabilities: Capabilities = Capabilities()
    required: tuple[str, ...] = ()
    #: Example tables for the sample: (name, keys including type, comment).
    samples: tuple[tuple[str, dict[str, Any], str], ...] = ()
    #: Rules beyond each key's own check (the required keys are checked before).
    check: Callable[[Reporter, Table, CheckContext], None] | None = None
    #: Where a table stores, as a tuple two destinations storing to one place share; None
    #: when that is not known (a key missing or invalid).
    target: Callable[[Table], tuple | None] | None = None
    #: The key naming a directory of this machine that receives the snapshots, if any
    #: (kept out of sources, drop directories and the daemon's own directories).
    directory_key: str | None = None
    #: A destination named like the kind that exists unless configured: its keys.
    builtin: dict[str, Any] | None = None

    def keys(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.settings))


_kinds: dict[str, DestinationKind] = {}
_loading = False


def _load_builtin() -> None:
    global _loading
    if _loading:
        return
    _loading = True
    package = importlib.import_module(BUILTIN_PACKAGE)
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        importlib.import_module(f"{BUILTIN_PACKAGE}.{info.name}")


def _is_builtin(kind: DestinationKind) -> bool:
    return kind.settings.__module__.startswith(BUILTIN_PACKAGE + ".")


def kinds() -> tuple[DestinationKind, ...]:
    """Every kind: the built-in ones by module name, then the others as registered."""
    _load_builtin()
    found = list(_kinds.values())
    builtin = sorted((k for k in found if _is_builtin(k)), key=lambda k: k.settings.__module__)
    return (*builtin, *(k for k in found if not _is_builtin(k)))


def get(name: object) -> DestinationKind | None:
    """The kind called ``name``, or None (an invalid ``type`` is reported by its key)."""
    _load_builtin()
    return _kinds.get(name) if isinstance(name, str) else None


def register(kind: DestinationKind) -> DestinationKind:
    """Add a kind; its name and keys must be new (one key, one meaning, in every table)."""
    problem = check_name(kind.name)
    if problem:
        raise ValueError(f"destination kind: {problem}")
    if kind.name in _kinds:
        raise ValueError(f"destination kind {kind.name!r} is registered already")
    if not (dataclasses.is_dataclass(kind.settings) and kind.settings.__dataclass_params__.frozen):
        raise ValueError(f"destination kind {kind.name!r}: settings must be a frozen dataclass")
    taken = {key: other.name for other in _kinds.values() for key in other.keys()}
    for f in dataclasses.fields(kind.settings):
        if f.name in ("name", "type") or f.name in taken:
            where = taken.get(f.name, "every destination")
            raise ValueError(f"destination kind {kind.name!r}: key {f.name!r} is a key of {where}")
        if "kind" not in f.metadata:
            raise ValueError(
                f"destination kind {kind.name!r}: {f.name!r} is not declared with key()")
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(
                f"destination kind {kind.name!r}: key {f.name!r} needs a default "
                "(list it in required= when the kind needs it)"
            )
    unknown = sorted(set(kind.capabilities.hashes) - set(HASHES))
    if unknown:
        raise ValueError(f"destination kind {kind.name!r}: unknown hash {unknown[0]!r} "
                         f"(known: {', '.join(HASHES)})")
    for key in (*kind.required, *([kind.directory_key] if kind.directory_key else [])):
        if key not in kind.keys():
            raise ValueError(f"destination kind {kind.name!r}: {key!r} is not one of its keys")
    _kinds[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Remove a kind (for tests that register one of their own)."""
    _kinds.pop(name, None)


def settings_of(destination: Any) -> Any:
    """A ``[destination.NAME]`` (``DestinationConfig``) as its kind's own typed settings."""
    kind = get(destination.type)
    if kind is None:
        raise ValueError(f"destination {destination.name!r}: unknown type {destination.type!r}")
    return kind.settings(**{k: getattr(destination, k) for k in kind.keys()})


def directory_of(destination: Any) -> Path | None:
    """The directory of this machine a configured destination stores to, if any."""
    kind = get(getattr(destination, "type", None))
    if kind is None or kind.directory_key is None:
        return None
    return getattr(destination, kind.directory_key, None)

