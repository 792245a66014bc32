"""Shared helpers for the config tests: real age recipients and problem lookup."""

from __future__ import annotations

import os
import pickle
import subprocess
from collections.abc import Callable
from typing import TypeVar

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


T = TypeVar("T")
NOBODY = 65534


def as_unprivileged(fn: Callable[[], T]) -> T:
    """Run *fn* as the user ``nobody`` when the tests run as root (as CI does).

    Root reads everything, so a permission check is only real without its privileges:
    a forked child drops to nobody (no exec: the modules are already loaded), runs *fn*
    and sends back its result or its exception.
    """
    if os.geteuid() != 0:
        return fn()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(r)
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            try:
                payload = pickle.dumps((True, fn()))
            except BaseException as e:  # noqa: BLE001 - handed to the parent
                payload = pickle.dumps((False, e))
            with os.fdopen(w, "wb") as f:
                f.write(payload)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and data, "the unprivileged child failed"
    ok, value = pickle.loads(data)
    if not ok:
        raise value
    return value
