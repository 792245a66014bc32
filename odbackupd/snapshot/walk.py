"""Walk a job's sources in a stable order, applying excludes.

The order is depth-first with each directory's entries sorted by their raw name bytes, so
it is the lexicographic order of the entries' path-component tuples. That makes a position
in the walk expressible as a key (``Entry.key``), which is what lets an interrupted
snapshot resume: everything with a key up to the checkpoint's was already archived.
"""
from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

Key = tuple  # (source index, *path components as bytes)


@dataclass(frozen=True)
class Entry:
    path: bytes  # absolute path on disk
    arcname: bytes  # name inside the archive (absolute path without the leading "/")
    st: os.stat_result  # lstat
    key: Key
    # a directory's children as the walk will yield them, (name, lstat) in name order,
    # listed before the directory itself is yielded (what an incremental's dumpdir needs);
    # () for a directory the walk does not descend into, None for anything else
    children: tuple[tuple[bytes, os.stat_result], ...] | None = None


@dataclass
class WalkProblem:
    path: bytes
    kind: str  # "unreadable", "vanished", "skipped"
    message: str


def _glob_to_regex(pattern: str) -> str:
    """Translate a shell-style pattern with ``**`` into a regular expression.

    ``*`` and ``?`` never cross a ``/``; ``**`` matches any number of path components
    (including none); ``[...]`` character classes are kept.
    """
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                # "/**/" matches "/" too; a trailing "**" matches everything below
                if i + 2 < n and pattern[i + 2] == "/":
                    out.append("(?:.*/)?")
                    i += 3
                    continue
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] == "!" else i + 1)
            if j == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


class ExcludeMatcher:
    """Exclude patterns as sysadmins write them.

    - no ``/`` in the pattern: matched against the entry's name (``*.tmp``, ``.cache``);
    - starting with ``/``: matched against the whole absolute path (``/srv/git/**/cache``);
    - other patterns with a ``/``: matched against the end of the path
      (``node_modules/*.js`` excludes that anywhere).
    A matching directory is not descended into.
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = list(patterns)
        name_res, path_res = [], []
        for p in patterns:
            p = p.rstrip("/") or "/"
            if "/" not in p:
                name_res.append(_glob_to_regex(p))
            elif p.startswith("/"):
                path_res.append(_glob_to_regex(p))
            else:
                path_res.append("(?:.*/)?" + _glob_to_regex(p))
        self._name = re.compile("(?:" + "|".join(name_res) + r")\Z", re.S) if name_res else None
        self._path = re.compile("(?:" + "|".join(path_res) + r")\Z", re.S) if path_res else None

    def excluded(self, path: bytes) -> bool:
        if self._name is None and self._path is None:
            return False
        s = os.fsdecode(path)
        if self._name is not None and self._name.match(s.rsplit("/", 1)[-1]):
            return True
        return self._path is not None and self._path.match(s) is not None


@dataclass
class Walker:
    sources: Sequence[bytes]
    exclude: ExcludeMatcher = field(default_factory=lambda: ExcludeMatcher(()))
    one_file_system: bool = True
    on_problem: Callable[[WalkProblem], None] = lambda p: None
    skip_paths: frozenset[bytes] = frozenset()  # e.g. the spool dir, never archived

    def walk(self, after: Key | None = None) -> Iterator[Entry]:
        """Yield entries in key order; with ``after``, only those with a greater key.

        Subtrees entirely before ``after`` are not even listed.
        """
        for idx, src in enumerate(self.sources):
            if after is not None and idx < after[0]:
                continue
            src = os.path.normpath(src)
            try:
                st = os.lstat(src)
            except OSError as e:
                self._problem(src, e)
                continue
            key: Key = (idx,)
            kids: list[tuple[bytes, os.stat_result]] | None = None
            if stat.S_ISDIR(st.st_mode):
                kids = self._children(src, key, after)
            if after is None or key > after:
                yield Entry(src, src.lstrip(b"/") or b".", st, key, _kids(kids))
            if kids:
                yield from self._walk_dir(src, st.st_dev, key, kids, after)

    def _problem(self, path: bytes, e: OSError) -> None:
        if e.errno == errno.ENOENT:
            self.on_problem(WalkProblem(path, "vanished", "vanished before it could be read"))
        else:
            self.on_problem(WalkProblem(path, "unreadable", e.strerror or str(e)))

    def _walk_dir(
        self, top: bytes, dev: int, top_key: Key, kids: list, after: Key | None
    ) -> Iterator[Entry]:
        # explicit stack of (dir path, dir key, (name, lstat) remaining), depth first
        stack: list[tuple[bytes, Key, list[tuple[bytes, os.stat_result]]]] = [(top, top_key, kids)]
        while stack:
            dirpath, dkey, remaining = stack[-1]
            if not remaining:
                stack.pop()
                continue
            name, st = remaining.pop()
            path = dirpath.rstrip(b"/") + b"/" + name
            key = dkey + (name,)
            sub: list | None = None
            if stat.S_ISDIR(st.st_mode):
                # a mount point is archived as an empty directory, like tar
                sub = ([] if self.one_file_system and st.st_dev != dev
                       else self._children(path, key, after))
            if after is None or key > after:
                yield Entry(path, path.lstrip(b"/"), st, key, _kids(sub))
            if sub:
                stack.append((path, key, sub))

    def _children(
        self, path: bytes, dkey: Key, after: Key | None
    ) -> list[tuple[bytes, os.stat_result]]:
        """The entries of a directory the walk yields, lstat'ed, in reverse name order
        (popped from the end: ascending); subtrees wholly before ``after`` are left out."""
        try:
            with os.scandir(path) as it:
                names = [e.name for e in it]
        except OSError as e:
            self._problem(path, e)
            return []
        names.sort(reverse=True)
        out = []
        base = path.rstrip(b"/") + b"/"
        for name in names:
            key = dkey + (name,)
            if after is not None and key < after and not _is_prefix(key, after):
                continue  # this whole subtree comes before the resume point
            child = base + name
            if child in self.skip_paths or self.exclude.excluded(child):
                continue
            try:
                out.append((name, os.lstat(child)))
            except OSError as e:
                self._problem(child, e)
        return out


def _kids(kids: list | None) -> tuple | None:
    return None if kids is None else tuple(reversed(kids))


def _is_prefix(key: Key, of: Key) -> bool:
    return len(key) < len(of) and of[: len(key)] == key


def key_to_json(key: Key) -> list:
    return [key[0]] + [os.fsdecode(c) for c in key[1:]]


def key_from_json(data: list) -> Key:
    return (int(data[0]),) + tuple(os.fsencode(c) for c in data[1:])
