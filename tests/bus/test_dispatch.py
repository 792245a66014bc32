"""odctl/dispatch.py's one rule, for every command that can work with the daemon or without
it: the daemon when it owns its name, this process when it does not (with a note) or when
the command line names what only this process reads; an error from a daemon that answered
is that error, never a reason to run the command here instead."""
from __future__ import annotations

import argparse

from odbackupd.bus import names
from odctl.dispatch import declare, main_errors

from .conftest import Daemon, PrivateBus


def _odctl(calls: list):  # noqa: ANN202
    """A parser with one command of each kind; each records where it ran."""

    async def ask(c, args: argparse.Namespace) -> int:  # noqa: ANN001
        if args.job:
            await c.call("GetJob", "s", args.job)  # NoSuchJob for a job the daemon lacks
        calls.append("daemon")
        return 0

    def here(args: argparse.Namespace) -> int:
        calls.append("offline")
        return 0

    ap = argparse.ArgumentParser(prog="odctl")
    ap.add_argument("--config", default=None)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("-q", "--quiet", action="store_true")
    sub = ap.add_subparsers(dest="command", required=True)
    for name, kw in (("both", {"daemon": ask, "offline": here}), ("daemon-only", {"daemon": ask}),
                     ("offline-only", {"offline": here})):
        p = sub.add_parser(name)
        p.add_argument("--job", default=None)
        declare(p, local_options=("config",), fallback_note="working here", **kw)
    return lambda *argv: main_errors(ap.parse_args(argv))


def test_without_a_daemon_a_command_that_can_runs_here_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    calls: list[str] = []
    odctl = _odctl(calls)
    assert odctl("both") == 0 and calls == ["offline"]
    err = capsys.readouterr().err
    assert "cannot connect" in err and "odctl: working here" in err
    assert odctl("-q", "both") == 0 and capsys.readouterr().err == ""
    assert odctl("offline-only") == 0 and capsys.readouterr().err == ""
    assert odctl("--json", "daemon-only") == names.EXIT_NOT_RUNNING
    assert '"error_name": "NotRunning"' in capsys.readouterr().out
    assert calls == ["offline", "offline", "offline"]


def test_with_a_daemon_it_is_asked_unless_the_command_line_says_otherwise(
        private_bus: PrivateBus, tmp_path, monkeypatch, capsys):
    from tests.bus.conftest import write_config

    d = Daemon(write_config(tmp_path), private_bus)
    try:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", private_bus.address)
        calls: list[str] = []
        odctl = _odctl(calls)
        assert odctl("both") == 0 and odctl("daemon-only") == 0
        assert calls == ["daemon", "daemon"]
        assert odctl("--config", str(tmp_path / "odbackupd.toml"), "both") == 0
        assert calls[-1] == "offline"  # --config names another configuration: this process
        assert odctl("offline-only") == 0 and calls[-1] == "offline"
        capsys.readouterr()
        # the daemon answered NoSuchJob: that is the answer (exit 3), not a fallback
        assert odctl("both", "--job", "nosuch") == names.EXIT_NOT_FOUND
        assert calls[-1] == "offline" and len(calls) == 4
        assert "odctl: working here" not in capsys.readouterr().err
    finally:
        d.stop()
