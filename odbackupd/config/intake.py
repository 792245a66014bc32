"""The ``[intake]`` section and its ``[intake.user.NAME]`` tables (odbackupd-intake).

The write-only intake service reads the daemon's configuration file: ``[intake]`` says
where it listens and how big a file may be, each ``[intake.user.NAME]`` names a token
(stored only as its SHA-256) and the job whose ``drop_dir`` receives that user's files.
The keys are declared with :func:`.schema.key` like every other section, so the sample,
the man page and ``--check-config`` cover them; the rules between keys are
:func:`check_intake`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .fields import key, name_ref
from .kinds import Duration, PathKind, Size, Str
from .units import GiB

__all__ = ["IntakeConfig", "IntakeUserConfig", "check_intake", "parse_listen"]


def parse_listen(value: str) -> tuple[str, int] | str:
    """``host:port`` / ``[v6]:port`` -> (host, port); ``/path`` (a Unix socket) -> the path."""
    if value.startswith("/"):
        return value
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([A-Za-z0-9._-]+):(\d+)", value)
    if not m:
        raise ValueError(
            f"invalid listen address '{value}': write host:port (127.0.0.1:8421, [::1]:8421) "
            "or the absolute path of a Unix socket"
        )
    host, port = (m[1], m[2]) if m[1] else (m[3], m[4])
    if not 0 < int(port) < 65536:
        raise ValueError(f"invalid listen address '{value}': port must be 1 to 65535")
    return host, int(port)


def _listen(value: str) -> str:
    parse_listen(value)
    return value


@dataclass(frozen=True)
class IntakeUserConfig:
    name: str
    token_file: Path = key(  # noqa: RUF009 - key() returns a Field
        kind=PathKind(credential=True),
        doc="The SHA-256 (hex) of this user's bearer token, never the token: a systemd "
        "credential name (the packaged unit loads every file of /etc/odbackupd/intake/ as "
        "intake_<file name>) or an absolute path. `odctl intake add-user NAME` makes a token, "
        "prints it once and writes this file.",
        example="intake_pve1",
    )
    drop_job: str = key(
        kind=Str("job name", check=name_ref),
        doc="The [job.NAME] whose drop_dir receives this user's files; the daemon stores each "
        "as a snapshot of the series <job>+drop and removes it once verified.",
        example="pve1-dumps",
    )
    quota: int | None = key(
        None,
        kind=Size(1),
        doc="Bytes this user may have waiting: files landed in the drop directory that the "
        "daemon has not stored and removed yet, plus unfinished uploads. Unset: no quota.",
        example="500GiB",
    )
    partial_dir: Path | None = key(  # noqa: RUF009 - key() returns a Field
        None,
        kind=PathKind(),
        default_doc="the drop_dir's path with .partial appended (/srv/intake/pve1.partial)",
        doc="Where this user's uploads are written until they are complete (created if "
        "missing). It must be on the drop directory's file system, since a finished file is "
        "renamed in, and outside it.",
        example="/srv/intake/partial/pve1",
    )


@dataclass(frozen=True)
class IntakeConfig:
    listen: str = key(
        "127.0.0.1:8421",
        kind=Str("address", check=_listen),
        doc="host:port or the absolute path of a Unix socket for the reverse proxy to connect "
        "to. Ignored under socket activation (odbackupd-intake.socket decides).",
        example="127.0.0.1:8421",
    )
    max_file_size: int = key(
        50 * GiB,
        kind=Size(1),
        doc="The largest file accepted, checked against Content-Length or Upload-Length and "
        "again while the body streams in (chunked uploads).",
        example="50GiB",
    )
    state_dir: Path = key(  # noqa: RUF009 - key() returns a Field
        Path("/var/lib/odbackupd-intake"),
        kind=PathKind(),
        doc="The intake's own state: what each unfinished resumable upload is (they survive "
        "a restart) and what each user has waiting. systemd's StateDirectory= creates it.",
        example="/var/lib/odbackupd-intake",
    )
    upload_expiry: float = key(
        86400.0,
        kind=Duration(1),
        doc="An unfinished resumable upload that received nothing for this long is deleted "
        "(checked every tenth of it, at most every minute).",
        example="1d",
    )
    users: dict[str, IntakeUserConfig] = field(default_factory=dict)


def check_intake(r, users: dict, jobs: dict) -> None:  # noqa: ANN001
    """Each user's drop_job must be a job with a drop_dir; partial_dir outside it."""
    for t in users.values():
        job_name = t.get("drop_job")
        if job_name is None:
            continue
        job = jobs.get(job_name)
        at = (*t.path, "drop_job")
        if job is None:
            r.error(at, f"no job '{job_name}': add [job.{job_name}] with a drop_dir")
            continue
        drop = job.get("drop_dir")
        if drop is None:
            r.error(at, f"job '{job_name}' has no drop_dir: intake files land in a drop directory")
            continue
        partial = t.get("partial_dir")
        if partial is not None and (
            partial == drop or drop in partial.parents or partial in drop.parents
        ):
            r.error((*t.path, "partial_dir"), f"'{partial}' overlaps drop_dir '{drop}' of job "
                    f"'{job_name}': unfinished uploads must stay outside the drop directory")
