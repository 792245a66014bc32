"""odctl(1)'s command reference says, for each command, what the dispatcher does with it:
the sentence comes from the command's declaration (odctl/dispatch.py), so it cannot drift."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _sections() -> dict[str, str]:
    spec = importlib.util.spec_from_file_location("man_generate", REPO / "man" / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = "\n".join(mod.commands_block())
    parts = re.split(r"^\.SS odctl ", text, flags=re.M)[1:]
    return {p.split("\n", 1)[0]: p for p in parts}


def test_each_command_says_whether_it_needs_the_daemon():
    sections = _sections()

    def said(command: str) -> str:
        return next(v for k, v in sections.items() if k.split(" ")[:len(command.split())]
                    == command.split())

    for command in ("status", "backup-now", "cancel", "reload"):
        assert "Needs the running daemon (exit 6 without it)." in said(command)
    for command in ("restore", "verify", "prune", "config check", "fleet-status", "key export"):
        assert "Works without the daemon." in said(command)
    assert "(and says so on standard error)" in said("jobs")
    assert "given --config or --host, always in odctl" in said("snapshots")
    assert "given --config, always in odctl" in said("notify test")
    assert "Asks the daemon when it runs" in said("login")


def test_pages_render_without_stray_control_characters_or_markup():
    """What `man` shows: no raw control characters (a '\\f' written as a form feed shows its
    font letters as text) and no reStructuredText ``literals`` copied from docstrings."""
    spec = importlib.util.spec_from_file_location("man_generate", REPO / "man" / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for page in mod.PAGES:
        text = mod.render(page)
        bad = sorted({hex(ord(c)) for c in text if ord(c) < 32 and c not in "\n\t"})
        assert not bad, f"{page}: control characters {bad}"
        assert "``" not in text, f"{page}: {text[text.index('``') - 60:text.index('``') + 60]!r}"
