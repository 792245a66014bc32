"""odctl's shell completions and help are generated from, or checked against, the argparse tree."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from odbackupd.bus import names

REPO = Path(__file__).resolve().parents[2]


def _generator():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("completions_generate",
                                                  REPO / "completions" / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_completions_match_the_parser():
    gen = _generator()
    assert (REPO / "completions" / "odctl.bash").read_text() == gen.bash_script(), \
        "run: .venv/bin/python completions/generate.py"
    assert (REPO / "completions" / "_odctl").read_text() == gen.zsh_script()


def _complete(*words: str) -> list[str]:
    script = (f'source {REPO / "completions" / "odctl.bash"}; '
              f'COMP_WORDS=({" ".join(repr(w) for w in words)}); '
              f'COMP_CWORD={len(words) - 1}; _odctl; printf "%s\\n" "${{COMPREPLY[@]}}"')
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    return r.stdout.split()


def test_bash_completion_walks_the_command_tree():
    assert "backup-now" in _complete("odctl", "back")
    assert _complete("odctl", "backup-now", "--wa") == ["--wait"]
    assert sorted(_complete("odctl", "--json", "config", "")) == ["check", "sample"]
    assert _complete("odctl", "restore", "--to") == ["--to"]


def test_help_lists_every_exit_code():
    r = subprocess.run([sys.executable, "-m", "odctl.cli", "--help"], capture_output=True,
                       text=True, check=False)
    assert r.returncode == 0
    epilog = r.stdout.split("exit status:")[1]
    for code, meaning in names.EXIT_CODES.items():
        assert f"{code:>3}  {meaning}" in epilog
    # every named D-Bus error maps to a documented exit code
    assert {e.exit for e in names.ERRORS.values()} <= set(names.EXIT_CODES)


def test_path_escaping_round_trips():
    for name in ("etc", "web-1.x", "a_b", "ünï code", "", "9lives"):
        element = names.escape_path_element(name)
        assert element.replace("_", "").isalnum() or element == "_"
        assert names.unescape_path_element(element) == name
