"""odctl's side of snapshot authenticity: ``--trusted-key``, ``--any-encryption`` and
``odctl key export`` (odbackupd/signing.py, odbackupd/snapshot/trust.py)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from odbackupd.bus.names import EXIT_FAILED, EXIT_INTEGRITY, EXIT_OK, EXIT_USAGE

from . import render
from .errors import CliError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trusted-key", type=Path, metavar="FILE",
                   help="refuse (exit 4) a snapshot not signed by this public key (what "
                        "'odctl key export' printed on the host that made it); default: the "
                        "job's trusted_key")
    p.add_argument("--any-encryption", action="store_true",
                   help="take a snapshot of an encrypted job even if it is not encrypted, or not "
                        "to the job's recipients (refused with exit 4 otherwise)")


def policy(args: argparse.Namespace, job):  # noqa: ANN001, ANN201
    """The Trust for this command: keys from --trusted-key or the job's trusted_key."""
    from odbackupd.signing import SigningError, load_public_key
    from odbackupd.snapshot.trust import Trust

    path = args.trusted_key or getattr(job, "trusted_key", None)
    try:
        keys = (load_public_key(path),) if path else ()
    except SigningError as e:
        raise CliError(str(e) + ("" if args.trusted_key else f" (trusted_key of job {job.name})"),
                       EXIT_USAGE) from None
    return Trust(keys=keys, recipients=tuple(job.recipients),
                 any_encryption=args.any_encryption, job=job.name)


def check(m, trust) -> bool:  # noqa: ANN001
    """Whether ``m`` is authentic; CliError exit 4 when it may not be trusted at all."""
    from odbackupd.snapshot.trust import UntrustedSnapshot, check_snapshot

    try:
        return check_snapshot(m, trust)
    except UntrustedSnapshot as e:
        raise CliError(str(e), EXIT_INTEGRITY) from None


def key_export(cfg, args: argparse.Namespace) -> int:  # noqa: ANN001
    """``odctl key export``: this host's public signing key (made if there is none yet)."""
    from odbackupd.signing import SigningError, fingerprint, public_key, public_line

    try:
        pub = public_key(cfg.daemon.state_dir)
    except SigningError as e:
        raise CliError(str(e), EXIT_FAILED) from None
    line = public_line(pub, f"odbackupd@{cfg.daemon.hostname}")
    if args.json:
        render.out_json({"public_key": line, "fingerprint": fingerprint(pub)})
    else:
        print(line)
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    from . import offline
    from .dispatch import declare

    p = sub.add_parser("key", parents=[common], help="the key that signs this host's snapshots")
    ksub = p.add_subparsers(dest="key_command", metavar="SUBCOMMAND", required=True)
    e = ksub.add_parser("export", parents=[common],
                        help="print the public key that verifies this host's snapshots (keep it "
                             "with the age identity; give it to --trusted-key or trusted_key)")
    declare(e, offline=lambda args: key_export(offline.config(args), args))
