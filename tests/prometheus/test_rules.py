"""The shipped alert rules, checked and unit-tested by Debian's own promtool."""
from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "contrib" / "prometheus" / "odbackupd.rules.yml"


def test_rules_pass_promtool_check():
    r = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 7 rules found" in r.stdout


def test_alerts_fire_when_and_only_when_they_should():
    """Too old after two schedule intervals (not before), last run failed, login expired,
    metrics file stale; a healthy second host raises nothing (tests/prometheus/*.test.yml)."""
    r = subprocess.run(["promtool", "test", "rules", "odbackupd.rules.test.yml"],
                       cwd=Path(__file__).parent, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_rules_are_installed_as_examples_by_both_packages():
    deb = (ROOT / "packaging" / "debian" / "odbackupd.examples").read_text()
    assert "contrib/prometheus/odbackupd.rules.yml" in deb
    spec = (ROOT / "packaging" / "rpm" / "odbackupd.spec").read_text()
    assert "odbackupd.rules.yml" in spec
