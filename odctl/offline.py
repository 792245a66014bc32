"""What odctl's offline commands share: the configuration, the job and snapshot series named
on the command line, its destinations, the state database, whose snapshots to read, age
identities and finding one snapshot. Each turns bad input into a :class:`CliError` with
its exit code (odbackupd/bus/names.py)."""
from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from odbackupd.bus.names import EXIT_INTEGRITY, EXIT_NOT_FOUND, EXIT_USAGE

from .errors import CliError


def config(args: argparse.Namespace) -> Any:
    """``--config PATH``, else the default file (its absence: the defaults, no jobs)."""
    from odbackupd.config import ConfigError
    from odbackupd.config.paths import load

    try:
        return load(args.config, explicit=args.config is not None)
    except ConfigError as e:
        raise CliError(str(e), EXIT_USAGE) from e


def job(cfg: Any, name: str) -> tuple[Any, str]:
    """The job config and the snapshot series named on the command line: ``JOB``, or
    ``JOB+drop`` for the one-snapshot-per-file series of JOB's drop directory."""
    from odbackupd.series import series_config

    found = series_config(cfg, name)
    if found is None:
        from odbackupd.config.paths import no_such_job

        raise CliError(no_such_job(cfg, name), EXIT_NOT_FOUND)
    return found, name


def destination(cfg: Any, job: Any, name: str | None, with_state: bool = False) -> Any:
    """``with_state``: give the destination the state database (only prune needs it: it
    cancels the upload sessions of what it deletes); listing, restore and verify never
    open it."""
    from odbackupd.destinations.factory import open_destination

    if name is None:
        name = job.destinations[0]
    elif name not in job.destinations:
        raise CliError(f"job {job.name!r} does not go to destination {name!r} "
                       f"(it goes to: {', '.join(job.destinations)})", EXIT_USAGE)
    return open_destination(cfg, name, state(cfg) if with_state else None)


def state(cfg: Any) -> Any:
    """The state database, when this user may read it and it opens (a damaged one is the
    daemon's to move aside; odctl goes on without it)."""
    import sqlite3

    from odbackupd.state import StateStore

    p = cfg.daemon.state_dir / "state.db"
    if p.exists() and os.access(p, os.R_OK | os.W_OK):
        try:
            return StateStore(p)
        except sqlite3.Error:
            return None
    return None


def host(args: argparse.Namespace, cfg: Any) -> str:
    """Whose snapshots to read: ``--host H`` (another server's, e.g. a dead one's on its
    replacement), else this machine's ``[daemon] hostname``."""
    given = getattr(args, "host", None)
    if given is None:
        return cfg.daemon.hostname
    from odbackupd.config.schema import _hostname

    try:
        return _hostname(given)
    except ValueError as e:
        raise CliError(f"--host: {e}", EXIT_USAGE) from e


def identities(paths: Sequence[Path]) -> list:
    if not paths:
        return []  # age (and cryptography) imported only when a key is given
    from odbackupd.crypto.age import AgeError, load_identities

    out = []
    for p in paths:
        try:
            out.extend(load_identities(p))
        except AgeError as e:
            raise CliError(f"--identity {p}: {e}", EXIT_USAGE) from e
        except OSError as e:
            raise CliError(f"--identity {p}: {e.strerror or e}; give the age identity file "
                           "(the one age-keygen wrote)", EXIT_USAGE) from e
    return out


def find(d: Any, series: str, ref: str, host: str, command: str = "restore",
         listing: Any = None) -> Any:
    """The snapshot ``ref`` (id, unique prefix, 'latest') names; 'latest' never silently
    means an older one when the newest is damaged (exit 4)."""
    from odbackupd.snapshot.catalog import DamagedLatest, SnapshotNotFound, find_snapshot

    try:
        return find_snapshot(d, series, ref, host, listing)
    except SnapshotNotFound as e:
        raise CliError(str(e), EXIT_NOT_FOUND) from e
    except DamagedLatest as e:
        hint = (f"; the newest intact one is {e.intact.snapshot}: "
                f"odctl {command} {series} {e.intact.snapshot}"
                if e.intact else "; no intact snapshot is left")
        raise CliError(f"{d.describe()}: {e} so 'latest' is not taken to mean an older "
                       f"snapshot{hint}", EXIT_INTEGRITY) from e


SERIES_HELP = "the NAME of a [job.NAME] table, or NAME+drop for its drop-directory snapshots"
HOST_HELP = ("read the snapshots another server made (its [daemon] hostname) on the same "
             "destination, e.g. to restore a dead server's backup on its replacement; "
             "default: this host's")
