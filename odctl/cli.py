"""odctl: the command-line client. This module only builds the parser from the command
groups and runs what was asked (odctl/dispatch.py).

Each group is a module with ``register(sub, common)`` (odctl/commands/*.py, and the older
groups beside this file); a new group is one module and one line in :data:`GROUPS`. How a
command runs (with the daemon over D-Bus, offline with the library modules, or the daemon
if it runs) each command declares, and one rule in odctl/dispatch.py applies it. Results go
to stdout (human tables, or ``--json``), diagnostics to stderr. Exit codes and D-Bus error
names are defined once, in odbackupd/bus/names.py.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from odbackupd import __version__
from odbackupd.bus.names import exit_codes_epilog
from odbackupd.config.paths import DEFAULT_CONFIG

from . import browse, fleet, intake, mount, trust
from .commands import account, config, daemon, notify, prune, restore, snapshots, status, verify
from .dispatch import main_errors

# in the order `odctl --help`, the completions and odctl(1) list the commands
GROUPS = (status, daemon, account, config, snapshots, restore, browse, mount, verify, notify,
          fleet, prune, trust, intake)


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


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    ap = argparse.ArgumentParser(prog="odctl", parents=[common],
                                 description="Control odbackupd and work with its snapshots.",
                                 epilog=exit_codes_epilog(),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"odctl {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        group.register(sub, common)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name, default in (("config", None), ("json", False), ("quiet", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    return main_errors(args)


if __name__ == "__main__":
    sys.exit(main())
