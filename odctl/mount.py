"""``odctl mount JOB MOUNTPOINT``: a job's snapshots as a read-only FUSE file system.

Before anything is mounted: pyfuse3 is importable (else how to install it), /dev/fuse
opens, MOUNTPOINT is an empty directory, the snapshots are listed and each one is checked
as ``odctl restore`` checks it (odctl/trust.py; an incremental also needs its whole chain
trusted). A snapshot that fails is left out, said on stderr; none left is exit 4. An
encrypted job needs ``--identity`` (its indexes are encrypted too), checked against the
manifests' recipients up front.

Then it serves in the foreground until ``fusermount3 -u MOUNTPOINT``, Ctrl-C, SIGTERM or
SIGHUP (the last three unmount it). Every snapshot that is opened is leased
(odctl/lease.py) until then, so a prune on this host defers deleting it. Volumes are
cached under ``SPOOL_DIR/mount/SERIES/`` (odbackupd/snapshot/volcache.py), removed at the
unmount.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from odbackupd.bus.names import EXIT_FAILED, EXIT_INTEGRITY, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE

from . import render, trust
from .errors import CliError

INSTALL_HINT = ("odctl mount needs pyfuse3 and FUSE 3: on Debian/Ubuntu "
                "'apt install python3-pyfuse3 fuse3', "
                "on Fedora 'dnf install python3-pyfuse3 fuse3'; in a virtualenv "
                "'pip install pyfuse3' (building it needs libfuse3-dev and pkg-config)")
DEFAULT_CACHE = 1 << 30

DESCRIPTION = (
    "Mount a job's snapshots read-only at MOUNTPOINT (an empty directory): one directory per "
    "snapshot, named by its id, and 'latest', a symlink to the newest. Names, modes, owners, "
    "mtimes, symlinks and hard links come from the snapshots' indexes; a file's data is fetched "
    "when it is read, only the volumes holding it, each checked against the manifest, into a "
    "cache under the spool directory (--cache-size) that is removed at the unmount. Extended "
    "attributes are not shown (odctl restore puts them back). Runs in the foreground: unmount "
    "with 'fusermount3 -u MOUNTPOINT' or Ctrl-C. Snapshots that fail the trust checks of "
    "odctl restore, or that no --identity key opens, are left out. Exit status: 0 unmounted, "
    "1 FUSE or pyfuse3 missing or the mount failed, 2 bad MOUNTPOINT or arguments (or no key "
    "opens any snapshot), 3 no such job or no snapshot, 4 no snapshot may be trusted.")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """odctl's command group (odctl/cli.py): pyfuse3 is imported only when the command runs."""
    from odbackupd.config.units import SIZE_HINT

    from . import offline
    from .dispatch import declare

    p = sub.add_parser("mount", parents=[common], help="mount a job's snapshots read-only (FUSE)",
                       description=DESCRIPTION)
    p.add_argument("job", metavar="JOB", help=offline.SERIES_HELP)
    p.add_argument("mountpoint", type=Path, metavar="MOUNTPOINT", help="an empty directory")
    p.add_argument("--identity", "-i", action="append", type=Path, default=[], metavar="FILE",
                   help="age identity file for an encrypted job (its indexes are encrypted); "
                        "repeatable")
    p.add_argument("--destination", "-d", metavar="NAME",
                   help="read from this destination (default: the job's first)")
    p.add_argument("--host", metavar="HOST", help=offline.HOST_HELP)
    trust.add_arguments(p)
    p.add_argument("--cache-size", metavar="SIZE", default=None,
                   help=f"bound of the volume cache: {SIZE_HINT} (default 1GiB, at least two "
                        "volumes); "
                        "volumes being read are kept beyond it")
    p.add_argument("--allow-other", action="store_true",
                   help="let other users see the mount (needs user_allow_other in /etc/fuse.conf "
                        "unless root); the snapshot's modes and owners then decide who reads what")
    declare(p, offline=cmd_mount)


def _pyfuse3() -> None:
    try:
        import pyfuse3  # noqa: F401
        import trio  # noqa: F401
    except ImportError as e:
        raise CliError(f"{INSTALL_HINT} ({e})", EXIT_FAILED) from None


