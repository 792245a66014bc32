"""The snapshot builder: one run makes (or resumes) one snapshot of a series.

``SnapshotBuilder.run`` is the sequence of named parts, each in its own module, sharing a
per-run ``RunContext`` (runctx.py):

1. ``guard.check_sources``: the reasons to make no snapshot at all (unmounted, emptied);
2. ``resume.plan_snapshot``: resume the in-progress snapshot or begin a new one (full or
   incremental), and ``resume.where_to_start``: what is stored, what to send, the checkpoint;
3. ``janitor``: the spool and the destinations' incomplete folders of earlier runs;
4. ``pipeline.Pipeline``: walk → tar → zstd → (age) → volumes → destinations;
5. ``assemble``: the manifest (and the index) once every volume is stored everywhere.

Every finished volume is recorded in the state database with the tar checkpoint that
follows it, so whatever stops a run (an error, a cancel, Ctrl-C, a kill) the next one
resumes. An error or a cancel ends in a ``RunResult``; an interrupt (a second Ctrl-C,
``KeyboardInterrupt``) is raised on once the upload workers have stopped.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..destinations.base import Destination, DestinationError
from ..state import StateStore
from .assemble import assemble, encryption_field, manifest_sources, publish, record_completion
from .catalog import series_folder
from .guard import check_sources
from .incbuild import ChainPlanner, drop_scratch, summary
from .janitor import clean_spool, remove_leftovers
from .mounts import FSTAB, MOUNTINFO
from .pipeline import Pipeline
from .resume import estimated_total, plan_snapshot, where_to_start
from .runctx import RunContext
from .spec import (
    CANCELLED,
    COMPLETED,
    COMPLETED_WITH_WARNINGS,
    FAILED,
    JobSpec,
    Progress,
    RunCancelled,
    RunFailed,
    RunResult,
)

__all__ = [
    "CANCELLED",
    "COMPLETED",
    "COMPLETED_WITH_WARNINGS",
    "FAILED",
    "JobSpec",
    "Progress",
    "RunResult",
    "SnapshotBuilder",
]

log = logging.getLogger("odbackupd.snapshot")


class SnapshotBuilder:
    def __init__(
        self,
        job: JobSpec,
        destinations: Sequence[Destination],
        state: StateStore,
        spool_root: Path,
        hostname: str,
        *,
        upload_workers: int = 1,
        progress: Callable[[Progress], None] | None = None,
        cancel: threading.Event | None = None,
        skip_paths: Sequence[Path] = (),
        clock: Callable[[], float] = time.time,
        fstab: Path = FSTAB,
        mountinfo: Path = MOUNTINFO,
        index_dir: Path | None = None,
        signing_key: object | None = None,
    ) -> None:
        """``fstab``/``mountinfo``: where the unmounted-source check reads (tests pass files).
        ``index_dir``: where the latest index of each series is cached (``STATE_DIR/index``);
        None makes fulls only, without an index.
        ``signing_key``: the Ed25519 key that signs the manifest (odbackupd/signing.py)."""
        if not destinations:
            raise ValueError("a snapshot needs at least one destination")
        self.signing_key = signing_key
        self.fstab, self.mountinfo = fstab, mountinfo
        self.skip_paths = frozenset(os.fsencode(os.path.normpath(p)) for p in skip_paths)
        self.ctx = RunContext(
            job=job,
            dests=list(destinations),
            state=state,
            spool_root=Path(spool_root),
            hostname=hostname,
            folder=series_folder(hostname, job.name),
            workers=max(1, upload_workers),
            cancel=cancel or threading.Event(),
            clock=clock,
            progress_cb=progress,
            index_dir=index_dir,
        )
        self.progress = self.ctx.progress

    def run(self) -> RunResult:
        ctx = self.ctx
        sources = check_sources(ctx.job, ctx.state, self.fstab, self.mountinfo)
        if sources.refusal is not None:
            return RunResult(ctx.name, None, FAILED, sources.refusal)
        if ctx.job.recipients:
            from ..crypto.age import parse_recipient

            ctx.recipients = [parse_recipient(r) for r in ctx.job.recipients]
        chains = ChainPlanner(ctx.dests, ctx.name, ctx.hostname)
        plan = plan_snapshot(ctx, chains, manifest_sources(ctx.job), encryption_field(ctx.job))
        result = RunResult(
            ctx.name, ctx.snapshot, FAILED, resumed=plan.resumed, full_reason=ctx.decision.reason
        )
        clean_spool(ctx)
        result.removed_leftovers = remove_leftovers(ctx)
        ctx.progress.estimated_total = estimated_total(ctx)
        start = where_to_start(ctx)
        result.reused_volumes = start.reused
        ctx.add_warning_counts(start.warnings)
        try:
            Pipeline(ctx, self.skip_paths).run(start)
        except RunCancelled:
            result.status, result.message = (
                CANCELLED,
                "cancelled; the next run resumes this snapshot",
            )
            return ctx.finish(result)
        except Exception as e:  # noqa: BLE001 - an interrupt (BaseException) goes on up: checkpoints stay
            return ctx.finish(self._failed(result, e))

        # every volume is stored everywhere: the manifest makes the snapshot complete
        ctx.progress.phase = "finishing"
        ctx.emit_progress(force=True)
        manifest = assemble(ctx, plan.resumes)
        try:
            built = publish(ctx, manifest, chains, self.signing_key)
        except Exception as e:  # noqa: BLE001 - as above
            result.error = e
            result.status, result.message = (
                FAILED,
                f"writing the manifest: {e}; the next run finishes this snapshot",
            )
            return ctx.finish(result)
        record_completion(ctx, manifest, built, sources.nonempty)
        result.manifest = manifest
        result.status = COMPLETED_WITH_WARNINGS if ctx.warning_counts else COMPLETED
        result.message = summary(manifest, ctx.decision.reason)
        ctx.progress.phase = "done"
        ctx.emit_progress(force=True)
        return ctx.finish(result)

    def _failed(self, result: RunResult, e: Exception) -> RunResult:
        """The result of a run the pipeline failed: the error of the thread that failed
        first, named so that a sysadmin knows what to do."""
        ctx = self.ctx
        if not ctx.state.volumes(
            ctx.name, ctx.snapshot
        ):  # nothing to resume from: no index scratch either
            drop_scratch(ctx.spool)
        err = ctx.error or e
        result.error = err
        result.status = FAILED
        result.message = f"{err}; the next run resumes this snapshot"
        if (
            isinstance(err, OSError)
            and err.errno == errno.ENOSPC
            and str(err.filename or "").startswith(str(ctx.spool_root))
        ):
            result.message = (
                f"the spool directory {ctx.spool_root} is full ({err.filename}): it needs room "
                f"for about {ctx.workers + 2} volumes of {ctx.job.volume_size >> 20} MiB; free "
                "space there or set [daemon] spool_dir elsewhere; the next run resumes this "
                "snapshot"
            )
        if not isinstance(err, (DestinationError, RunFailed, OSError)):
            log.exception("job %s: snapshot %s failed", ctx.name, ctx.snapshot)
        return result
