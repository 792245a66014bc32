"""Cross-field rules: what no single key can check on its own.

Each function gets, per table, the values that passed their own key's check
(``values``) and the keys the user actually wrote (``written``), so it can tell a
default from an explicit setting and stays silent about a key that is already
reported as invalid.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from . import destkinds
from .errors import KeyPath
from .kinds import suggest
from .schema import DaemonConfig, schema_fields
from .units import format_duration, format_size

__all__ = ["Reporter", "Table", "cross_check"]


class Reporter(Protocol):
    def error(self, path: KeyPath, message: str) -> None: ...
    def warn(self, path: KeyPath, message: str) -> None: ...


@dataclass
class Table:
    """One table after its keys were checked one by one."""

    path: KeyPath
    values: dict[str, Any]  # valid values of the keys that were written
    written: set[str]  # every key written, valid or not

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def valid(self, key: str) -> bool:
        """Written and valid, or not written (so the default applies)."""
        return key in self.values or key not in self.written


def _inside(a: Path, b: Path) -> bool:
    """Whether *a* is *b* or below it."""
    return a == b or b in a.parents


def cross_check(
    r: Reporter,
    daemon: Table,
    destinations: dict[str, Table],
    accounts: dict[str, Table],
    jobs: dict[str, Table],
    *,
    check_sources: bool,
) -> None:
    ctx = destkinds.CheckContext(accounts, set(), check_sources)
    for t in destinations.values():
        _check_destination(r, t, ctx)
    _check_duplicate_destinations(r, destinations)
    for name, t in accounts.items():
        _check_account(r, t)
        if name not in ctx.used_accounts:
            r.warn(t.path, f"account '{name}' is not used by any destination")
    builtin = {k.name: k for k in destkinds.kinds() if k.builtin is not None}
    dest_names = set(destinations) | set(builtin)
    local_paths = _local_paths(destinations)
    for name, k in builtin.items():
        if name not in destinations and k.directory_key is not None:
            local_paths[name] = k.builtin.get(k.directory_key)
    daemon_fields = schema_fields(DaemonConfig)
    own_dirs = {k: daemon.get(k, daemon_fields[k].default) for k in ("state_dir", "spool_dir")}
    for t in jobs.values():
        _check_job(r, t, dest_names, local_paths, check_sources=check_sources)
        _check_triggers(r, t, own_dirs, local_paths, check_sources=check_sources)
    _check_jobs_together(r, jobs)


def _kind(t: Table) -> destkinds.DestinationKind | None:
    return destkinds.get(t.get("type"))


def _local_paths(destinations: dict[str, Table]) -> dict[str, Path | None]:
    """Destinations storing to a directory of this machine, and that directory."""
    return {n: t.get(k.directory_key) for n, t in destinations.items()
            if (k := _kind(t)) is not None and k.directory_key is not None}


def _check_destination(r: Reporter, t: Table, ctx: destkinds.CheckContext) -> None:
    """The keys its kind needs, the kind's own rules, and no key of another kind."""
    kind = _kind(t)
    if kind is None:
        return  # no type, or an invalid one: reported at 'type'
    for k in kind.required:
        if k not in t.written:
            r.error(t.path, f"missing required key '{k}' (needed for type = \"{kind.name}\")")
    if kind.check is not None:
        kind.check(r, t, ctx)
    for other in destkinds.kinds():
        if other is kind:
            continue
        for k in other.keys():
            if k in t.written:
                r.error((*t.path, k),
                        f"'{k}' applies only to destinations of type = \"{other.name}\"")


def _check_duplicate_destinations(r: Reporter, destinations: dict[str, Table]) -> None:
    seen: dict[tuple, str] = {}
    for name, t in destinations.items():
        kind = _kind(t)
        target = kind.target(t) if kind is not None and kind.target is not None else None
        if target is None:
            continue
        if target in seen:
            r.error(
                t.path,
                f"duplicate destination: '{name}' stores to the same place as '{seen[target]}'",
            )
        else:
            seen[target] = name
    local = list(_local_paths(destinations).items())
    for n1, p1 in local:
        for n2, p2 in local:
            if n1 != n2 and p1 and p2 and p1 != p2 and _inside(p1, p2):
                r.warn(
                    (*destinations[n1].path, _kind(destinations[n1]).directory_key),
                    f"is inside the path of destination '{n2}'; their job folders may collide",
                )


