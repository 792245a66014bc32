"""``key()``: how a section dataclass declares one configuration key.

Its own module so that section schemas kept in modules of their own (``notify_schema``)
and the main schema use one declaration, without importing each other.
"""

from __future__ import annotations

from dataclasses import MISSING, field
from typing import Any

from .kinds import Kind, check_name

__all__ = ["key", "name_ref"]


def key(
    default: Any = MISSING,
    *,
    kind: Kind,
    doc: str,
    example: Any,
    default_factory: Any = MISSING,
    default_doc: str | None = None,
) -> Any:
    """Declare a configuration key: a dataclass field carrying its schema."""
    meta = {"kind": kind, "doc": doc, "example": example, "default_doc": default_doc}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def name_ref(value: str) -> str:
    """A ``Str`` check for a key naming another table (a destination, account, notifier)."""
    problem = check_name(value)
    if problem:
        raise ValueError(problem)
    return value