def check_mountpoint(path: Path) -> None:
    """An empty directory that is not mounted on: else one line, exit 2."""
    if os.path.ismount(path):
        raise CliError(f"{path} is already a mount point (unmount it first: fusermount3 -u {path})",
                       EXIT_USAGE)
    try:
        with os.scandir(path) as it:
            if next(it, None) is not None:
                raise CliError(f"{path} is not empty: mount on an empty directory", EXIT_USAGE)
    except FileNotFoundError:
        raise CliError(f"{path} does not exist: create an empty directory to mount on "
                       f"(mkdir {path})",
                       EXIT_USAGE) from None
    except NotADirectoryError:
        raise CliError(f"{path} is not a directory: mount on an empty directory",
                       EXIT_USAGE) from None
    except PermissionError:
        raise CliError(f"{path} cannot be read by this user: mount on an empty directory of "
                       "your own",
                       EXIT_USAGE) from None


def _cache_size(args: argparse.Namespace, manifests: list) -> int:
    from odbackupd.config.units import SIZE_HINT, parse_size

    if args.cache_size is None:
        biggest = max((int(v["size"]) for m in manifests for v in m.volumes), default=0)
        return max(DEFAULT_CACHE, 2 * biggest)
    try:
        return parse_size(args.cache_size)
    except ValueError:
        raise CliError(f"--cache-size {args.cache_size!r}: not {SIZE_HINT}", EXIT_USAGE) from None


def _say(args: argparse.Namespace, line: str) -> None:
    print(f"odctl: {line}", file=sys.stderr, flush=True)


def trusted_snapshots(args: argparse.Namespace, job: Any, complete: list, ids: list) -> list:
    """The snapshots the mount shows: those trust.check passes, with their whole chain, and
    (encrypted ones) that the --identity keys open; each one left out is said why."""
    from odbackupd.snapshot.incchain import BrokenChain, chain_of
    from odbackupd.snapshot.restore import WrongIdentity, check_identities

    policy = trust.policy(args, job)
    ok: dict[str, Any] = {}
    refused: list[tuple[str, int]] = []  # why, and the exit code if nothing is left

    def leave_out(why: str, code: int = EXIT_INTEGRITY) -> None:
        refused.append((why, code))
        _say(args, f"warning: left out: {why}")

    for m in complete:
        try:
            trust.check(m, policy)
            if m.encrypted and ids:
                check_identities(m, ids)
        except CliError as e:
            leave_out(str(e), e.code)
            continue
        except WrongIdentity as e:  # e.g. older snapshots encrypted to a key since replaced
            leave_out(str(e), EXIT_USAGE)
            continue
        ok[m.snapshot] = m
    out = []
    for m in ok.values():
        if m.kind == "incremental":
            try:
                chain = chain_of(m, complete)
            except BrokenChain as e:
                leave_out(f"{m.snapshot}: {e}")
                continue
            bad = [c.snapshot for c in chain if c.snapshot not in ok]
            if bad:
                leave_out(f"{m.snapshot}: its chain holds {', '.join(bad)}, left out above")
                continue
        out.append(m)
    if not out:
        why, code = refused[-1] if refused else ("", EXIT_INTEGRITY)
        raise CliError("no snapshot to mount" + (f": {why}" if why else ""), code)
    encrypted = [m for m in out if m.encrypted]
    if encrypted and not ids:
        raise CliError(f"snapshot {encrypted[-1].snapshot} is encrypted, its index too: give the "
                       "age identity with --identity FILE", EXIT_USAGE)
    return out


def _permanent(e: BaseException) -> bool:
    """Whether opening a snapshot failed for good (damage, a broken chain), not for now (a
    lost network, a throttled drive: the next look inside tries again)."""
    from odbackupd.snapshot.incchain import BrokenChain
    from odbackupd.snapshot.restore_errors import RestoreError

    return isinstance(e, (RestoreError, BrokenChain))