def _check_account(r: Reporter, t: Table) -> None:
    w = t.written
    if "drive" in w and ("drive_id" in w or "site" in w):
        r.error((*t.path, "drive"), "leave 'drive' unset when drive_id or site is given")
    if "drive_id" in w and "site" in w:
        r.error((*t.path, "site"), "set either drive_id or site, not both")
    if "client_secret_file" in w and "certificate_file" in w:
        r.error(
            (*t.path, "certificate_file"),
            "set either client_secret_file or certificate_file, not both",
        )
    if not t.valid("tenant"):
        return
    tenant = t.get("tenant", "consumers")
    tenant_at = (*t.path, "tenant") if "tenant" in w else t.path
    if "client_secret_file" in w or "certificate_file" in w:
        if tenant in ("consumers", "organizations", "common"):
            r.error(
                tenant_at,
                f"app-only login (client_secret_file/certificate_file) needs a specific "
                f"tenant, its ID or domain, not '{tenant}'",
            )
        if "drive_id" not in w and "site" not in w:
            r.error(t.path, "app-only login has no signed-in user ('me'): set drive_id or site")
    if "site" in w and tenant == "consumers":
        r.error(
            (*t.path, "site"),
            "SharePoint sites need a work or school account, but tenant is 'consumers' "
            "(set tenant to your organisation's domain or ID)",
        )


def _check_job(
    r: Reporter,
    t: Table,
    dest_names: set[str],
    local_paths: dict[str, Path | None],
    *,
    check_sources: bool,
) -> None:
    path = t.path
    names = t.get("destinations", ("local",))
    for i, d in enumerate(names if t.valid("destinations") else ()):
        if d not in dest_names:
            r.error(
                (*path, "destinations", i),
                f"unknown destination '{d}'" + suggest(d, sorted(dest_names)),
            )

    level = t.get("compression_level")
    if level is not None and level >= 20:
        r.warn(
            (*path, "compression_level"),
            f"level {level} is an ultra level: zstd then needs up to hundreds of MiB of "
            "memory per thread and is much slower; 19 is the usual maximum",
        )

    if "quiet_period" in t.values or "max_delay" in t.values:
        quiet, most = t.get("quiet_period", 300.0), t.get("max_delay", 3600.0)
        if t.valid("quiet_period") and t.valid("max_delay") and most < quiet:
            at = "max_delay" if "max_delay" in t.written else "quiet_period"
            r.error(
                (*path, at),
                f"max_delay ({format_duration(most)}) is shorter than quiet_period "
                f"({format_duration(quiet)})",
            )
    if "schedule" not in t.written:
        for k in ("random_delay", "persistent"):
            if k in t.values:
                r.warn((*path, k), "has no effect without a schedule")

    max_size, volume = t.get("max_size"), t.get("volume_size", 64 * 1024**2)
    if max_size is not None and t.valid("volume_size") and max_size < volume:
        r.warn(
            (*path, "max_size"),
            f"{format_size(max_size)} is smaller than one volume ({format_size(volume)}): "
            "every snapshot exceeds it",
        )

    sources: tuple[Path, ...] = t.get("sources", ())
    for i, a in enumerate(sources):
        for b in sources:
            if a != b and _inside(a, b):
                r.warn((*path, "sources", i), f"'{a}' is inside source '{b}'; it is archived twice")

    excludes = {e.rstrip("/") for e in t.get("exclude", ())}
    for d in names if t.valid("destinations") else ():
        dpath = local_paths.get(d)
        if dpath is None:
            continue
        for s in sources:
            if _inside(dpath, s) and not any(
                e.startswith("/") and _inside(dpath, Path(e)) for e in excludes
            ):
                at = (names.index(d),) if "destinations" in t.written else ()
                r.warn(
                    (*path, "destinations", *at),
                    f"destination '{d}' ({dpath}) is inside source '{s}': the job would back "
                    f'up its own snapshots (add "{dpath}" to exclude)',
                )

    if check_sources:
        for i, s in enumerate(sources):
            problem = _source_problem(s)
            if problem:
                r.error((*path, "sources", i), problem)
        key = t.get("trusted_key")
        if key is not None:
            from ..signing import SigningError, load_public_key

            try:
                load_public_key(key)
            except SigningError as e:
                r.error((*path, "trusted_key"), str(e))


