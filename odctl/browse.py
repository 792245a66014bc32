"""odctl ls, find, diff, and restore --path from the indexes (odbackupd/snapshot/view.py).

Each command reads only index objects (ls, find, diff) or the index plus the volumes that
hold the selected entries (restore --path), after the same trust checks as restore
(--trusted-key, the job's trusted_key and recipients, --any-encryption). A snapshot made
before indexes existed is listed by streaming its volumes once, and the command says so.

Why one module over 400 lines: the four commands share the job/snapshot lookup, the trust
checks and the row formats (``ls --long``: a device's "major, minor" as ls(1) prints it).
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import sys
import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

from odbackupd.bus.names import EXIT_FAILED, EXIT_INTEGRITY, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE

from . import offline, render, trust
from .dispatch import declare
from .errors import CliError

SNAPSHOT_RE = re.compile(r"\d{8}(T\d{0,6}Z?(-[0-9a-f]{0,6})?)?")


# -- opening views --------------------------------------------------------------------------------
class _Job:
    """The job, its destination, the policy and the snapshots of one command."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.cfg = offline.config(args)
        self.job, self.series = offline.job(self.cfg, args.job)
        self.ids = offline.identities(args.identity)
        self.policy = trust.policy(args, self.job)
        self.host = offline.host(args, self.cfg)
        self.dest = offline.destination(self.cfg, self.job, args.destination)
        self._series: Any = None

    def series_reader(self) -> Any:
        """The series on the destination (odbackupd/snapshot/catalog.py ``Series``), made once
        per command: each manifest is read once, and only those the command needs."""
        from odbackupd.snapshot.catalog import Series

        if self._series is None:
            self._series = Series(self.dest, self.series, self.host)
        return self._series

    def snapshots(self) -> list:
        """Every complete snapshot (reads every manifest of the series)."""
        return self.series_reader().listing().complete

    def find(self, ref: str | None, command: str) -> Any:
        return offline.find(self.dest, self.series, ref, self.host, command, self.series_reader())

    def view(self, m: Any, quiet: bool = False) -> Any:
        """The view of ``m`` after the trust checks (of every snapshot of its chain)."""
        from odbackupd.destinations.base import DestinationError
        from odbackupd.snapshot.incchain import BrokenChain, chain_of
        from odbackupd.snapshot.restore_errors import IntegrityError, RestoreError, WrongIdentity
        from odbackupd.snapshot.view import open_view

        try:
            chain = chain_of(m, self.series_reader().bases()) if m.kind == "incremental" else [m]
        except BrokenChain as e:
            raise CliError(f"cannot read {m.snapshot}: {e}", EXIT_INTEGRITY) from e
        authentic = all([trust.check(c, self.policy) for c in chain])
        if any(c.encrypted for c in chain) and not self.ids:
            raise CliError(
                f"snapshot {m.snapshot} is encrypted, and so is its index (file names are readable "
                "only with the key): give the age identity with --identity FILE",
                EXIT_USAGE,
            )
        if m.index is None and not quiet and not self.args.quiet:
            print(
                f"odctl: snapshot {m.snapshot} has no index (made before odbackupd kept one): "
                "reading it means "
                f"streaming all its volumes once ({render.size(m.stored_bytes)})",
                file=sys.stderr,
            )
        try:
            v = open_view(self.dest, m, chain, identities=self.ids)
        except WrongIdentity as e:
            raise CliError(str(e), EXIT_USAGE) from e
        except IntegrityError as e:
            raise CliError(f"snapshot {m.snapshot}: {e}", EXIT_INTEGRITY) from e
        except (RestoreError, DestinationError) as e:
            raise CliError(f"snapshot {m.snapshot}: {e}", EXIT_FAILED) from e
        v.authentic = authentic  # type: ignore[attr-defined]
        return v

    def close(self) -> None:
        self.dest.close()


def _integrity(fn):  # noqa: ANN001, ANN202
    """Damage found while a command walks a view: exit 4 with the message."""

    def run(args: argparse.Namespace) -> int:
        from odbackupd.snapshot.restore_errors import IntegrityError, RestoreError

        try:
            return fn(args)
        except IntegrityError as e:
            raise CliError(str(e), EXIT_INTEGRITY) from e
        except RestoreError as e:
            raise CliError(str(e), EXIT_USAGE) from e

    return run


