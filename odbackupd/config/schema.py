"""The configuration schema: every section, each key declared once.

Each key is a field of a frozen dataclass, and the field's metadata holds everything
else about it — its kind (how it is checked and converted), its description and an
example. Loading, validation, the generated sample (:func:`~.sample.sample_config`)
and the reference for the man page (:func:`schema_reference`) all read these fields,
so a key added to a section is checked, documented and shown in the sample at once.

This module holds [daemon] and puts the sections together; the others have modules of
their own (``account_schema``, ``job_schema``, ``notify_schema``, ``intake``), and
``[destination.NAME]`` is made from the destination kinds (:mod:`.destkinds`): ``name``,
``type`` (one of the kinds) and every kind's keys, in the kinds' order. Rules that tie
several keys together (a job naming a destination, a local destination needing a path,
…) live in :mod:`.checks`.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import socket
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

from .account_schema import AccountConfig
from .destkinds import DestinationKind
from .destkinds import kinds as destination_kinds
from .fields import key
from .intake import IntakeConfig, IntakeUserConfig
from .job_schema import SAMPLE_RECIPIENT, JobConfig
from .kinds import Choice, Int, PathKind, Size, Str, toml_literal
from .notify_schema import NOTIFY_SECTION, NotifyConfig, notify_list

__all__ = [
    "SAMPLE_RECIPIENT", "SECTIONS", "AccountConfig", "Config", "DaemonConfig", "DestinationConfig",
    "IntakeConfig", "IntakeUserConfig", "JobConfig", "KeyDoc", "Section", "destination_config",
    "schema_fields", "schema_reference", "sections",
]  # fmt: skip


# ---- string checks (each returns the normalised value, or raises ValueError) ----------


def _hostname(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
        raise ValueError(f"invalid host name '{value}': use letters, digits, '.', '_' and '-'")
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
    # destinations that are the embedded default (no [destination.NAME] of that name): only
    # these are created on first use; a configured one must exist (an unmounted disk)
    embedded: frozenset[str] = frozenset()


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
    samples = tuple(s for k in kinds for s in k.samples)
    return Section("destination", cls, True, _DESTINATION_DOC, samples)


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
            (
                "etc",
                {"sources": ["/etc", "/srv/git"], "destinations": ["usb", "onedrive"],
                 "notify": ["ops"]},
                "",
            ),
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
