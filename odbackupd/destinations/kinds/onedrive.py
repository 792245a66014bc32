"""``type = "onedrive"``: a folder of a OneDrive or SharePoint drive, through an [account.NAME].

The implementation (``destinations/onedrive.py``, on ``requests`` and the Graph client)
is imported only when one is opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...config.destkinds import Capabilities, CheckContext, DestinationKind, register
from ...config.fields import key, name_ref
from ...config.kinds import Bool, Size, Str, suggest
from ...config.units import KiB, MiB

if TYPE_CHECKING:
    from ...config.checks import Reporter, Table
    from ...config.schema import Config
    from ...state import StateStore
    from ..onedrive import OneDriveDestination

#: Microsoft Graph upload sessions take chunks in multiples of 320 KiB, below 60 MiB.
CHUNK_UNIT = 320 * KiB
CHUNK_LIMIT = 60 * MiB

#: OneDrive reports each file's quickXorHash (and on some drives its SHA-256), so verify
#: checks those without a download; uploads are network-bound and run in parallel.
CAPABILITIES = Capabilities(hashes=frozenset({"quickxor", "sha256"}), parallel_uploads=True)


def _onedrive_folder(value: str) -> str:
    parts = value.strip("/").split("/")
    for part in parts:
        if not part or part in (".", ".."):
            raise ValueError(f"invalid folder '{value}': empty, '.' or '..' path component")
        bad = sorted(set(part) & set('"*:<>?\\|'))
        if bad:
            raise ValueError(
                f"invalid folder '{value}': OneDrive does not allow {' '.join(bad)} in names"
            )
        if part != part.strip() or part.endswith("."):
            raise ValueError(
                f"invalid folder '{value}': OneDrive names cannot start or end with a space "
                "or end with '.'"
            )
    return "/".join(parts)


@dataclass(frozen=True)
class OneDriveSettings:
    account: str | None = key(
        None,
        kind=Str("account name", check=name_ref),
        doc='type = "onedrive" only, and required there: the [account.NAME] to log in with.',
        example="personal",
    )
    folder: str = key(
        "odbackupd",
        kind=Str("folder", check=_onedrive_folder),
        doc='type = "onedrive" only: the folder in the drive that receives '
        "<host>/<job>/<snapshot>/ folders; '/' separates subfolders.",
        example="Backups/odbackupd",
    )
    chunk_size: int = key(
        10 * MiB,
        kind=Size(CHUNK_UNIT, below=CHUNK_LIMIT, multiple_of=CHUNK_UNIT),
        doc='type = "onedrive" only: the size of each upload request; a failed upload '
        "resumes from the last whole chunk. Microsoft Graph needs a multiple of 320KiB "
        "below 60MiB.",
        example="10MiB",
    )
    hard_delete: bool = key(
        False,
        kind=Bool(),
        doc='type = "onedrive" only: delete pruned snapshots for good (Graph\'s permanentDelete) '
        "instead of moving them to the recycle bin, where they keep counting against the "
        "drive's quota (OneDrive for Business and SharePoint keep them up to 93 days). Work or "
        "school drives only: personal OneDrive has no permanent delete, so there pruned "
        "snapshots go to the recycle bin whatever this says.",
        example=True,
    )


def _open(
    name: str, settings: OneDriveSettings, config: Config, state: StateStore | None
) -> OneDriveDestination:
    from ..onedrive import OneDriveDestination

    account = config.accounts[settings.account]
    return OneDriveDestination(name, settings, account, state=state, daemon=config.daemon)


def _personal_account(t: Table) -> bool:
    """An account whose drive can only be a personal OneDrive (tenant consumers, "me")."""
    tenant = t.get("tenant", "consumers")
    return tenant == "consumers" and not t.get("drive_id") and not t.get("site")


def _check(r: Reporter, t: Table, ctx: CheckContext) -> None:
    account = t.get("account")
    if account is None:
        return
    ctx.used_accounts.add(account)
    if account not in ctx.accounts:
        hint = suggest(account, list(ctx.accounts)) or (
            f"; define it in [account.{account}]" if not ctx.accounts else ""
        )
        r.error((*t.path, "account"), f"unknown account '{account}'{hint}")
    elif t.get("hard_delete") and _personal_account(ctx.accounts[account]):
        r.warn((*t.path, "hard_delete"), (
            f"account '{account}' is a personal OneDrive (no drive_id or site, tenant "
            f"'{ctx.accounts[account].get('tenant', 'consumers')}'), which has no permanent "
            "delete: pruned snapshots go to the recycle bin and count against the quota "
            "until it is emptied"))


def _target(t: Table) -> tuple[Any, ...] | None:
    if t.get("account") and t.valid("folder"):
        return ("onedrive", t.get("account"), t.get("folder", "odbackupd").lower())
    return None


KIND = register(DestinationKind(
    name="onedrive",
    summary="a OneDrive or SharePoint drive reached through an [account.NAME]",
    settings=OneDriveSettings,
    open=_open,
    capabilities=CAPABILITIES,
    required=("account",),
    samples=((
        "onedrive",
        {"type": "onedrive", "account": "personal"},
        "A OneDrive folder, reached through [account.personal].",
    ),),
    check=_check,
    target=_target,
))
