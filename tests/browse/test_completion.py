"""The new commands in odctl's bash and zsh completions (generated from the parser)."""

from __future__ import annotations

from tests.odctl.test_completion import _complete
from tests.odctl.test_zsh import complete, zsh  # noqa: F401 - the zsh harness's fixtures


def test_bash_completes_ls_find_diff():
    assert _complete("odctl", "l") == ["login", "logout", "ls"]
    assert sorted(_complete("odctl", "find", "t", "--a")) == ["--all", "--any-encryption"]
    assert {"--long", "--recursive", "--identity", "--host", "--trusted-key"} <= set(
        _complete("odctl", "ls", "--")
    )
    assert _complete("odctl", "diff", "--ho") == ["--host"]


def test_zsh_completes_ls_find_diff(complete):  # noqa: F811
    assert complete("odctl", "di") == ["diff"]
    assert {"--since", "--all", "--identity"} <= set(complete("odctl", "find", "t", "--"))
    assert complete("odctl", "ls", "t", "--rec") == ["--recursive"]
