"""The key-line scanner, on the TOML constructs that could fool a line-based reader."""

from __future__ import annotations

import tomllib

from odbackupd.config.load import walk_paths
from odbackupd.config.locate import scan_key_lines

TRICKY = '''\
# comment [not.a.table]
top = 1

[ job . "my.job" ]   # spaces and a quoted name
sources = [
  "/etc",      # a comment with "quotes" and [brackets]
  "/srv/[x]",
  [ "nested",
    "array" ],
]
a.b.c = true
"quoted key" = 'literal # not a comment'
escaped = "a \\" quote [x] = 1"

[job.text]
doc = """
[fake.table]
fake = 1
ends with quotes"""""
lit = \'\'\'
also = "fake"
\'\'\'
inline = { x = 1, y.z = [1, 2], w = { v = "}" } }
date = 1979-05-27 07:32:00Z
after = 2

[[fruit]]
name = "apple"
[[fruit]]
name = "pear"
'''


def test_scanner_finds_every_key_on_its_line():
    lines = scan_key_lines(TRICKY)
    text_lines = TRICKY.splitlines()

    def line_of(snippet: str) -> int:
        [n] = [i for i, line in enumerate(text_lines, 1) if line.lstrip().startswith(snippet)]
        return n

    expect = {
        ("top",): line_of("top ="),
        ("job", "my.job"): line_of("[ job"),
        ("job",): line_of("[ job"),
        ("job", "my.job", "sources"): line_of("sources ="),
        ("job", "my.job", "sources", 0): line_of('"/etc"'),
        ("job", "my.job", "sources", 1): line_of('"/srv/[x]"'),
        ("job", "my.job", "sources", 2): line_of('[ "nested"'),
        ("job", "my.job", "sources", 2, 1): line_of('"array"'),
        ("job", "my.job", "a"): line_of("a.b.c"),
        ("job", "my.job", "a", "b", "c"): line_of("a.b.c"),
        ("job", "my.job", "quoted key"): line_of('"quoted key"'),
        ("job", "my.job", "escaped"): line_of("escaped ="),
        ("job", "text", "doc"): line_of("doc ="),
        ("job", "text", "lit"): line_of("lit ="),
        ("job", "text", "inline"): line_of("inline ="),
        ("job", "text", "inline", "y", "z", 1): line_of("inline ="),
        ("job", "text", "inline", "w", "v"): line_of("inline ="),
        ("job", "text", "date"): line_of("date ="),
        ("job", "text", "after"): line_of("after ="),
        ("fruit", 0): text_lines.index("[[fruit]]") + 1,
        ("fruit", 0, "name"): line_of('name = "apple"'),
        ("fruit", 1, "name"): line_of('name = "pear"'),
    }
    for path, line in expect.items():
        assert lines.line(path) == line, path
    # nothing inside the strings was taken for a key or a table
    assert lines.line(("fake", "table")) is None
    for fake in [("job", "text", "fake"), ("job", "text", "also")]:
        assert fake not in lines.explicit and fake not in lines.implicit
        assert lines.line(fake) == line_of("[job.text]")  # falls back to the table


def test_every_parsed_path_has_an_exact_line():
    """Whatever tomllib reads, the scanner knows where it was written."""
    data = tomllib.loads(TRICKY)
    lines = scan_key_lines(TRICKY)

    known = set(lines.explicit) | set(lines.implicit)
    missing = [p for p in walk_paths(data) if p and p not in known]
    assert missing == []


def test_unknown_paths_fall_back_to_the_enclosing_table():
    lines = scan_key_lines('\n[job.etc]\nsources = ["/etc"]\n')
    assert lines.line(("job", "etc", "nope")) == 2
    assert lines.line(("job", "etc", "sources", 5)) == 3
    assert lines.line(("other",)) is None


def test_implicit_table_prefers_its_own_header():
    text = '[job.etc.sub]\nx = 1\n\n[job.etc]\nsources = ["/etc"]\n'
    lines = scan_key_lines(text)
    assert lines.line(("job", "etc")) == 4
    assert lines.line(("job",)) == 1
