"""Shared helpers for the config tests: real age recipients and problem lookup."""

from __future__ import annotations

import subprocess

import pytest

from odbackupd.config import ConfigError, Problem, load_config_text


@pytest.fixture(scope="session")
def recipient() -> str:
    """A real X25519 recipient, made by the reference age implementation."""
    out = subprocess.run(["age-keygen"], check=True, capture_output=True, text=True).stdout
    return next(line.split()[-1] for line in out.splitlines() if "public key:" in line)


def marked_line(text: str, marker: str = "# <--") -> int:
    """The 1-based line of *text* that carries *marker*."""
    lines = [i for i, line in enumerate(text.splitlines(), 1) if marker in line]
    assert len(lines) == 1, f"expected one {marker!r} line"
    return lines[0]


def problems_of(text: str, filename: str = "test.toml", **kw) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, filename, **kw)
    assert str(info.value) == "\n".join(str(p) for p in info.value.problems)
    return info.value.problems
