"""Read the main file and its drop-ins into one document that remembers where each key came from.

Drop-ins (``odbackupd.toml.d/*.toml``, in name order, after the main file) merge
table by table: a drop-in can add jobs, destinations or accounts, or set keys of a
table defined elsewhere; a key set again replaces the earlier value (arrays included,
they are not appended to). Every key path keeps the file and line of the place that
set it last, so a problem is reported where the value that causes it was written.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import KeyPath, Problem
from .locate import KeyLines, scan_key_lines

__all__ = ["Document", "dropin_dir", "parse_text", "read_config_files", "read_files", "walk_paths"]

_POSITION = re.compile(
    r"^(?P<msg>.*?)\s*\(at line (?P<line>\d+), column (?P<col>\d+)\)$", re.DOTALL
)
_AT_END = re.compile(r"^(?P<msg>.*?)\s*\(at end of document\)$", re.DOTALL)


@dataclass
class Document:
    """The merged TOML data and, for each key path in it, its (file, line) origin."""

    data: dict[str, Any] = field(default_factory=dict)
    origins: dict[KeyPath, tuple[str, int | None]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def where(self, path: KeyPath) -> tuple[str | None, int | None]:
        """The origin of *path*, else of its nearest enclosing table that has one."""
        for n in range(len(path), 0, -1):
            if path[:n] in self.origins:
                return self.origins[path[:n]]
        return (self.files[0] if self.files else None), None

    def merge(self, data: dict[str, Any], filename: str, text: str) -> None:
        lines = scan_key_lines(text)
        self.files.append(filename)
        self._merge(self.data, data, (), filename, lines)

    def _merge(self, dst: dict, src: dict, path: KeyPath, filename: str, lines: KeyLines) -> None:
        for k, v in src.items():
            p = (*path, k)
            if isinstance(dst.get(k), dict) and isinstance(v, dict):
                self._merge(dst[k], v, p, filename, lines)
                continue
            for old in [o for o in self.origins if o[: len(p)] == p]:
                del self.origins[old]
            dst[k] = v
            for sub in walk_paths(v, p):
                self.origins[sub] = (filename, lines.line(sub))


def walk_paths(value: Any, path: KeyPath = ()) -> Iterator[KeyPath]:
    """Every key path in *value*: tables, keys and list items, parents first."""
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk_paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk_paths(v, (*path, i))


def parse_text(text: str, filename: str) -> tuple[dict[str, Any] | None, list[Problem]]:
    """Parse TOML, turning a syntax error into a Problem with its line."""
    try:
        return tomllib.loads(text), []
    except tomllib.TOMLDecodeError as e:
        message = str(e)
        line = None
        m = _POSITION.match(message)
        if m:
            line = int(m["line"])
            message = f"{m['msg']} (column {m['col']})"
        else:
            m = _AT_END.match(message)
            if m:
                line = _unclosed_start(text)
                message = f"{m['msg']} (reached the end of the file)"
        return None, [Problem(filename, line, "", f"invalid TOML: {message}")]


def _unclosed_start(text: str) -> int:
    """The line where a string or array left open at the end of *text* begins.

    tomllib reports such errors "at end of document". The open value starts on the line
    after the last line boundary up to which the text still parses.
    """
    lines = text.splitlines(keepends=True)
    for k in range(len(lines) - 1, 0, -1) if len(lines) <= 2000 else ():
        try:
            tomllib.loads("".join(lines[:k]))
        except tomllib.TOMLDecodeError:
            continue
        return k + 1
    return 1 if len(lines) <= 2000 else len(lines)


def dropin_dir(path: Path) -> Path:
    """``/etc/odbackupd/odbackupd.toml`` -> ``/etc/odbackupd/odbackupd.toml.d``."""
    return path.with_name(path.name + ".d")


def _read(path: Path) -> tuple[str | None, list[Problem]]:
    try:
        return path.read_text(encoding="utf-8-sig"), []  # a BOM from a Windows editor
    except UnicodeDecodeError as e:
        return None, [Problem(str(path), None, "", f"not valid UTF-8 (byte {e.start})")]
    except OSError as e:
        return None, [Problem(str(path), None, "", f"cannot read: {e.strerror or e}")]


def _dropins(path: Path) -> tuple[list[Path], list[Problem]]:
    directory = dropin_dir(path)
    try:
        entries = sorted(directory.iterdir(), key=lambda p: p.name)
    except FileNotFoundError:
        return [], []
    except NotADirectoryError:
        return [], [Problem(str(directory), None, "", "is not a directory")]
    except OSError as e:
        return [], [Problem(str(directory), None, "", f"cannot read: {e.strerror or e}")]
    # Hidden files are editor and package-manager leftovers (.foo.toml.swp, .dpkg-new).
    return [p for p in entries if p.suffix == ".toml" and not p.name.startswith(".")], []


def read_files(texts: list[tuple[str, str]]) -> tuple[Document, list[Problem]]:
    """Parse and merge (filename, text) pairs in order; any syntax error stops the merge.

    A document with a broken file would report misleading follow-up problems
    (a job naming a destination defined in the broken file), so only syntax errors are
    reported then — of every file, at once.
    """
    parsed = []
    problems: list[Problem] = []
    for filename, text in texts:
        data, errs = parse_text(text, filename)
        problems += errs
        parsed.append((filename, text, data))
    doc = Document()
    if problems:
        return doc, problems
    for filename, text, data in parsed:
        doc.merge(data, filename, text)
    return doc, []


def read_config_files(path: Path) -> tuple[Document, list[Problem]]:
    """Read *path* and its drop-ins."""
    text, problems = _read(path)
    if text is None:
        return Document(files=[str(path)]), problems
    texts = [(str(path), text)]
    dropins, problems = _dropins(path)
    for p in dropins:
        t, errs = _read(p)
        problems += errs
        if t is not None:
            texts.append((str(p), t))
    doc, errs = read_files(texts)
    return doc, problems + errs