def _row(n) -> dict[str, Any]:  # noqa: ANN001
    return {
        "path": n.path,
        "name": n.name,
        "type": n.type,
        "size": n.size,
        "mtime_ns": n.mtime_ns,
        "mtime": _time(n.mtime_ns),
        "mode": f"{stat.S_IMODE(n.mode):04o}",
        "uid": n.uid,
        "gid": n.gid,
        "inode": n.inode,
        "origin": n.origin,
        "link": n.link,
        # a device's [major, minor] (null for others; [0, 0] from an index made before them)
        "device": [os.major(n.rdev), os.minor(n.rdev)] if n.type in "cb" else None,
    }


def _time(ns: int) -> str:
    return render.iso(ns / 1e9)


def _long(n, name: str) -> str:  # noqa: ANN001
    mode = stat.filemode(n.mode)
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(n.mtime_ns / 1e9))
    if n.type == "l":
        name += f" -> {n.link if n.link is not None else '?'}"
    size = f"{os.major(n.rdev)}, {os.minor(n.rdev)}" if n.type in "cb" else n.size  # as ls(1)
    return f"{mode} {n.uid:>6} {n.gid:>6} {size:>12} {when} {name}"


def _show(n) -> str:  # noqa: ANN001
    return (n.name or "/") + ("/" if n.type == "d" and n.name else "")


# -- ls -------------------------------------------------------------------------------------------
def _split_ls(args: argparse.Namespace) -> tuple[str, str]:
    """``ls JOB [SNAPSHOT] [PATH]``: one word is a snapshot if it is 'latest' or has the
    shape of a snapshot id (or its prefix: 8 digits, then T...), else a path."""
    a, b = args.snapshot, args.path
    if b is not None:
        return a, b
    if a is None:
        return "latest", ""
    if a == "latest" or SNAPSHOT_RE.fullmatch(a):
        return a, ""
    return "latest", a


@_integrity
def cmd_ls(args: argparse.Namespace) -> int:
    ref, path = _split_ls(args)
    j = _Job(args)
    try:
        m = j.find(ref, "ls")
        with j.view(m) as v:
            from odbackupd.snapshot.view import norm_path

            top = v.lookup(norm_path(path))
            if top is None:
                raise CliError(
                    f"{path}: not in snapshot {m.snapshot} (paths are as archived, without the "
                    f"leading '/', e.g. {str(m.sources[0]).strip('/') if m.sources else 'etc'})",
                    EXIT_NOT_FOUND,
                )
            if args.recursive and top.type == "d":
                nodes: Iterator = (n for n in v.walk(top.path) if n is not top)
            else:
                nodes = iter(v.children(top.path) if top.type == "d" else [top])
            if args.json:
                rows = []
                for n in nodes:
                    r = _row(n)
                    if n.type == "l" and n.link is None and args.long:
                        r["link"] = v.readlink(n)
                    rows.append(r)
                render.out_json(
                    {
                        "job": j.series,
                        "snapshot": m.snapshot,
                        "path": top.path,
                        "streamed": v.streamed,
                        "entries": rows,
                    }
                )
                return EXIT_OK
            for n in nodes:
                if args.long:
                    if n.type == "l" and n.link is None:
                        n = _with_link(n, v.readlink(n))
                    print(_long(n, n.path if args.recursive else n.name or "/"))
                else:
                    print(n.path + ("/" if n.type == "d" else "") if args.recursive else _show(n))
    finally:
        j.close()
    return EXIT_OK


def _with_link(n, link: str):  # noqa: ANN001, ANN202
    import dataclasses

    return dataclasses.replace(n, link=link)


# -- find -----------------------------------------------------------------------------------------
def _matcher(pattern: str):  # noqa: ANN202
    """A pattern with a '/' matches the whole archived path (``*`` within one component,
    ``**`` across them), one without matches the name."""
    from odbackupd.snapshot.walk import _glob_to_regex

    if "/" in pattern:
        rx = re.compile(_glob_to_regex(pattern.strip("/")))
        return lambda n: rx.fullmatch(n.path) is not None
    rx = re.compile(_glob_to_regex(pattern))
    return lambda n: rx.fullmatch(n.name) is not None


