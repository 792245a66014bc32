"""odctl run by a user the bus policy refuses: what was refused and what it needs, not the
bus daemon's "Rejected send message, 1 matched rules; type=..." text."""
from __future__ import annotations

import json
import subprocess
import sys

from odbackupd.bus import names

from .conftest import as_user


def test_refused_commands_say_what_and_why(daemon, private_bus):
    for argv, what in ((["backup-now", "t"], "starting a backup (backup-now)"),
                       (["cancel", "t"], "cancelling a run (cancel)"),
                       (["reload"], "reloading the configuration (reload)")):
        r = subprocess.run(as_user("nobody", [sys.executable, "-m", "odctl.cli", *argv],
                                   init_groups=False),
                           capture_output=True, text=True, env=private_bus.env(), timeout=60,
                           cwd="/")
        assert r.returncode == names.EXIT_ACCESS_DENIED, r.stderr
        assert "Rejected send message" not in r.stderr and "matched rules" not in r.stderr, r.stderr
        assert f"the system bus refused {what}" in r.stderr, r.stderr
        assert f"needs root or membership of group '{names.ADMIN_GROUP}'" in r.stderr
        assert f"usermod -aG {names.ADMIN_GROUP} nobody" in r.stderr
    r = subprocess.run(as_user("nobody",
                               [sys.executable, "-m", "odctl.cli", "--json", "cancel", "t"],
                               init_groups=False),
                       capture_output=True, text=True, env=private_bus.env(), timeout=60, cwd="/")
    assert json.loads(r.stdout)["exit"] == names.EXIT_ACCESS_DENIED
