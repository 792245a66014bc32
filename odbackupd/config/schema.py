"""The configuration schema: the one place where every key is defined.

Each key is a field of a frozen dataclass, and the field's metadata holds everything
else about it — its kind (how it is checked and converted), its description and an
example. Loading, validation, the generated sample (:func:`~.sample.sample_config`)
and the reference for the man page (:func:`schema_reference`) all read these fields,
so a key added here is checked, documented and shown in the sample at once.

Rules that tie several keys together (a job naming a destination, a local
destination needing a path, …) live in :mod:`.checks`.

``[destination.NAME]`` is made from the destination kinds (:mod:`.destkinds`): ``name``,
``type`` (one of the kinds) and every kind's keys, in the kinds' order.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import socket
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .kinds import (
    AgeRecipient,
    Bool,
    Choice,
    Cron,
    Duration,
    Int,
    Kind,
    ListOf,
    PathKind,
    Size,
    Str,
    toml_literal,
)
from .fields import key, name_ref
from .intake import IntakeConfig, IntakeUserConfig
from .notify_schema import NOTIFY_SECTION, NotifyConfig, notify_list
from .destkinds import DestinationKind
from .destkinds import kinds as destination_kinds
from .units import MiB

__all__ = [
    "SAMPLE_RECIPIENT", "SECTIONS", "AccountConfig", "Config", "DaemonConfig", "DestinationConfig",
    "IntakeConfig", "IntakeUserConfig", "JobConfig", "KeyDoc", "Section", "destination_config",
    "schema_fields", "schema_reference", "sections",
]  # fmt: skip

#: A public key whose identity was thrown away: safe to print in samples and docs.
SAMPLE_RECIPIENT = "age1ad0jxaw65u4plmvqnhru9vmjr5tlrtjkyz652yh722ycqk570y5qkpds2l"

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DOMAIN = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


# ---- string checks (each returns the normalised value, or raises ValueError) ----------


def _hostname(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
        raise ValueError(f"invalid host name '{value}': use letters, digits, '.', '_' and '-'")
    return value


def _client_id(value: str) -> str:
    if not _GUID.fullmatch(value):
        raise ValueError(
            f"invalid client_id '{value}': expected the application (client) ID of an "
            "app registration, a GUID like 00000000-0000-0000-0000-000000000000"
        )
    return value.lower()


def _tenant(value: str) -> str:
    if value in ("consumers", "organizations", "common"):
        return value
    if _GUID.fullmatch(value) or _DOMAIN.fullmatch(value):
        return value.lower()
    raise ValueError(
        f"invalid tenant '{value}': expected consumers, organizations, common, a tenant ID "
        "(GUID) or a domain such as contoso.onmicrosoft.com"
    )


def _drive_id(value: str) -> str:
    if re.search(r"[\s/?#]", value):
        raise ValueError(f"invalid drive_id '{value}': must not contain spaces, '/', '?' or '#'")
    return value


def _site(value: str) -> str:
    if ":" in value:
        host, _, path = value.partition(":")
        if _DOMAIN.fullmatch(host) and re.fullmatch(r"/[^\s?#]+", path):
            return value.rstrip("/")
        raise ValueError(
            f"invalid site '{value}': expected 'hostname:/sites/path' "
            "(e.g. contoso.sharepoint.com:/sites/backup) or a site ID"
        )
    if re.search(r"[\s/?#]", value):
        raise ValueError(
            f"invalid site '{value}': expected 'hostname:/sites/path' or a site ID "
            "(host,site-guid,web-guid)"
        )
    return value


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value.rstrip("/")
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return value.rstrip("/")  # a local test emulator
    raise ValueError(
        f"invalid URL '{value}': expected https://host[/path] (http only for localhost)"
    )


def _pattern(value: str) -> str:
    if "\0" in value:
        raise ValueError("must not contain a NUL character")
    return value


# ---- the sections -------------------------------------------------------------------


@dataclass(frozen=True)
class DaemonConfig:
    state_dir: Path = key(  # noqa: RUF009 - key() returns a Field
        Path("/var/lib/odbackupd"),
        kind=PathKind(),
        doc="Where the daemon keeps its state database: runs, checkpoints, upload sessions "
        "and tokens. systemd's StateDirectory= creates it.",
        example="/var/lib/odbackupd",
    )
    spool_dir: Path = key(  # noqa: RUF009 - key() returns a Field
        Path("/var/cache/odbackupd"),
        kind=PathKind(),
        doc="Scratch space for volumes waiting to be uploaded. It holds a few volumes per "
        "running job, never a whole backup. systemd's CacheDirectory= creates it.",
        example="/var/cache/odbackupd",
    )
    hostname: str = key(
        kind=Str("host name", check=_hostname),
        default_factory=socket.gethostname,
        default_doc="the machine's host name",
        doc="The name recorded in snapshot manifests, so you can tell which server a "
        "snapshot came from.",
        example="fileserver1",
    )
    max_parallel_runs: int = key(
        2,
        kind=Int(1, 64),
        doc="How many jobs may run at the same time; more wait their turn.",
        example=2,
    )
    max_parallel_uploads: int = key(
        4,
        kind=Int(1, 64),
        doc="How many volumes are uploaded at the same time, over all running jobs.",
        example=4,
    )
    bandwidth_limit: int | None = key(
        None,
        kind=Size(1, per_second=True),
        doc="Upload bandwidth cap in bytes per second over all uploads. Unset: no limit.",
        example="8MiB",
    )
    log_level: str = key(
        "info",
        kind=Choice("debug", "info", "notice", "warning", "error"),
        doc="The least important messages that are logged.",
        example="info",
    )
    metrics_file: Path | None = key(  # noqa: RUF009 - key() returns a Field
        None,
        kind=PathKind(),
        doc="Write Prometheus metrics to this file (node_exporter's textfile collector: "
        "/var/lib/prometheus/node-exporter/odbackupd.prom), rewritten atomically after every "
        "run, prune, verify and login change. Must end in .prom. Unset: no metrics.",
        example="/var/lib/prometheus/node-exporter/odbackupd.prom",
    )
    notify: tuple[str, ...] = notify_list(
        "The [notify.NAME]s of every job that does not set notify itself.", ()
    )


@dataclass(frozen=True)
class AccountConfig:
    name: str
    client_id: str = key(
        kind=Str("GUID", check=_client_id),
        doc="The application (client) ID of the Microsoft Entra app registration used to "
        "log in (`odctl login`).",
        example="00000000-0000-0000-0000-000000000000",
    )
    tenant: str = key(
        "consumers",
        kind=Str("tenant", check=_tenant),
        doc='"consumers" for a personal Microsoft account, "organizations" or "common" for '
        "work or school accounts, or a tenant ID or domain (required for app-only login).",
        example="consumers",
    )
    drive: str = key(
        "me",
        kind=Choice("me"),
        doc='"me": the signed-in user\'s own OneDrive. Leave unset when drive_id or site '
        "is given; those take precedence.",
        example="me",
    )
    drive_id: str | None = key(
        None,
        kind=Str("drive ID", check=_drive_id),
        doc="A specific drive (e.g. a SharePoint document library) by its Graph drive ID. "
        "Excludes site.",
        example="b!xK2nLq0bP0aFd8HFl2GNJvA3H1RoEUVPh0u5QqzXxLm",
    )
    site: str | None = key(
        None,
        kind=Str("site", check=_site),
        doc="A SharePoint site whose default document library receives the backups: "
        "'hostname:/sites/path' or a site ID. Excludes drive_id; needs a work or school "
        "tenant.",
        example="contoso.sharepoint.com:/sites/backup",
    )
    client_secret_file: Path | None = key(  # noqa: RUF009 - key() returns a Field
        None,
        kind=PathKind(credential=True),
        doc="App-only (client credentials) login: the client secret, read from this "
        "systemd credential (LoadCredential=) or absolute path. Needs a specific tenant "
        "and drive_id or site. Excludes certificate_file.",
        example="odbackupd-client-secret",
    )
    certificate_file: Path | None = key(  # noqa: RUF009 - key() returns a Field
        None,
        kind=PathKind(credential=True),
        doc="App-only login with a certificate instead of a secret: a PEM file holding the "
        "private key and certificate, as a systemd credential name or absolute path.",
        example="/etc/odbackupd/app.pem",
    )
    authority_url: str = key(
        "https://login.microsoftonline.com",
        kind=Str("URL", check=_url),
        doc="The Microsoft identity platform endpoint (change it for national clouds).",
        example="https://login.microsoftonline.com",
    )
    graph_url: str = key(
        "https://graph.microsoft.com/v1.0",
        kind=Str("URL", check=_url),
        doc="The Microsoft Graph endpoint (change it for national clouds).",
        example="https://graph.microsoft.com/v1.0",
    )
    ca_bundle: Path | None = key(  # noqa: RUF009 - key() returns a Field
        None,
        kind=PathKind(),
        doc="PEM file of CA certificates to trust for login and Graph instead of the "
        "system's (for a TLS-inspecting proxy).",
        example="/etc/ssl/certs/corporate-proxy.pem",
    )
    read_only: bool = key(
        False,
        kind=Bool(),
        doc="Log in with read permission only (Files.Read.All): for a monitoring or restore "
        "machine running odctl fleet-status, snapshots, verify and restore. Backups and "
        "pruning through this account fail.",
        example=False,
    )


@dataclass(frozen=True)
class JobConfig:
    name: str
    sources: tuple[Path, ...] = key(
        (),
        kind=ListOf(PathKind(), unique=True),  # empty only with a drop_dir: see checks
        default_doc="none; a job without sources needs a drop_dir",
        doc="The directories (or single files) to back up. Required unless the job only "
        "takes files from a drop_dir.",
        example=["/etc", "/srv/git"],
    )
    destinations: tuple[str, ...] = key(
        ("local",),
        kind=ListOf(Str("destination name", check=name_ref), nonempty=True, unique=True),
        doc="The [destination.NAME]s that receive every snapshot of this job. "
        '"local" is built in (/var/backups/odbackupd) unless you define your own.',
        example=["usb"],
    )
    exclude: tuple[str, ...] = key(
        (),
        kind=ListOf(Str("pattern", check=_pattern)),
        doc="Shell patterns of paths to leave out. Without a '/' a pattern is matched "
        "against each name (*.tmp); starting with '/' against the whole path; otherwise "
        "against the end of the path. '*' and '?' stay within a name, '**' crosses "
        "directories; an excluded directory is not descended into.",
        example=["*.tmp", "/srv/git/**/cache"],
    )
    recipients: tuple[str, ...] = key(
        (),
        kind=ListOf(AgeRecipient(), unique=True),
        doc="age public keys (age1…, from `age-keygen -y`) that can decrypt the snapshots; "
        "keep the identities offline. Unset or empty: the job is not encrypted.",
        example=[SAMPLE_RECIPIENT],
    )
    trusted_key: Path | None = key(  # noqa: RUF009 - key() returns a Field
        None,
        kind=PathKind(),
        doc="The public key that signs this job's snapshots (what `odctl key export` prints on "
        "the host that makes them). odctl verify and restore then refuse a snapshot that is "
        "unsigned or signed by another key. Set it where snapshots are restored, e.g. on "
        "another machine; --trusted-key FILE does the same for one command.",
        example="/etc/odbackupd/web1-signing.pub",
    )
    volume_size: int = key(
        64 * MiB,
        kind=Size(MiB, maximum=250 * 1024**3),
        doc="Snapshots are cut into volumes of this size; the spool holds a few of them. "
        "At least 1MiB.",
        example="64MiB",
    )
    compression_level: int = key(
        3,
        kind=Int(1, 22),
        doc="zstd compression level, 1 (fastest) to 19. 20 to 22 are accepted with a "
        "warning: they need far more memory per thread.",
        example=3,
    )
    compression_threads: int = key(
        0,
        kind=Int(0, 256),
        doc="zstd worker threads; 0 uses all cores.",
        example=0,
    )
    one_file_system: bool = key(
        True,
        kind=Bool(),
        doc="Stay on the file system of each source, like `tar --one-file-system` (skips "
        "/proc, other mounts, …).",
        example=True,
    )
    allow_empty_sources: bool = key(
        False,
        kind=Bool(),
        doc="A source directory that had files at the last snapshot and is empty now fails the "
        "run (an unmounted disk leaves an empty mount point; an empty snapshot would count for "
        "retention). Set true when a source may be emptied on purpose.",
        example=False,
    )
    keep_last: int | None = key(
        None,
        kind=Int(1),
        doc="Retention: keep the newest N snapshots. Unset: no such rule. A snapshot kept "
        "by any rule is kept, and the newest snapshot always is.",
        example=10,
    )
    keep_daily: int | None = key(
        None,
        kind=Int(1),
        doc="Retention: keep the last snapshot of each of the last N days that have one.",
        example=7,
    )
    keep_weekly: int | None = key(
        None,
        kind=Int(1),
        doc="Retention: keep the last snapshot of each of the last N weeks that have one.",
        example=4,
    )
    keep_monthly: int | None = key(
        None,
        kind=Int(1),
        doc="Retention: keep the last snapshot of each of the last N months that have one.",
        example=6,
    )
    max_size: int | None = key(
        None,
        kind=Size(1),
        doc="Retention: size cap for this job's snapshots on each destination; the oldest "
        "are deleted to stay under it. Unset: no cap.",
        example="20GiB",
    )
    full_every: int = key(
        14,
        kind=Int(1),
        doc="Incremental snapshots: a full snapshot at least every Nth run of this job, "
        "incrementals (only what changed since the previous snapshot) in between; 1 makes "
        "every snapshot a full. A restore of an incremental applies its whole chain (the full "
        "and every incremental up to it), and retention keeps a chain's snapshots while any "
        "later one of it is kept.",
        example=7,
    )
    full_if_older_than: float = key(
        30 * 86400.0,
        kind=Duration(minimum=1.0),
        doc="Incremental snapshots: the next run is a full when the last full snapshot is "
        "at least this old (either this or full_every makes a full).",
        example="30d",
    )
    ignore_inode: bool = key(
        False,
        kind=Bool(),
        doc="Change detection: do not compare inode numbers (for FUSE and network file "
        "systems whose inode numbers change between mounts).",
        example=False,
    )
    ignore_ctime: bool = key(
        False,
        kind=Bool(),
        doc="Change detection: do not compare ctime (for file systems that do not keep it); "
        "a rewrite that sets the mtime back is then missed.",
        example=False,
    )
    schedule: str | None = key(
        None,
        kind=Cron(),
        doc="When to run, as a cron expression (minute hour day month weekday, or "
        "@daily, @hourly, …) in the machine's time zone. Unset: no scheduled runs.",
        example="30 2 * * *",
    )
    random_delay: float = key(
        0.0,
        kind=Duration(),
        doc="Delay each scheduled run by a random time up to this, to spread load.",
        example="10min",
    )
    persistent: bool = key(
        True,
        kind=Bool(),
        doc="Run at start-up if a scheduled run was missed while the machine was off.",
        example=True,
    )
    watch: bool = key(
        False,
        kind=Bool(),
        doc="Watch the sources with inotify and run after changes.",
        example=False,
    )
    quiet_period: float = key(
        300.0,
        kind=Duration(),
        doc="With watch: run once no change has been seen for this long. With drop_dir: "
        "how long a file whose closing was not seen (there at start-up, or hard-linked in) "
        "must stay unchanged, and not open for writing, before it is taken.",
        example="5min",
    )
    max_delay: float = key(
        3600.0,
        kind=Duration(),
        doc="With watch: run at the latest this long after the first change, even if "
        "changes keep coming. At least quiet_period.",
        example="1h",
    )
    drop_dir: Path | None = key(  # noqa: RUF009 - key() returns a Field
        None,
        kind=PathKind(),
        doc="A drop directory: each complete file put here (closed after writing or moved "
        "in) becomes its own snapshot in the series <job>+drop (encrypted if the job is) "
        "and is removed once that is verified. Names starting with '.' or ending in .tmp, "
        ".part or ~ wait until renamed; subdirectories are left alone. Must exist and not "
        "overlap sources, destinations or the daemon's own directories; under the packaged "
        "unit it also needs ReadWritePaths= (systemctl edit odbackupd) so files can be removed.",
        example="/srv/drop/etc",
    )
    notify: tuple[str, ...] | None = notify_list(
        "The [notify.NAME]s told about this job's runs; [] for none.", None
    )


@dataclass(frozen=True)
class Config:
    """The whole, validated configuration; ``warnings`` are worth logging, not fatal."""

    path: Path | None
    daemon: DaemonConfig
    destinations: dict[str, DestinationConfig]
    accounts: dict[str, AccountConfig]
    jobs: dict[str, JobConfig]
    warnings: tuple[str, ...] = ()
    notify: dict[str, NotifyConfig] = field(default_factory=dict)
    intake: IntakeConfig = field(default_factory=lambda: IntakeConfig())


@dataclass(frozen=True)
class Section:
    """A top-level TOML table: ``[daemon]`` or a family of named tables ``[job.NAME]``."""

    name: str
    cls: type
    named: bool
    doc: str
    #: Example tables for the sample: (table name, keys set in it, comment). The first
    #: table documents every key; the others show only what they set.
    samples: tuple[tuple[str, dict[str, Any], str], ...] = ()

    @property
    def path(self) -> tuple[str, ...]:
        """Where its tables are: ("job",), or ("intake", "user") for [intake.user.NAME]."""
        return tuple(self.name.split("."))


_DESTINATION_DOC = (
    "Destinations: where snapshots are stored, one [destination.NAME] each. Names may "
    "use letters, digits, '_', '.' and '-' (quote names with a dot: "
    '[destination."a.b"]).'
)


def _copy_field(f: dataclasses.Field) -> dataclasses.Field:
    if f.default_factory is not MISSING:
        return field(default_factory=f.default_factory, metadata=f.metadata)
    return field(default=f.default, metadata=f.metadata)


def _either(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


@functools.cache
def _destination_section(kinds: tuple[DestinationKind, ...]) -> Section:
    """The [destination.NAME] section of these kinds; the same kinds give the same class."""
    names = [k.name for k in kinds]
    kind_type = key(
        kind=Choice(*names),
        doc="Where snapshots go: " + _either([f'"{k.name}" ({k.summary})' for k in kinds]) + ".",
        example=names[0],
    )
    cls = dataclasses.make_dataclass(
        "DestinationConfig",
        [("name", str), ("type", str, kind_type)]
        + [(f.name, f.type, _copy_field(f)) for k in kinds for f in dataclasses.fields(k.settings)],
        frozen=True,
    )
    cls.__module__ = __name__  # make_dataclass(module=) is Python 3.12
    cls.__doc__ = "One [destination.NAME]: its type and the keys of every destination kind."
    return Section("destination", cls, True, _DESTINATION_DOC, tuple(s for k in kinds for s in k.samples))


SECTIONS: tuple[Section, ...] = (
    Section(
        "daemon",
        DaemonConfig,
        False,
        "Settings of the daemon itself.",
        (("", {}, ""),),
    ),
    _destination_section(destination_kinds()),
    Section(
        "account",
        AccountConfig,
        True,
        "Microsoft accounts that onedrive destinations log in with, one [account.NAME] each. "
        "Log in once with `odctl login NAME` (device code flow, no browser needed on the "
        "server).",
        (("personal", {"client_id": "00000000-0000-0000-0000-000000000000"}, ""),),
    ),
    Section(
        "job",
        JobConfig,
        True,
        "Jobs: what to back up, where, when, and for how long to keep it, one [job.NAME] "
        "each. The name is the job's folder name on every destination.",
        (
            ("etc", {"sources": ["/etc", "/srv/git"], "destinations": ["usb", "onedrive"], "notify": ["ops"]},
             ""),
            (
                "pve1-dumps",
                {"drop_dir": "/srv/intake/pve1", "destinations": ["onedrive"]},
                "A drop-directory job: here, what odbackupd-intake user pve1 sends.",
            ),
        ),
    ),
    Section(**NOTIFY_SECTION),
    Section(
        "intake",
        IntakeConfig,
        False,
        "The write-only intake, odbackupd-intake: other machines and a browser upload files "
        "over HTTP(S) behind a reverse proxy into per-user drop directories they cannot list, "
        "read back or delete.",
        (("", {}, ""),),
    ),
    Section(
        "intake.user",
        IntakeUserConfig,
        True,
        "Intake users, one [intake.user.NAME] each: a bearer token (stored as its SHA-256 "
        "only) and the job whose drop_dir receives the files. `odctl intake add-user NAME` "
        "makes the token.",
        (("pve1", {"token_file": "intake_pve1", "drop_job": "pve1-dumps"}, ""),),
    ),
)
#: The class of [destination.NAME] tables for the built-in kinds.
DestinationConfig = SECTIONS[1].cls


def sections() -> tuple[Section, ...]:
    """SECTIONS with the destination section of the kinds registered now."""
    current = _destination_section(destination_kinds())
    return tuple(current if s.name == "destination" else s for s in SECTIONS)


def destination_config() -> type:
    """The class of [destination.NAME] tables for the kinds registered now."""
    return _destination_section(destination_kinds()).cls


def schema_fields(cls: type) -> dict[str, dataclasses.Field]:
    """The fields of a section dataclass that are configuration keys."""
    return {f.name: f for f in dataclasses.fields(cls) if "kind" in f.metadata}


def is_required(f: dataclasses.Field) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


@dataclass(frozen=True)
class KeyDoc:
    """One key, as documentation: what the man page and the sample say about it."""

    section: str  # "daemon", "destination", "account", "job", "notify", "intake" or "intake.user"
    name: str
    type: str
    default: str | None  # TOML spelling or prose; None: required, or unset by default
    description: str
    example: str  # TOML spelling
    required: bool = False


def _default_doc(f: dataclasses.Field) -> str | None:
    if f.metadata["default_doc"]:
        return f.metadata["default_doc"]
    if is_required(f) or f.default is None:
        return None
    return toml_literal(f.metadata["kind"].to_raw(f.default))


def schema_reference() -> list[KeyDoc]:
    """Every key of every section, in schema order: the source of the docs."""
    out = []
    for section in sections():
        for f in schema_fields(section.cls).values():
            out.append(
                KeyDoc(
                    section=section.name,
                    name=f.name,
                    type=f.metadata["kind"].doc,
                    default=_default_doc(f),
                    description=f.metadata["doc"],
                    example=toml_literal(f.metadata["example"]),
                    required=is_required(f),
                )
            )
    return out
