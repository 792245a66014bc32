"""The nspawn system test under pytest: one test that runs every step and names each failure.

Needs root, systemd-nspawn and debootstrap (scripts/setup-dev.sh installs them; CI runs as
root). About 70 s with the debootstrapped root cached, 2 minutes from nothing.
"""
from __future__ import annotations

import os
import shutil

import pytest

from .systest import SystemTest


@pytest.mark.slow
def test_package_in_booted_debian() -> None:
    if os.geteuid() != 0 or not (shutil.which("systemd-nspawn") and shutil.which("debootstrap")):
        pytest.fail("the system test needs root, systemd-nspawn and debootstrap: "
                    "run scripts/setup-dev.sh as root")
    t = SystemTest(None)
    try:
        report = t.run()
    finally:
        t.close()
    print(report.text())
    failed = [f"{r.name}: {r.status}: {r.detail.strip()[-1500:]}" for r in report.failed]
    assert not failed, "system checks failed:\n" + "\n\n".join(failed) + "\n\n" + report.text()