def _since(text: str) -> float:
    from datetime import datetime

    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(
            f"--since {text}: not a date; give YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC unless "
            "an offset is given)",
            EXIT_USAGE,
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


@_integrity
def cmd_find(args: argparse.Namespace) -> int:
    match = _matcher(args.pattern)
    j = _Job(args)
    try:
        snaps = j.snapshots()
        if args.all:
            chosen = list(snaps)
        elif args.since is not None:
            t = _since(args.since)
            chosen = [m for m in snaps if m.started >= t]
        else:
            chosen = [j.find("latest", "find")]
        hits: list[dict] = []
        streamed: list[str] = []
        for m in reversed(chosen):  # newest first
            with j.view(m) as v:
                if v.streamed:
                    streamed.append(m.snapshot)
                for n in v.walk(""):
                    if n.path and match(n):
                        hits.append(
                            {"snapshot": m.snapshot, "time": render.iso(m.started), **_row(n)}
                        )
        if args.json:
            render.out_json(
                {
                    "job": j.series,
                    "pattern": args.pattern,
                    "snapshots": [m.snapshot for m in chosen],
                    "streamed": streamed,
                    "matches": hits,
                }
            )
        else:
            render.table(
                ["SNAPSHOT", "TIME", "SIZE", "MTIME", "PATH"],
                [
                    [
                        h["snapshot"],
                        h["time"],
                        str(h["size"]) if h["type"] != "d" else "-",
                        h["mtime"],
                        h["path"] + ("/" if h["type"] == "d" else ""),
                    ]
                    for h in hits
                ],
            )
            if not args.quiet:
                from odbackupd.config.units import plural

                word = "match" if len(hits) == 1 else "matches"
                print(f"odctl: {len(hits)} {word} in {plural(len(chosen), 'snapshot')}",
                      file=sys.stderr)
    finally:
        j.close()
    return EXIT_OK if hits else EXIT_NOT_FOUND


# -- diff -----------------------------------------------------------------------------------------
def change(a, b) -> str | None:  # noqa: ANN001
    """ "M" content (or type, or link target) changed, "U" only mode or owner, None the same."""
    if a.type != b.type:
        return "M"
    if a.type != "d":
        if a.size != b.size or a.mtime_ns != b.mtime_ns or (a.type == "l" and a.link != b.link):
            return "M"
        if (
            a.origin != b.origin
            and a.ctime_ns
            and b.ctime_ns
            and a.ctime_ns != b.ctime_ns
            and (a.mode, a.uid, a.gid) == (b.mode, b.uid, b.gid)
        ):
            return (
                "M"  # stored again with the same size and mtime: a rewrite with its mtime set back
            )
    if (a.mode, a.uid, a.gid) != (b.mode, b.uid, b.gid):
        return "U"
    return None


@_integrity
def cmd_diff(args: argparse.Namespace) -> int:
    import os

    j = _Job(args)
    try:
        ma, mb = j.find(args.snapshot_a, "diff"), j.find(args.snapshot_b, "diff")
        with j.view(ma) as va, j.view(mb) as vb:
            pa = {n.path: n for n in va.walk("") if n.path}
            pb = {n.path: n for n in vb.walk("") if n.path}
            out: dict[str, list[str]] = {"added": [], "removed": [], "modified": [], "metadata": []}
            lines = []
            for p in sorted(pa.keys() | pb.keys(), key=os.fsencode):
                a, b = pa.get(p), pb.get(p)
                shown = p + ("/" if (b or a).type == "d" else "")
                if a is None:
                    out["added"].append(p)
                    lines.append(f"+    {shown}")
                elif b is None:
                    out["removed"].append(p)
                    lines.append(f"-    {shown}")
                elif (c := change(a, b)) is not None:
                    out["modified" if c == "M" else "metadata"].append(p)
                    lines.append(f"{c}    {shown}")
            streamed = [m.snapshot for m, v in ((ma, va), (mb, vb)) if v.streamed]
        if args.json:
            render.out_json(
                {"job": j.series, "a": ma.snapshot, "b": mb.snapshot, "streamed": streamed, **out}
            )
        else:
            for ln in lines:
                print(ln)
            if not args.quiet:
                print(
                    f"odctl: {ma.snapshot} -> {mb.snapshot}: {len(out['added'])} added, "
                    f"{len(out['removed'])} removed, {len(out['modified'])} modified, "
                    f"{len(out['metadata'])} with only mode or "
                    "owner changed",
                    file=sys.stderr,
                )
    finally:
        j.close()
    return EXIT_OK


# -- restore --path -------------------------------------------------------------------------------
def restore_paths(args: argparse.Namespace, d, m, chain, ids, authentic: bool):  # noqa: ANN001, ANN201
    """``odctl restore --path`` of a snapshot with an index: only the volumes holding the
    paths are fetched (``stats.fetched`` says how many). Errors as restore_snapshot's."""
    from odbackupd.snapshot.partial import restore_paths as restore
    from odbackupd.snapshot.view import open_view

    with open_view(d, m, chain or [m], identities=ids) as v:
        return restore(v, args.to, args.path, authentic=authentic, special_files=args.special_files)


def fetched_text(f: dict) -> str:
    from odbackupd.config.units import plural

    vols = plural(f.get("volumes", 0), "volume")
    ranges = f.get("ranges", 0)
    data = (f"{render.size(f.get('volume_bytes', 0))} of {vols} (only the zstd frames holding "
            f"the paths: {plural(ranges, 'ranged read')})" if ranges else
            f"{vols} ({render.size(f.get('volume_bytes', 0))})")
    return (
        f"fetched {data} and "
        f"{f.get('indexes', 0)} {'index' if f.get('indexes', 0) == 1 else 'indexes'} "
        f"({render.size(f.get('index_bytes', 0))})"
    )


# -- parsers --------------------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--identity",
        "-i",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="age identity file: an encrypted job's index (the file names) is encrypted too; "
        "repeatable",
    )
    p.add_argument(
        "--destination",
        "-d",
        metavar="NAME",
        help="read this destination (default: the job's first)",
    )
    p.add_argument("--host", metavar="HOST", help=offline.HOST_HELP)
    trust.add_arguments(p)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "ls",
        parents=[common],
        help="list what a snapshot holds (from its index)",
        description="List a snapshot's contents like ls: the state at that snapshot (an "
        "incremental's chain resolved), read from its index only. One word after JOB is a "
        "SNAPSHOT if it is 'latest' or looks like a snapshot id (20261123T...), else a PATH.",
    )
    p.add_argument("job", metavar="JOB", help=offline.SERIES_HELP)
    p.add_argument(
        "snapshot",
        nargs="?",
        metavar="SNAPSHOT",
        help="snapshot id, unique prefix, or 'latest' (default)",
    )
    p.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help="a path as archived, e.g. etc/nginx (default: the top)",
    )
    p.add_argument(
        "--long", "-l", action="store_true",
        help="mode, owner (numeric), size (a device: major, minor), mtime, link target",
    )
    p.add_argument(
        "--recursive", "-R", action="store_true", help="everything below PATH, as full paths"
    )
    _common(p)
    declare(p, offline=cmd_ls)

    p = sub.add_parser(
        "find",
        parents=[common],
        help="which snapshots hold paths matching a pattern",
        description="Find paths matching PATTERN (a glob: without '/' it matches names, "
        "with '/' whole archived paths, '**' across directories) in the latest snapshot, "
        "every snapshot (--all) or those since a date; newest first, from the indexes only. "
        "Exit 3 when nothing matches.",
    )
    p.add_argument("job", metavar="JOB", help=offline.SERIES_HELP)
    p.add_argument(
        "pattern", metavar="PATTERN", help="e.g. 'invoice-2026-*.pdf' or 'etc/nginx/**/shop'"
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--all", action="store_true", help="search every snapshot of the job")
    g.add_argument(
        "--since",
        metavar="DATE",
        help="search the snapshots made since DATE (YYYY-MM-DD[THH:MM], UTC)",
    )
    _common(p)
    declare(p, offline=cmd_find)

    p = sub.add_parser(
        "diff",
        parents=[common],
        help="what changed between two snapshots",
        description="Paths added (+), removed (-), modified (M: content, type or link target) "
        "and with only mode or owner changed (U) from SNAPSHOT_A to SNAPSHOT_B, from the indexes.",
    )
    p.add_argument("job", metavar="JOB", help=offline.SERIES_HELP)
    p.add_argument(
        "snapshot_a", metavar="SNAPSHOT_A", help="snapshot id, unique prefix, or 'latest'"
    )
    p.add_argument(
        "snapshot_b", metavar="SNAPSHOT_B", help="snapshot id, unique prefix, or 'latest'"
    )
    _common(p)
    declare(p, offline=cmd_diff)
