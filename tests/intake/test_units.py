"""The intake's units as shipped: no capabilities, the sandbox scored <= 2.0 by
``systemd-analyze security --offline=true`` (systemd 252), socket activation with Accept=no."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"


def _unit(name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        m = re.match(r"^(\w+)=(.*)$", line)
        if m:
            out.setdefault(m[1], []).append(m[2])
    return out


def test_service_sandbox_scores_at_most_2() -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing (Debian: systemd)")
    p = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager",
                        str(UNITS / "odbackupd-intake.service")], capture_output=True, text=True)
    m = re.search(r"Overall exposure level for odbackupd-intake.service: ([0-9.]+)", p.stdout)
    assert m, p.stdout + p.stderr
    assert float(m[1]) <= 2.0, p.stdout


def test_no_capabilities_own_user_socket_activated() -> None:
    svc = _unit("odbackupd-intake.service")
    assert svc["CapabilityBoundingSet"] == [""] and svc["AmbientCapabilities"] == [""]
    assert svc["User"] == ["odbackupd-intake"] and svc["NoNewPrivileges"] == ["yes"]
    assert svc["ProtectSystem"] == ["strict"] and svc["ReadWritePaths"] == ["-/srv/intake"]
    assert svc["PrivateNetwork"] == ["yes"] and svc["Requires"] == ["odbackupd-intake.socket"]
    sock = _unit("odbackupd-intake.socket")
    assert sock["Accept"] == ["no"] and sock["ListenStream"] == ["127.0.0.1:8421"]
    sysusers = (UNITS / "sysusers.d" / "odbackupd.conf").read_text()
    assert re.search(r"^u odbackupd-intake ", sysusers, re.MULTILINE)
