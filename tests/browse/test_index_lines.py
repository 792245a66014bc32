"""Location lines are found by their key when asked for, the same before and after the
view switches to a dict of every line; a key that begins another key's text, or that
stands inside another line, is not mistaken for it."""

from __future__ import annotations

import json

from odbackupd.snapshot.view import _Lines


def _line(key: list, o: int, v: int) -> str:
    return json.dumps({"k": key, "o": o, "v": v}, separators=(",", ":"))


def test_lines_by_key_lazily_and_all_at_once():
    keys = [[0, "etc"], [0, "etc", "hosts"], [0, "e"], [1], [0, 'x"],"o":1,'], [0, "etc", "ho"]]
    lines = [_line(k, 1000 * i, i + 1) for i, k in enumerate(keys)]
    text = "\n".join(lines) + "\n"
    lazy, eager = _Lines(text), _Lines(text)
    eager.EAGER = 0
    for r in (lazy, eager):
        for k, line in zip(keys, lines, strict=True):
            assert r.get(json.dumps(k, separators=(",", ":"))) == line
        assert r.get('[0,"et"]') is None and r.get('[2]') is None
        assert r.get('"o":1,') is None
