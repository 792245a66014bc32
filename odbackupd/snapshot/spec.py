"""What a snapshot run is given (``JobSpec``) and what it reports (``Progress`` while it
runs, ``RunResult`` at the end, with one of the statuses below)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..destinations.base import Destination
from ..runstatus import RunStatus
from .manifest import Manifest

if TYPE_CHECKING:
    from ..config import JobConfig

# a run's end, in the words of odbackupd.runstatus (one vocabulary for every layer)
COMPLETED = RunStatus.COMPLETED
COMPLETED_WITH_WARNINGS = RunStatus.COMPLETED_WITH_WARNINGS
FAILED = RunStatus.FAILED
CANCELLED = RunStatus.CANCELLED

MAX_WARNING_DETAILS = 200


class RunCancelled(Exception):
    pass


class RunFailed(Exception):
    pass


@dataclass
class JobSpec:
    """What the builder needs of a job (a subset of config.JobConfig)."""

    name: str
    sources: Sequence[Path]
    exclude: Sequence[str] = ()
    recipients: Sequence[str] = ()
    volume_size: int = 64 << 20
    compression_level: int = 3
    compression_threads: int = 0
    one_file_system: bool = True
    allow_empty_sources: bool = False
    # incremental snapshots (see incremental.py); a drop-directory series is full-only
    incremental: bool = True
    full_every: int = 14
    full_if_older_than: float | None = 30 * 86400.0
    ignore_inode: bool = False
    ignore_ctime: bool = False

    @classmethod
    def from_config(cls, job: JobConfig) -> JobSpec:
        return cls(
            name=job.name,
            sources=tuple(job.sources),
            exclude=tuple(job.exclude),
            recipients=tuple(job.recipients),
            volume_size=job.volume_size,
            compression_level=job.compression_level,
            compression_threads=getattr(job, "compression_threads", 0),
            one_file_system=getattr(job, "one_file_system", True),
            allow_empty_sources=getattr(job, "allow_empty_sources", False),
            full_every=getattr(job, "full_every", 14),
            full_if_older_than=getattr(job, "full_if_older_than", 30 * 86400.0),
            ignore_inode=getattr(job, "ignore_inode", False),
            ignore_ctime=getattr(job, "ignore_ctime", False),
        )

    def params(self, destinations: Sequence[Destination]) -> dict:
        """What must not change for an interrupted snapshot to be resumed."""
        return {
            "destinations": sorted(d.name for d in destinations),
            "sources": [str(s) for s in self.sources],
            "exclude": list(self.exclude),
            "recipients": list(self.recipients),
            "volume_size": self.volume_size,
            "compression_level": self.compression_level,
            "one_file_system": self.one_file_system,
        }


@dataclass
class Progress:
    phase: str = "starting"
    files: int = 0
    data_bytes: int = 0
    tar_bytes: int = 0
    volumes_built: int = 0
    volumes_stored: int = 0
    stored_bytes: int = 0
    estimated_total: int | None = None  # data bytes of the previous snapshot
    current_volume: str = ""
    started: float = field(default_factory=time.time)


@dataclass
class RunResult:
    job: str
    snapshot: str | None
    status: str
    message: str = ""
    manifest: Manifest | None = None
    warnings: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, path, message)
    warning_counts: dict[str, int] = field(default_factory=dict)
    resumed: bool = False
    reused_volumes: int = 0
    removed_leftovers: list[str] = field(default_factory=list)
    full_reason: str = ""  # why this run made a full where an incremental could have been
    error: BaseException | None = (
        None  # what made a failed run fail (its type matters: NotLoggedIn)
    )

    @property
    def ok(self) -> bool:
        return self.status in (COMPLETED, COMPLETED_WITH_WARNINGS)
