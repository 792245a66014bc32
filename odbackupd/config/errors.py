"""Problems found in a configuration, each pinned to a file, a line and a key."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ConfigError", "KeyPath", "Problem", "format_key"]

#: A key's position in the merged document: table and key names, and list indexes.
KeyPath = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def format_key(path: KeyPath) -> str:
    """Spell a key path the way a user would find it: ``job."my.job".sources[1]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        name = part if _BARE_KEY.fullmatch(part) else '"' + part.replace('"', '\\"') + '"'
        out += ("." if out else "") + name
    return out


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration.

    ``str(problem)`` is ``file:line: at 'job.etc.volume_size': message``, the shape
    compilers use, so editors and ``grep`` can jump to it.
    """

    file: str | None
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where += f":{self.line}"
        if self.key:
            return f"{where}: at '{self.key}': {self.message}"
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists everything found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)
