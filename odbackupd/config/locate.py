"""Find the line of every key in a TOML text.

``tomllib`` returns plain dicts without positions, so problems would lose their line
numbers. This scanner reads the same text once more, only far enough to know which key
path starts on which line: table headers (``[job.etc]``, ``[[x]]``), ``key =`` lines,
dotted keys, keys inside inline tables and the elements of arrays. It runs only on text
that ``tomllib`` has already accepted, so it need not diagnose anything.
"""

from __future__ import annotations

import bisect
import re
import tomllib

from .errors import KeyPath

__all__ = ["KeyLines", "scan_key_lines"]

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_WS = " \t"


class KeyLines:
    """Key path -> line, with lookups that fall back to the enclosing table."""

    def __init__(self) -> None:
        self.explicit: dict[KeyPath, int] = {}  # written out: a header or `key =`
        self.implicit: dict[KeyPath, int] = {}  # created by a dotted key or header

    def line(self, path: KeyPath) -> int | None:
        """The line of *path*, else of its nearest enclosing key or table; None if unknown."""
        for n in range(len(path), 0, -1):
            p = path[:n]
            if p in self.explicit:
                return self.explicit[p]
            if p in self.implicit:
                return self.implicit[p]
        return None


def scan_key_lines(text: str) -> KeyLines:
    return _Scanner(text).run()


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)
        self.newlines = [i for i, c in enumerate(text) if c == "\n"]
        self.out = KeyLines()
        self.aot_index: dict[KeyPath, int] = {}

    def lineno(self, pos: int) -> int:
        return bisect.bisect_left(self.newlines, pos) + 1

    def record(self, path: KeyPath, pos: int, *, parents_from: int = 1) -> None:
        line = self.lineno(pos)
        self.out.explicit.setdefault(path, line)
        for k in range(parents_from, len(path)):
            self.out.implicit.setdefault(path[:k], line)

    # -- lexical helpers ---------------------------------------------------------------

    def skip_ws(self, pos: int, newlines: bool = False) -> int:
        """Skip blanks and comments (and line breaks when *newlines*)."""
        text = self.text
        while pos < self.n:
            c = text[pos]
            if c in _WS or (newlines and c in "\r\n"):
                pos += 1
            elif c == "#":
                end = text.find("\n", pos)
                if end < 0 or not newlines:
                    return self.n if end < 0 else end
                pos = end
            else:
                break
        return pos

    def basic_string_end(self, pos: int) -> int:
        """*pos* at the opening quote of a "basic" string: return the index after it."""
        i = pos + 1
        while i < self.n:
            c = self.text[i]
            if c == "\\":
                i += 2
            elif c == '"':
                return i + 1
            else:
                i += 1
        return self.n

    def multiline_end(self, pos: int, quote: str) -> int:
        """*pos* at an opening triple quote: return the index after the closing one."""
        delim = quote * 3
        i = pos + 3
        while i < self.n:
            if quote == '"' and self.text[i] == "\\":
                i += 2
                continue
            if self.text.startswith(delim, i):
                j = i + 3
                while j < self.n and self.text[j] == quote and j - i < 5:
                    j += 1  # up to two quotes may end the content
                return j
            i += 1
        return self.n

    def parse_key(self, pos: int) -> tuple[tuple[str, ...], int]:
        parts: list[str] = []
        while True:
            pos = self.skip_ws(pos)
            c = self.text[pos] if pos < self.n else ""
            if c == '"':
                end = self.basic_string_end(pos)
                parts.append(tomllib.loads("k = " + self.text[pos:end])["k"])
                pos = end
            elif c == "'":
                end = self.text.find("'", pos + 1)
                parts.append(self.text[pos + 1 : end])
                pos = end + 1
            else:
                m = _BARE.match(self.text, pos)
                if not m:  # not reached on valid TOML
                    return tuple(parts), pos + 1
                parts.append(m.group())
                pos = m.end()
            pos = self.skip_ws(pos)
            if pos < self.n and self.text[pos] == ".":
                pos += 1
                continue
            return tuple(parts), pos

    # -- structure -------------------------------------------------------------------

    def run(self) -> KeyLines:
        table: KeyPath = ()
        pos = 0
        while True:
            pos = self.skip_ws(pos, newlines=True)
            if pos >= self.n:
                return self.out
            if self.text[pos] == "[":
                start = pos
                is_array = self.text.startswith("[[", pos)
                name, pos = self.parse_key(pos + (2 if is_array else 1))
                pos += 2 if is_array else 1
                if is_array:
                    index = self.aot_index.get(name, -1) + 1
                    self.aot_index[name] = index
                    self.record(name, start)
                    table = (*name, index)
                else:
                    table = name
                self.record(table, start)
            else:
                start = pos
                name, pos = self.parse_key(pos)
                pos = self.skip_ws(pos) + 1  # the '='
                path = table + name
                self.record(path, start, parents_from=len(table) + 1)
                pos = self.parse_value(pos, path)

    def parse_value(self, pos: int, path: KeyPath) -> int:
        pos = self.skip_ws(pos)
        text = self.text
        if text.startswith('"""', pos):
            return self.multiline_end(pos, '"')
        if text.startswith("'''", pos):
            return self.multiline_end(pos, "'")
        c = text[pos] if pos < self.n else ""
        if c == '"':
            return self.basic_string_end(pos)
        if c == "'":
            return text.find("'", pos + 1) + 1
        if c == "[":
            pos += 1
            index = 0
            while True:
                pos = self.skip_ws(pos, newlines=True)
                if pos >= self.n or text[pos] == "]":
                    return pos + 1
                if text[pos] == ",":
                    pos += 1
                    continue
                item = (*path, index)
                self.record(item, pos, parents_from=len(item))
                pos = self.parse_value(pos, item)
                index += 1
        if c == "{":
            pos += 1
            while True:
                pos = self.skip_ws(pos, newlines=True)
                if pos >= self.n or text[pos] == "}":
                    return pos + 1
                if text[pos] == ",":
                    pos += 1
                    continue
                start = pos
                name, pos = self.parse_key(pos)
                pos = self.skip_ws(pos) + 1  # the '='
                sub = path + name
                self.record(sub, start, parents_from=len(path) + 1)
                pos = self.parse_value(pos, sub)
        # a number, boolean or date: runs to a delimiter
        end = pos
        while end < self.n and text[end] not in ",]}#\r\n":
            end += 1
        return max(end, pos + 1)
