"""The per-run context of ``SnapshotBuilder``: what every part of one run shares.

The builder's parts (``guard``, ``resume``, ``janitor``, ``pipeline``, ``assemble``) take
this one object instead of a dozen arguments: the job, its destinations and state, the
snapshot being made once the planner has chosen it, the run's warnings and progress, and
the abort flag the threads of the pipeline stop on.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..destinations.base import Destination
from ..state import StateStore
from .incbuild import IndexCache
from .incchain import Decision
from .spec import MAX_WARNING_DETAILS, JobSpec, Progress, RunCancelled, RunFailed, RunResult

log = logging.getLogger("odbackupd.snapshot")


@dataclass
class RunContext:
    job: JobSpec
    dests: list[Destination]
    state: StateStore
    spool_root: Path
    hostname: str
    folder: str  # this host's folder of the series on every destination
    workers: int  # upload workers
    cancel: threading.Event
    clock: Callable[[], float]
    progress_cb: Callable[[Progress], None] | None = None
    index_dir: Path | None = (
        None  # where the latest index of each series is cached; None: fulls only
    )
    progress: Progress = field(default_factory=Progress)
    # chosen by the planner (resume.py)
    snapshot: str = ""
    started: float = 0.0
    decision: Decision = field(default_factory=lambda: Decision("full", None, ""))
    cache: IndexCache | None = None
    recipients: list = field(default_factory=list)  # parsed age recipients
    # shared with the pipeline's threads
    abort: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    warnings: list[tuple[str, str, str]] = field(default_factory=list)
    warning_counts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _last_progress: float = 0.0

    @property
    def name(self) -> str:
        return self.job.name

    @property
    def spool(self) -> Path:
        """This snapshot's spool directory."""
        return self.spool_root / self.job.name / self.snapshot

    # -- reporting ------------------------------------------------------------------------------
    def report(self, kind: str, path: bytes, message: str) -> None:
        p = os.fsdecode(path)
        with self.lock:
            self.warning_counts[kind] = self.warning_counts.get(kind, 0) + 1
            if len(self.warnings) < MAX_WARNING_DETAILS:
                self.warnings.append((kind, p, message))
        log.warning(
            "%s: %s",
            p,
            message,
            extra={"journal_fields": {"JOB": self.job.name, "WARNING_KIND": kind}},
        )

    def add_warning_counts(self, counts: dict[str, int]) -> None:
        """Warnings of the interrupted run this one resumes (its checkpoint carries them)."""
        with self.lock:
            for k, v in counts.items():
                self.warning_counts[k] = self.warning_counts.get(k, 0) + v

    def emit_progress(self, force: bool = False) -> None:
        if self.progress_cb is None:
            return
        now = time.monotonic()
        if force or now - self._last_progress >= 0.5:
            self._last_progress = now
            self.progress_cb(self.progress)

    def finish(self, result: RunResult) -> RunResult:
        """``result`` with the run's warnings."""
        result.warnings = list(self.warnings)
        result.warning_counts = dict(self.warning_counts)
        return result

    # -- stopping -------------------------------------------------------------------------------
    def fail(self, e: BaseException) -> None:
        """A thread of the pipeline failed: the others stop at their next check."""
        with self.lock:
            if self.error is None:
                self.error = e
        self.abort.set()

    def check(self) -> None:
        if self.error is not None:
            raise RunFailed(str(self.error)) from self.error
        if self.cancel.is_set():
            raise RunCancelled()

    def acquire(self, slots: threading.Semaphore) -> None:
        while not slots.acquire(timeout=0.2):
            self.check()