def cmd_mount(args: argparse.Namespace) -> int:
    from . import offline

    os.umask(0o077)  # the cache (volumes, the decrypted indexes) is this user's alone
    _pyfuse3()
    from .mountfs import fuse_problem

    check_mountpoint(args.mountpoint)
    why = fuse_problem()
    if why is not None:
        raise CliError(f"FUSE is not available: {why}", EXIT_FAILED)
    from odbackupd.snapshot.catalog import list_snapshots

    cfg = offline.config(args)
    job, series = offline.job(cfg, args.job)
    ids = offline.identities(args.identity)
    host = offline.host(args, cfg)
    d = offline.destination(cfg, job, args.destination)
    try:
        listing = list_snapshots(d, series, host)
        for folder, problem in listing.unreadable:
            _say(args, f"warning: left out {folder}: its manifest does not read: {problem}")
        if not listing.complete:
            raise CliError(f"{d.describe()} holds no complete snapshot of job {series!r} made by "
                           "host "
                           f"{host!r} (another host's: --host NAME)", EXIT_NOT_FOUND)
        shown = trusted_snapshots(args, job, listing.complete, ids)
        return _serve(args, cfg, d, series, shown, listing.complete, ids, _cache_size(args, shown))
    finally:
        d.close()


def _serve(args: argparse.Namespace, cfg, d, series: str, shown: list, complete: list, ids: list,  # noqa: ANN001
           limit: int) -> int:
    from odbackupd.snapshot.view import open_view
    from odbackupd.snapshot.volcache import VolumeCache

    from . import lease
    from .mountfs import SnapshotFS, serve
    from .mountread import Decoders
    from .mountview import Adapter

    try:
        cache = VolumeCache(d, cfg.daemon.spool_dir / "mount" / series, limit)
    except OSError as e:
        raise CliError(f"cannot make the volume cache under {cfg.daemon.spool_dir}: "
                       f"{e.strerror or e} "
                       "(run odctl mount as root or as the service's user)", EXIT_FAILED) from None
    held = ExitStack()
    held_mu = threading.Lock()
    decoders = Decoders()  # each idle one holds a volume in the cache

    def opener(m) -> Callable[[], Adapter]:  # noqa: ANN001
        def open_snapshot() -> Adapter:
            if m.index is None:
                _say(args, f"snapshot {m.snapshot} has no index (made before indexes existed): "
                     "reading its "
                     f"{len(m.volumes)} volumes ({render.size(m.stored_bytes)}) once to list it")
            with held_mu:  # leased from now to the unmount: a prune here defers deleting it
                from odbackupd.snapshot.incchain import chain_of

                for c in chain_of(m, complete) if m.kind == "incremental" else [m]:
                    held.enter_context(lease.reading(cfg, d, series, c, args.quiet))
            view = open_view(d, m, complete, identities=ids, source=cache, scratch=cache.dir)
            return Adapter(view, decoders, report=lambda line: _say(args, f"mount: {line}"))
        return open_snapshot

    fs = SnapshotFS([(m.snapshot, m.started, opener(m)) for m in shown],
                    uid=os.getuid(), gid=os.getgid(),
                    report=lambda line: _say(args, f"mount: {line}"), permanent=_permanent)
    options = {f"fsname=odbackupd:{series}", "subtype=odbackupd", "ro", "nosuid", "nodev",
               "default_permissions"}
    if args.allow_other:
        options.add("allow_other")
    mp = str(args.mountpoint)

    def ready() -> None:
        from odbackupd.config.units import plural

        latest = shown[-1].snapshot
        if args.json:
            render.out_json({"mountpoint": os.path.abspath(mp), "job": series,
                             "snapshots": [m.snapshot for m in shown], "latest": latest})
            sys.stdout.flush()
        elif not args.quiet:
            print(f"{series}: {plural(len(shown), 'snapshot')} mounted at {mp} (latest: {latest}); "
                  f"unmount with: fusermount3 -u {mp}", flush=True)

    try:
        try:
            how = serve(fs, mp, options, ready)
        except RuntimeError as e:  # pyfuse3.init: the mount itself failed
            raise CliError(f"cannot mount at {mp}: {e} (is the fuse module loaded? fusermount3 "
                           "installed?)",
                           EXIT_FAILED) from None
    finally:
        decoders.close()
        for a in fs.adapters():
            a.close()
        cache.close()
        held.close()
    if not args.quiet and not args.json:
        st = cache.stats
        _say(args, f"unmounted {mp}" + (f" ({how})" if how != "unmounted" else "")
             + f"; fetched {st.fetched} volumes ({render.size(st.fetched_bytes)}) "
             f"and {st.indexes} indexes")
    return EXIT_OK

