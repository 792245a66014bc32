"""``odctl restore JOB [SNAPSHOT] --to DIR``: in this process, straight from the destination
(an incremental snapshot: its whole chain, each file written once). What a restore trusts
is odctl/trust.py; what it reports, odctl/restore_report.py."""
from __future__ import annotations

import argparse
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from odbackupd.bus.names import EXIT_FAILED, EXIT_INTEGRITY, EXIT_USAGE

from .. import lease, offline, render, trust
from ..dispatch import declare
from ..errors import CliError

DESCRIPTION = (
    "Restore a snapshot below DIR (created if missing): an archived path etc/ssh lands in "
    "DIR/etc/ssh. Files and symlinks already there with the same name are replaced (never "
    "followed); other files in DIR are left alone; a directory where the snapshot has a file "
    "is refused and reported. Restore into an empty directory to compare before copying "
    "anything back. An incremental snapshot restores its whole chain, each file written once, "
    "and needs an empty DIR (or --allow-nonempty). A restore that did not put back everything "
    "says what is missing and exits non-zero; see RESTORE SAFETY in odctl(1) for what a "
    "restore trusts.")


def restore(args: argparse.Namespace) -> int:
    from odbackupd.destinations.base import DestinationError
    from odbackupd.snapshot.chainrestore import restore_chain
    from odbackupd.snapshot.restore import (
        BadTarget,
        IntegrityError,
        RestoreError,
        WrongIdentity,
        restore_snapshot,
    )

    from ..chaincmd import restore_chain_of
    from ..restore_report import report

    cfg = offline.config(args)
    job, series = offline.job(cfg, args.job)
    ids = offline.identities(args.identity)
    policy = trust.policy(args, job)
    d = offline.destination(cfg, job, args.destination)
    try:
        from odbackupd.snapshot.catalog import Series

        found = Series(d, series, offline.host(args, cfg))  # each manifest read once
        m = offline.find(d, series, args.snapshot, found.host, listing=found)
        authentic = trust.check(m, policy)
        if m.encrypted and not ids:
            raise CliError(f"snapshot {m.snapshot} is encrypted: give the age identity with "
                           "--identity FILE", EXIT_USAGE)
        chain = restore_chain_of(found, m, args.to, args.allow_nonempty, CliError)
        if chain is not None:  # authentic only when every snapshot of the chain is
            authentic = all([trust.check(c, policy) for c in chain])
        bar = render.Progress(f"restore {m.snapshot}", enabled=not args.quiet and not args.json)
        on_progress = bar.update if bar.enabled else None
        t0 = time.monotonic()
        try:
            # every snapshot the restore reads is leased: no prune deletes it
            with ExitStack() as held:
                for c in chain or [m]:
                    held.enter_context(lease.reading(cfg, d, series, c, args.quiet))
                if args.path and m.index is not None:  # only the volumes holding the paths
                    from ..browse import restore_paths

                    stats = restore_paths(args, d, m, chain, ids, authentic)
                elif chain is not None:
                    stats = restore_chain(d, chain, args.to, identities=ids, paths=args.path,
                                          on_progress=on_progress, authentic=authentic,
                                          special_files=args.special_files)
                else:
                    stats = restore_snapshot(d, m, args.to, identities=ids, paths=args.path,
                                             on_progress=on_progress, authentic=authentic,
                                             special_files=args.special_files)
        except KeyboardInterrupt as e:
            raise CliError(f"interrupted: {args.to} holds a partial restore of {m.snapshot}; "
                           "run the same command again to complete it (files are rewritten "
                           "whole)", 130) from e
        except (BadTarget, WrongIdentity) as e:
            raise CliError(str(e), EXIT_USAGE) from e
        except (RestoreError, DestinationError) as e:
            bar.close()
            if getattr(e, "stats", None) is None:  # nothing written yet
                code = EXIT_INTEGRITY if isinstance(e, IntegrityError) else EXIT_FAILED
                raise CliError(f"restore of {m.snapshot} failed: {e}", code) from e
            return report(args, m, e.stats, time.monotonic() - t0,
                          stopped_damaged=isinstance(e, IntegrityError))
        finally:
            bar.close()
    finally:
        d.close()
    return report(args, m, stats, time.monotonic() - t0,
                  chain=[c.snapshot for c in chain] if chain else None)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("restore", parents=[common], help="restore a snapshot into a directory",
                       description=DESCRIPTION)
    p.add_argument("job", metavar="JOB", help=offline.SERIES_HELP)
    p.add_argument("snapshot", nargs="?", default="latest", metavar="SNAPSHOT",
                   help="snapshot id, unique prefix, or 'latest'")
    p.add_argument("--to", type=Path, required=True, metavar="DIR",
                   help="directory to restore into (existing files of the same name are replaced)")
    p.add_argument("--path", action="append", default=[], metavar="P",
                   help="restore only this path (as archived, e.g. etc/ssh); repeatable; "
                        "a path not in the snapshot is an error (exit 3); only the volumes "
                        "holding the paths are fetched (a snapshot with an index)")
    p.add_argument("--identity", "-i", action="append", type=Path, default=[], metavar="FILE",
                   help="age identity file for encrypted snapshots; repeatable")
    p.add_argument("--destination", "-d", metavar="NAME",
                   help="restore from this destination (default: the job's first)")
    sp = p.add_mutually_exclusive_group()
    sp.add_argument("--special-files", dest="special_files", action="store_true", default=None,
                    help="as root, restore setuid/setgid bits, file capabilities and device "
                         "nodes even from a snapshot not verified authentic (default: only "
                         "from an authentic one)")
    sp.add_argument("--no-special-files", dest="special_files", action="store_false",
                    help="leave setuid/setgid bits, file capabilities and device nodes out "
                         "(counted)")
    p.add_argument("--host", metavar="HOST", help=offline.HOST_HELP)
    trust.add_arguments(p)
    p.add_argument("--allow-nonempty", action="store_true",
                   help="restore an incremental snapshot into a directory that is not empty "
                        "(what it already holds stays, mixed with the snapshot's state)")
    declare(p, offline=restore)
