"""``odctl config check`` (validate, as the daemon would load it) and ``odctl config sample``
(the commented sample generated from the schema)."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from odbackupd.bus.names import EXIT_OK, EXIT_USAGE

from .. import render
from ..dispatch import declare


def check(args: argparse.Namespace) -> int:
    from odbackupd.config import ConfigError
    from odbackupd.config.paths import check_summary, load

    try:
        cfg = load(args.config, check_sources=True, explicit=args.config is not None)
    except ConfigError as e:
        if args.json:
            render.out_json({"ok": False, "problems": [str(p) for p in e.problems]})
        else:
            print(str(e), file=sys.stderr)
        return EXIT_USAGE
    where = str(cfg.path) if cfg.path else "embedded default"
    if args.json:
        render.out_json({"ok": True, "path": where, "jobs": sorted(cfg.jobs),
                         "destinations": sorted(cfg.destinations),
                         "warnings": list(cfg.warnings)})
    elif not args.quiet:
        for w in cfg.warnings:
            print(f"warning: {w}", file=sys.stderr)
        print(f"{where}: OK ({check_summary(cfg)})")
    return EXIT_OK


def sample(args: argparse.Namespace) -> int:
    from odbackupd.config import sample_config

    if args.json:
        render.out_json({"sample": sample_config()})
    else:
        sys.stdout.write(sample_config())
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("config", parents=[common], help="check or generate the configuration")
    csub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    declare(csub.add_parser("check", parents=[common], help="validate the configuration"),
            offline=check)
    declare(csub.add_parser("sample", parents=[common],
                            help="print a commented sample configuration"), offline=sample)
