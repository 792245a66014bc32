"""``type = "local"``: a directory on this machine (a mounted disk, NFS, another filesystem).

A destination named "local" exists without being configured: /var/backups/odbackupd,
created on first use, the default of every job's ``destinations``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...config.destkinds import Capabilities, CheckContext, DestinationKind, register
from ...config.fields import key
from ...config.kinds import PathKind

if TYPE_CHECKING:
    from ...config.checks import Reporter, Table
    from ...config.schema import Config
    from ...state import StateStore
    from ..local import LocalDestination

BUILTIN_LOCAL_PATH = Path("/var/backups/odbackupd")

#: Reading back costs no transfer, so verify reads the data instead of trusting a hash;
#: one disk gains nothing from parallel uploads.
CAPABILITIES = Capabilities()


@dataclass(frozen=True)
class LocalSettings:
    path: Path | None = key(  # noqa: RUF009 - key() returns a Field
        None,
        kind=PathKind(),
        doc='type = "local" only, and required there: the directory that receives '
        "<host>/<job>/<snapshot>/ folders.",
        example="/mnt/usb/backups",
    )


def _open(
    name: str, settings: LocalSettings, config: Config, state: StateStore | None
) -> LocalDestination:
    from ..local import LocalDestination

    # The built-in default destination is created on first use; a configured one must
    # exist, so an unmounted disk is an error rather than a silent write to /.
    return LocalDestination(name, settings.path, create=name in config.embedded)


def _check(r: Reporter, t: Table, ctx: CheckContext) -> None:
    path = t.get("path")
    if ctx.check_sources and path is not None and not Path(path).is_dir():
        # a warning, not an error: a disk may be mounted only around backup time
        r.warn((*t.path, "path"), f"{path} does not exist or is not a directory (disk not "
               "mounted?); runs to this destination fail until it does")


def _target(t: Table) -> tuple[Any, ...] | None:
    return ("local", t.get("path")) if t.get("path") is not None else None


KIND = register(DestinationKind(
    name="local",
    summary="a directory, e.g. a mounted disk",
    settings=LocalSettings,
    open=_open,
    capabilities=CAPABILITIES,
    required=("path",),
    samples=(("usb", {"type": "local", "path": "/mnt/usb/backups"}, "A local directory."),),
    check=_check,
    target=_target,
    directory_key="path",
    builtin={"path": BUILTIN_LOCAL_PATH},
))
