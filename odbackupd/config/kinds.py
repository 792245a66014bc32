"""Value kinds: how one key's TOML value is checked and turned into its Python value.

A kind knows three things about a key, so the schema can say each only once: how to
convert what the user wrote (raising :class:`Invalid` with a message that names what
was expected), how to spell a Python value back as TOML (for defaults in the sample
and the docs), and what to call itself in the reference ("size", "list of absolute
paths").

Some 400 lines on purpose: one small class per kind of value, sharing the wording of
their messages (``describe_type``, ``suggest``); a module each would scatter it.
"""

from __future__ import annotations

import datetime
import difflib
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from .units import (
    DURATION_HINT,
    SIZE_HINT,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
)

__all__ = [
    "NAME_RE", "AgeRecipient", "Bool", "Choice", "Cron", "Duration", "Int", "Invalid",
    "Kind", "ListOf", "PathKind", "Size", "Str", "check_name", "describe_type", "suggest",
    "toml_literal",
]  # fmt: skip

#: Job, destination and account names: they end up in file names, OneDrive folder
#: names and D-Bus object paths.
NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
NAME_MAX = 64


class Invalid(ValueError):
    """A value is wrong; ``at`` is the position inside it (list index) when known."""

    def __init__(self, message: str, at: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.at = at


def describe_type(value: object) -> str:
    """What TOML calls the type of *value*, with an article, for error messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (datetime.date, datetime.time)):
        return "a date/time"
    return type(value).__name__  # pragma: no cover - tomllib yields nothing else


def suggest(word: str, candidates: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` when *word* looks like a typo of a candidate, else ``""``."""
    lowered = {c.lower().replace("-", "_"): c for c in candidates}
    key = word.lower().replace("-", "_")
    if key in lowered:
        return f"; did you mean '{lowered[key]}'?"
    close = difflib.get_close_matches(key, list(lowered), n=1, cutoff=0.7)
    return f"; did you mean '{lowered[close[0]]}'?" if close else ""


def toml_literal(value: Any) -> str:
    """Spell a plain (TOML-level) value as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    raise TypeError(f"no TOML spelling for {value!r}")  # pragma: no cover


def check_name(name: str) -> str | None:
    """Why *name* is not a valid job/destination/account name, or None if it is."""
    if not NAME_RE.fullmatch(name):
        return (
            f"invalid name '{name}': use only letters, digits, '_', '.' and '-' "
            "(names become file names and D-Bus object paths)"
        )
    if name in (".", ".."):
        return f"invalid name '{name}': '.' and '..' are not allowed (names become file names)"
    if name.startswith("-"):
        return f"invalid name '{name}': must not start with '-' (it would read as an option)"
    if len(name) > NAME_MAX:
        return f"invalid name '{name[:20]}…': longer than {NAME_MAX} characters"
    return None


class Kind:
    """Base of all kinds; *doc* names the kind in the reference."""

    doc = "value"

    def convert(self, value: Any) -> Any:
        raise NotImplementedError

    def to_raw(self, value: Any) -> Any:
        """The TOML-level spelling of a converted value (for defaults)."""
        return value


class Str(Kind):
    """A string, optionally checked by a function that raises ValueError."""

    def __init__(
        self,
        doc: str = "string",
        *,
        check: Callable[[str], str | None] | None = None,
        allow_empty: bool = False,
    ) -> None:
        self.doc = doc
        self.check = check
        self.allow_empty = allow_empty

    def convert(self, value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid(f"expected a string, got {describe_type(value)}")
        if not value.strip() and not self.allow_empty:
            raise Invalid("must not be empty")
        if self.check is not None:
            try:
                normalised = self.check(value)
            except ValueError as e:
                raise Invalid(str(e)) from None
            if normalised is not None:
                return normalised
        return value


class Choice(Kind):
    """One of a fixed set of strings."""

    def __init__(self, *choices: str) -> None:
        self.choices = choices
        self.doc = (
            " or ".join(f'"{c}"' for c in choices)
            if len(choices) < 3
            else ("one of " + ", ".join(f'"{c}"' for c in choices))
        )

    def convert(self, value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid(f"expected a string, got {describe_type(value)}")
        if value not in self.choices:
            expected = ", ".join(f"'{c}'" for c in self.choices)
            raise Invalid(
                f"invalid value '{value}': expected one of {expected}"
                + suggest(value, self.choices)
            )
        return value


def _range_message(
    minimum: float | None, maximum: float | None, show: Callable[[float], str] = str
) -> str:
    if minimum is not None and maximum is not None:
        return f"must be between {show(minimum)} and {show(maximum)}"
    if minimum is not None:
        return "must not be negative" if minimum == 0 else f"must be at least {show(minimum)}"
    return f"must be at most {show(maximum)}"


class Int(Kind):
    """An integer (never a boolean: TOML's ``true`` is not 1)."""

    def __init__(self, minimum: int | None = None, maximum: int | None = None) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.doc = "integer"
        if minimum is not None or maximum is not None:
            lo = "" if minimum is None else str(minimum)
            hi = "" if maximum is None else str(maximum)
            self.doc = f"integer ({lo}..{hi})" if maximum is not None else f"integer (>= {lo})"

    def convert(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            hint = ""
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                hint = " (write the number without quotes)"
            raise Invalid(f"expected an integer, got {describe_type(value)}{hint}")
        if (self.minimum is not None and value < self.minimum) or (
            self.maximum is not None and value > self.maximum
        ):
            raise Invalid(f"{value} is out of range: {_range_message(self.minimum, self.maximum)}")
        return value


class Bool(Kind):
    doc = "boolean"

    def convert(self, value: Any) -> bool:
        if not isinstance(value, bool):
            hint = ""
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
                hint = " (write true or false without quotes)"
            raise Invalid(f"expected true or false, got {describe_type(value)}{hint}")
        return value


class Size(Kind):
    """A number of bytes, written as an integer or a string with a unit."""

    doc = "size"

    def __init__(
        self,
        minimum: int | None = 0,
        *,
        below: int | None = None,
        maximum: int | None = None,
        multiple_of: int | None = None,
        per_second: bool = False,
    ) -> None:
        self.minimum = minimum
        self.below = below
        self.maximum = maximum
        self.multiple_of = multiple_of
        self.per_second = per_second
        if per_second:
            self.doc = "size per second"

    def convert(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise Invalid(f"expected {SIZE_HINT}, got {describe_type(value)}")
        if self.per_second and isinstance(value, str) and value.rstrip().endswith("/s"):
            value = value.rstrip()[:-2]
        try:
            n = parse_size(value)
        except ValueError as e:
            raise Invalid(str(e)) from None
        shown = value if isinstance(value, str) else n
        if self.minimum is not None and n < self.minimum:
            raise Invalid(f"{shown!r} is too small: must be at least {format_size(self.minimum)}")
        if self.maximum is not None and n > self.maximum:
            raise Invalid(f"{shown!r} is too large: must be at most {format_size(self.maximum)}")
        if self.below is not None and n >= self.below:
            raise Invalid(f"{shown!r} is too large: must be less than {format_size(self.below)}")
        if self.multiple_of and n % self.multiple_of:
            lower = n // self.multiple_of * self.multiple_of
            raise Invalid(
                f"{shown!r} ({n} bytes) is not a multiple of {format_size(self.multiple_of)}"
                + (f"; the nearest below is {format_size(lower)}" if lower else "")
            )
        return n

    def to_raw(self, value: Any) -> Any:
        return None if value is None else format_size(value)


class Duration(Kind):
    """Seconds, written as a number or a string with units ("10min")."""

    doc = "duration"

    def __init__(self, minimum: float = 0.0) -> None:
        self.minimum = minimum

    def convert(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise Invalid(f"expected {DURATION_HINT}, got {describe_type(value)}")
        try:
            seconds = parse_duration(value)
        except ValueError as e:
            raise Invalid(str(e)) from None
        if seconds < self.minimum:
            raise Invalid(
                f"{value!r} is too short: must be at least {format_duration(self.minimum)}"
            )
        return seconds

    def to_raw(self, value: Any) -> Any:
        return None if value is None else format_duration(value)


class PathKind(Kind):
    """A file system path; absolute unless *credential* allows a systemd credential name."""

    def __init__(self, *, credential: bool = False) -> None:
        self.credential = credential
        self.doc = "credential name or absolute path" if credential else "absolute path"

    def convert(self, value: Any) -> Path:
        if not isinstance(value, str):
            raise Invalid(f"expected a path (a string), got {describe_type(value)}")
        if not value:
            raise Invalid("must not be empty")
        if "\0" in value:
            raise Invalid("must not contain a NUL character")
        if self.credential and "/" not in value:
            return Path(value)  # resolved against $CREDENTIALS_DIRECTORY at run time
        if not value.startswith("/"):
            if self.credential:
                raise Invalid(
                    f"'{value}' is neither a systemd credential name (no '/') nor an absolute path"
                )
            raise Invalid(f"'{value}' is not an absolute path (it must start with '/')")
        if ".." in PurePosixPath(value).parts:
            raise Invalid(f"'{value}' must not contain '..'")
        return Path(value)

    def to_raw(self, value: Any) -> Any:
        return None if value is None else str(value)


class ListOf(Kind):
    """An array of items of one kind, converted to a tuple."""

    def __init__(self, item: Kind, *, nonempty: bool = False, unique: bool = False) -> None:
        self.item = item
        self.nonempty = nonempty
        self.unique = unique
        self.doc = f"list of {item.doc}s" if not item.doc.endswith("s") else f"list of {item.doc}"

    def convert(self, value: Any) -> tuple:
        if not isinstance(value, list):
            hint = ' (write it in brackets: ["..."])' if isinstance(value, str) else ""
            raise Invalid(f"expected an array, got {describe_type(value)}{hint}")
        if self.nonempty and not value:
            raise Invalid("must not be empty")
        out = []
        seen: dict[Any, int] = {}
        for i, v in enumerate(value):
            try:
                item = self.item.convert(v)
            except Invalid as e:
                raise Invalid(e.message, (i, *e.at)) from None
            if self.unique:
                if item in seen:
                    raise Invalid(f"duplicate entry {str(v)!r} (also at [{seen[item]}])", (i,))
                seen[item] = i
            out.append(item)
        return tuple(out)

    def to_raw(self, value: Any) -> Any:
        return [self.item.to_raw(v) for v in value]


class Cron(Kind):
    """A cron expression: five fields or an @-macro, as in crontab(5)."""

    doc = "cron expression"
    _MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")

    def convert(self, value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid(f"expected a cron expression (a string), got {describe_type(value)}")
        expr = " ".join(value.split())
        if expr.startswith("@"):
            if expr not in self._MACROS:
                raise Invalid(
                    f"invalid schedule '{value}': unknown macro"
                    + suggest(expr, self._MACROS)
                    + " (use "
                    + ", ".join(self._MACROS)
                    + ")"
                )
            return expr
        fields = expr.split(" ") if expr else []
        if len(fields) != 5:
            raise Invalid(
                f"invalid schedule '{value}': expected 5 fields "
                f"(minute hour day-of-month month day-of-week), got {len(fields)}"
            )
        from croniter import CroniterBadDateError, CroniterError, croniter

        try:
            it = croniter(expr, datetime.datetime(2000, 1, 1))
        except (CroniterError, ValueError, KeyError) as e:
            raise Invalid(f"invalid schedule '{value}': {e}") from None
        try:
            it.get_next(datetime.datetime)
        except CroniterBadDateError:
            raise Invalid(f"schedule '{value}' never fires (no such date)") from None
        return expr


class AgeRecipient(Kind):
    """An age X25519 recipient (``age1…``), checked by the crypto module itself."""

    doc = "age recipient"

    def convert(self, value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid(f"expected an age recipient (a string), got {describe_type(value)}")
        if value.strip().upper().startswith("AGE-SECRET-KEY-"):
            # Never echo any of it: it would end up in logs and terminals.
            raise Invalid(
                "this is a secret identity, not a recipient: put its public key here "
                "(`age-keygen -y KEYFILE` prints it) and keep the identity off this server"
            )
        # Imported here: config must stay importable without the crypto stack, and the
        # age module is the one authority on what a valid recipient is.
        from odbackupd.crypto.age import parse_recipient

        try:
            parse_recipient(value.strip())
        except ValueError as e:
            shown = value if len(value) <= 24 else value[:20] + "…"
            raise Invalid(f"'{shown}': {e}") from None
        return value.strip()