def _check_triggers(
    r: Reporter,
    t: Table,
    own_dirs: dict[str, Path],
    local_paths: dict[str, Path | None],
    *,
    check_sources: bool,
) -> None:
    """watch, quiet_period, max_delay and drop_dir: what each needs, and where a drop
    directory must not be (its files are deleted once stored)."""
    path = t.path
    drop = t.get("drop_dir")
    if not t.get("sources") and t.valid("sources"):
        if "drop_dir" not in t.written:
            if "sources" in t.written:
                r.error((*path, "sources"), "must not be empty (a job without sources needs "
                        "a drop_dir)")
            else:
                r.error(path, "missing required key 'sources' (for example: sources = "
                        '["/etc", "/srv/git"]); a job needs sources, a drop_dir, or both')
        elif drop is not None:
            if t.get("watch", False):
                r.error((*path, "watch"), "watch = true needs sources to watch; this job only "
                        "has a drop_dir, whose files are taken as they arrive anyway")
            if "schedule" in t.written:
                r.error((*path, "schedule"), "a schedule needs sources to back up; this job "
                        "only has a drop_dir, whose files are taken as they arrive")
    watch = t.get("watch", False)
    if "quiet_period" in t.values and not watch and "drop_dir" not in t.written:
        r.warn((*path, "quiet_period"), "has no effect without watch = true or a drop_dir")
    if "max_delay" in t.values and not watch:
        r.warn((*path, "max_delay"), "has no effect without watch = true")
    if drop is None:
        return
    at = (*path, "drop_dir")
    for s in t.get("sources", ()):
        if _inside(drop, s) or _inside(s, drop):
            r.error(at, f"'{drop}' overlaps source '{s}': dropped files are removed once "
                    "uploaded, so a drop directory must be outside the sources")
    for key, d in own_dirs.items():
        if d is not None and (_inside(drop, d) or _inside(d, drop)):
            r.error(at, f"'{drop}' overlaps the daemon's {key} '{d}': its files would be "
                    "taken and deleted")
    for name, d in local_paths.items():
        if d is not None and (_inside(drop, d) or _inside(d, drop)):
            r.error(at, f"'{drop}' overlaps destination '{name}' ({d}): stored snapshots "
                    "would be taken as dropped files and deleted")
    if check_sources:
        problem = _source_problem(drop)
        if problem is None and not drop.is_dir():
            problem = f"'{drop}' is not a directory"
        if problem:
            r.error(at, problem + " (create the drop directory, writable by the senders)")


def symlinked_dir_source(path: Path) -> str | None:
    """A source that is a symlink to a directory: the archive would hold the bare link and
    0 files, a "successful" snapshot that retention counts. odbackupd stores links, never
    what they point to (the archive would otherwise change meaning when the link is moved,
    and a restore would put a directory where the system has a link), so this is an error
    with its fix. A link to a file (/etc/localtime) is stored as the link, as intended."""
    if not path.is_symlink() or not path.is_dir():
        return None
    return (f"source {path} is a symbolic link to the directory {os.path.realpath(path)}: "
            f"only the link would be stored, with none of the files; name the directory itself "
            f'in sources (sources = ["{os.path.realpath(path)}"])')


def _source_problem(path: Path) -> str | None:
    """Why the daemon could not read *path*, trying it for real.

    Opening is the only honest test: ``access(2)`` answers for the real user id and
    ignores CAP_DAC_READ_SEARCH, ACLs and LSMs decide too.
    """
    link = symlinked_dir_source(path)
    if link:
        return link
    try:
        st = path.stat()
    except FileNotFoundError:
        return f"'{path}' does not exist"
    except OSError as e:
        return f"'{path}' cannot be read: {e.strerror or e}"
    try:
        if path.is_dir():
            with os.scandir(path) as it:
                next(it, None)
        elif path.is_file():
            with open(path, "rb"):
                pass
        else:
            return f"'{path}' is neither a file nor a directory (mode {st.st_mode:o})"
    except OSError as e:
        return f"'{path}' cannot be read: {e.strerror or e}"
    return None


def _check_jobs_together(r: Reporter, jobs: dict[str, Table]) -> None:
    seen: dict[str, str] = {}
    for name, table in jobs.items():
        other = seen.setdefault(name.lower(), name)
        if other != name:
            r.error(
                table.path,
                f"job '{name}' differs from job '{other}' only in case; OneDrive folder names "
                "are case-insensitive, so both would use the same folder",
            )
    drops = [(n, t.get("drop_dir")) for n, t in jobs.items() if t.get("drop_dir") is not None]
    for i, (n1, d1) in enumerate(drops):
        for n2, d2 in drops[:i]:
            if _inside(d1, d2) or _inside(d2, d1):
                r.error(
                    (*jobs[n1].path, "drop_dir"),
                    f"'{d1}' overlaps the drop directory of job '{n2}' ('{d2}')",
                )
