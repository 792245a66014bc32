"""odctl: the command-line client. This module only builds the parser from the command
groups and runs what was asked (odctl/dispatch.py).

Each group is a module with ``register(sub, common)`` (odctl/commands/*.py, and the older
groups beside this file); a new group is one module and one line in :data:`GROUPS`, naming
the commands it registers: a command line naming one imports and builds only its group
(``odctl ls`` loads none of the other thirteen; tests/odctl/test_cli.py checks the names
against what each group registers), anything else (``--help``, a typo) the whole parser. How a
command runs (with the daemon over D-Bus, offline with the library modules, or the daemon
if it runs) each command declares, and one rule in odctl/dispatch.py applies it. Results go
to stdout (human tables, or ``--json``), diagnostics to stderr. Exit codes and D-Bus error
names are defined once, in odbackupd/bus/names.py.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from odbackupd import __version__
from odbackupd.bus.names import exit_codes_epilog
from odbackupd.config.paths import DEFAULT_CONFIG

from .dispatch import main_errors

# the group modules and their commands, in the order `odctl --help`, the completions and
# odctl(1) list them
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("odctl.commands.status", ("status", "jobs")),
    ("odctl.commands.daemon", ("backup-now", "cancel", "reload")),
    ("odctl.commands.account", ("login", "logout")),
    ("odctl.commands.config", ("config",)),
    ("odctl.commands.snapshots", ("snapshots",)),
    ("odctl.commands.restore", ("restore",)),
    ("odctl.browse", ("ls", "find", "diff")),
    ("odctl.mount", ("mount",)),
    ("odctl.commands.verify", ("verify",)),
    ("odctl.commands.notify", ("notify",)),
    ("odctl.fleet", ("fleet-status",)),
    ("odctl.commands.prune", ("prune",)),
    ("odctl.trust", ("key",)),
    ("odctl.intake", ("intake",)),
)


def common_options() -> argparse.ArgumentParser:
    """--config, --json and -q, accepted before and after the command's name."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS, metavar="PATH",
                        help=f"configuration file (default {DEFAULT_CONFIG})")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output on stdout")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="print only problems")
    return common


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """odctl's parser; ``command``: only the group registering it (the whole one if none does)."""
    common = common_options()
    ap = argparse.ArgumentParser(prog="odctl", parents=[common],
                                 description="Control odbackupd and work with its snapshots.",
                                 epilog=exit_codes_epilog(),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"odctl {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)
    one = [g for g in GROUPS if command in g[1]]
    for module, _ in one or GROUPS:
        importlib.import_module(module).register(sub, common)
    return ap


def command_word(argv: Sequence[str]) -> str | None:
    """The command a command line names: its first word that is neither an option nor the
    value of ``--config`` (None with ``--help`` or ``--version`` before it)."""
    words = iter(argv)
    for word in words:
        if word in ("-h", "--help", "--version", "--"):
            return None
        if len(word) > 2 and "--config".startswith(word):  # argparse takes --conf too
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(command_word(argv)).parse_args(argv)
    for name, default in (("config", None), ("json", False), ("quiet", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    return main_errors(args)


if __name__ == "__main__":
    sys.exit(main())
