"""completions/_odctl in a real zsh: ``zsh -f`` with compinit finds it on $fpath (its
#compdef line) and completes odctl's subcommands, options and file arguments.

How: a small zsh script starts an interactive ``zsh -f -i`` on a pseudo-terminal (zsh's own
zpty module, as zsh's test suite does), loads compinit, wraps ``compadd`` to print every
match it is given (filtered by what was typed, as zsh filters them), types the words and a
Tab, and reads the matches back until a ``comppostfuncs`` hook says completion ended. The
bash completion's test (test_completion.py) is the model; the committed script's equality
with the generator is checked there.
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

HARNESS = r"""
# zsh -f harness.zsh FPATH_DIR WORDS...: the matches a Tab after WORDS offers, one a line
zmodload zsh/zpty || exit 3
zpty z zsh -f -i
zpty -w z "PS1='<prompt>' RPS1=; fpath=(${(q)1} \$fpath)"
zpty -w z 'autoload -Uz compinit && compinit -u -D'
zpty -w z 'compadd() { if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return; fi; local -a __m; builtin compadd -O __m "$@"; (( $#__m )) && print -rl -- "<m>"${^__m}; builtin compadd "$@"; }'
zpty -w z 'comppostfuncs=(__done); __done() { print -r -- "<done>"; }'
zpty -w z 'print -r -- "<ready>"'
local line
while zpty -r z line; do [[ $line == '<ready>'* ]] && break; done
zpty -n -w z "${(j: :)@[2,-1]}"$'\t'
while zpty -r z line; do
  line=${${line%$'\n'}%$'\r'}
  [[ $line == *'<done>'* ]] && { print -r -- '<done>'; break; }
  [[ $line == *'<m>'* ]] && print -r -- ${line##*<m>}
done
zpty -d z
"""  # noqa: E501 - the compadd wrapper is one line typed into the pty


@pytest.fixture(scope="module")
def zsh() -> str:
    path = shutil.which("zsh")
    if path is None:
        pytest.fail("zsh is not installed: run scripts/setup-dev.sh (apt-get install zsh)")
    return path


@pytest.fixture
def complete(zsh: str, tmp_path: Path):  # noqa: ANN201
    """complete(*words) -> the matches zsh offers after ``words`` (the last one is the
    word being completed, '' for a new one), in an otherwise empty working directory."""
    harness = tmp_path / "harness.zsh"
    harness.write_text(HARNESS)
    cwd = tmp_path / "cwd"
    cwd.mkdir()

    def run(*words: str) -> list[str]:
        r = subprocess.run([zsh, "-f", str(harness), str(REPO / "completions"), *words], cwd=cwd,
                           capture_output=True, text=True, timeout=30)
        lines = r.stdout.splitlines()
        assert r.returncode == 0 and lines and lines[-1] == "<done>", \
            (r.returncode, r.stdout, r.stderr)
        return sorted(set(lines[:-1]))

    run.cwd = cwd  # type: ignore[attr-defined]
    return run


def _subcommands() -> list[str]:
    """odctl's top-level commands, from its argparse tree (what the completion is made of)."""
    spec = importlib.util.spec_from_file_location("completions_generate",
                                                  REPO / "completions" / "generate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    return sorted(k for k in gen._tree(gen._parser()) if k and " " not in k)


def test_zsh_completes_subcommands(complete):
    assert complete("odctl", "back") == ["backup-now"]
    assert complete("odctl", "log") == ["login", "logout"]
    everything = _subcommands()
    assert {"status", "backup-now", "cancel", "login", "restore"} <= set(everything)
    assert complete("odctl", "") == everything  # no options offered without a '-'
    assert complete("odctl", "--json", "config", "") == ["check", "sample"]


def test_zsh_completes_options_of_the_subcommand(complete):
    assert complete("odctl", "backup-now", "--wa") == ["--wait"]
    assert complete("odctl", "login", "acct", "--b") == ["--browser"]
    assert "--restore" not in complete("odctl", "restore", "--")
    assert {"--to", "--path", "--identity", "--destination"} \
        <= set(complete("odctl", "restore", "--"))


def test_zsh_completes_file_arguments(complete):
    (complete.cwd / "restore-here").mkdir()
    (complete.cwd / "key.txt").write_text("")
    assert "restore-here" in complete("odctl", "restore", "t", "--to", "rest")
    assert complete("odctl", "verify", "t", "--identity", "ke") == ["key.txt"]
