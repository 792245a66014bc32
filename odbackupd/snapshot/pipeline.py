"""The pipeline of one run: walk → tar → volumes in the spool → every destination.

The builder's thread walks, makes the tar stream and feeds the compressor (volumes.py:
the frame workers compress, the "volume-writer" thread encrypts, hashes and writes). A volume
cut at the size limit is *sealed* (its writer finished, fsync'ed, recorded in the state
database with the tar checkpoint that follows it) in a thread of its own, in volume order,
while the builder's thread already feeds the next one. Upload workers hand sealed volumes
to every destination. The spool holds at most ``workers + 1`` volumes (``slots``), so
scratch disk is a few volumes whatever the snapshot's size.

Every recorded volume is a checkpoint: whatever stops the run afterwards (an error, a
cancel, Ctrl-C, a kill), the next run resumes after the last one (resume.py).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from ..destinations.base import Destination
from ..destinations.compare import check_stored
from . import chain
from .incbuild import scratch_sizes
from .incremental import Compare, IndexPlan
from .resume import Resume
from .runctx import RunContext
from .tarstream import TarCheckpoint, TarStream
from .volumes import FrameCompressor, VolumeInfo, VolumeWriter
from .walk import ExcludeMatcher, Walker


@dataclass
class _Ended:
    """A volume whose zstd frame has ended, waiting to be sealed."""

    vol: VolumeWriter
    cp: TarCheckpoint
    warnings: dict
    digest: str | None  # SHA-256 of its plaintext, for the next volume's chain header
    index: dict | None = None  # the index scratch sizes at this checkpoint (incremental.py)


class Pipeline:
    def __init__(self, ctx: RunContext, skip_paths: frozenset[bytes]) -> None:
        self.ctx = ctx
        self.skip_paths = skip_paths
        self.slots = threading.Semaphore(ctx.workers + 1)  # volumes in the spool at most
        self.futures: list[Future] = []
        self.pool = ThreadPoolExecutor(
            max_workers=ctx.workers, thread_name_prefix=f"upload-{ctx.name}"
        )
        self.plan: IndexPlan | None = None

    def run(self, start: Resume) -> None:
        """Send what the interrupted run left in the spool, build the rest, wait until every
        volume is stored everywhere. Raises ``RunCancelled``, ``RunFailed`` (a worker's
        error) or whatever stopped the builder's thread; the upload workers have stopped
        by then, every checkpoint recorded stays."""
        ctx = self.ctx
        try:
            for info, missing in start.pending:
                ctx.acquire(self.slots)
                self.futures.append(self.pool.submit(self._upload, info, missing))
            if start.checkpoint is None or not start.checkpoint.finished:
                self._build(start.checkpoint, start.next_index)
            ctx.progress.phase = "uploading"
            ctx.emit_progress(force=True)
            for f in self.futures:
                while True:
                    ctx.check()
                    try:
                        f.result(timeout=0.2)
                        break
                    except TimeoutError:
                        continue
        except BaseException:
            ctx.abort.set()
            self.pool.shutdown(wait=True, cancel_futures=True)
            raise
        self.pool.shutdown(wait=True)

    # -- building -------------------------------------------------------------------------------
    def _build(self, resume_cp: TarCheckpoint | None, index: int) -> None:
        ctx, job, snapshot, spool = self.ctx, self.ctx.name, self.ctx.snapshot, self.ctx.spool
        ctx.progress.phase = "building"
        walker = Walker(
            [os.fsencode(str(s)) for s in ctx.job.sources],
            ExcludeMatcher(ctx.job.exclude),
            ctx.job.one_file_system,
            on_problem=lambda p: ctx.report(p.kind, p.path, p.message),
            skip_paths=self.skip_paths | {os.fsencode(str(ctx.spool_root))},
        )
        stream = TarStream(walker, ctx.report, resume=resume_cp)
        if ctx.cache is not None:
            base = ctx.decision.base
            self.plan = stream.plan = IndexPlan(
                spool,
                snapshot,
                ctx.cache.data if base is not None else None,
                base.snapshot if base else None,
                Compare(ctx.job.ignore_inode, ctx.job.ignore_ctime),
                lambda: int(ctx.clock() * 1e9),
                stream.cp.stats,
                resume=resume_cp,
            )
        comp = FrameCompressor(ctx.job.compression_level, ctx.job.compression_threads)
        # Sealing a volume (waiting for its writer thread, fsync, recording it) runs in a
        # thread of its own, in volume order, while this one already feeds the compressor
        # the next volume: the compressor's workers do not sit idle at every volume cut.
        sealer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"seal-{job}")
        seals: list[Future] = []
        # The manifest records every volume's SHA-256 and OneDrive quickXorHash, whatever
        # the destination: a snapshot copied to OneDrive later (rclone, a second
        # destination) can still be checked against OneDrive's own hashes.
        quickxor = True
        vol: VolumeWriter | None = None
        # A volume cut at the size limit is sealed once the next chunk shows another volume
        # follows; the last one gets the snapshot's end marker first (chain.py).
        ended: _Ended | None = None
        prev = self._chain_prev(index)
        # The size of the frames still being compressed is estimated at the ratio so far:
        # cutting within 1/64 of the limit keeps incompressible data after compressible
        # from carrying a volume a whole tar chunk past it.
        limit = ctx.job.volume_size - ctx.job.volume_size // 64
        progress = ctx.progress
        try:
            for chunk in stream:
                if ended is not None:
                    seals.append(sealer.submit(self._seal, ended))
                    ended = None
                if vol is None:
                    ctx.acquire(self.slots)
                    start = stream.cp.offset - len(chunk)
                    header = (
                        b""
                        if prev is None
                        else chain.volume_header(job, snapshot, index, start, prev)
                    )
                    vol = VolumeWriter(spool, index, start, comp, ctx.recipients, quickxor, header)
                    progress.current_volume = vol.name
                vol.write(chunk)
                cp = stream.cp
                progress.files, progress.data_bytes = cp.stats.files, cp.stats.data_bytes
                progress.tar_bytes = cp.offset
                if vol.estimated_size() >= limit:
                    ended, vol, index = self._end(vol, stream, prev is not None), None, index + 1
                    prev = ended.digest
                ctx.check()
                ctx.emit_progress()
            if vol is not None:
                ended, vol = self._end(vol, stream, prev is not None), None
            if ended is not None:
                ended.cp = stream.checkpoint()  # the stream's end: a finished checkpoint
                if self.plan is not None:  # and every index record written up to it
                    self.plan.sync()
                    ended.index = scratch_sizes(spool)
                if ended.digest is not None:
                    ended.vol.append(
                        chain.end_marker(job, snapshot, ended.vol.index, ended.cp.offset)
                    )
                seals.append(sealer.submit(self._seal, ended))
                ended = None
            for f in seals:
                f.result()  # every volume recorded (and its upload queued) before we go on
        finally:
            for v in (vol, ended.vol if ended is not None else None):
                if v is not None:
                    v.abort()
                    self.slots.release()
            sealer.shutdown(wait=True)
            comp.close()
            if self.plan is not None:
                self.plan.close()

    def _chain_prev(self, index: int) -> str | None:
        """What the chain header of volume ``index`` names as the volume before it; None
        when the volumes before it carry no chain (a snapshot begun by an older version)."""
        if index == 1:
            return chain.ZERO
        records = self.ctx.state.volumes(self.ctx.name, self.ctx.snapshot)
        return records[-1].checkpoint.get("chain") if records else None

    def _end(self, vol: VolumeWriter, stream: TarStream, chained: bool) -> _Ended:
        """End ``vol``'s zstd frame at the current checkpoint."""
        vol.end_frame()
        cp = stream.checkpoint()
        with self.ctx.lock:
            warnings = dict(self.ctx.warning_counts)
        index = None
        if self.plan is not None:
            self.plan.sync()  # the index records up to this checkpoint are on disk with it
            index = scratch_sizes(self.plan.spool)
        return _Ended(vol, cp, warnings, vol.plain_digest() if chained else None, index)

    def _seal(self, ended: _Ended) -> None:
        ctx = self.ctx
        vol, cp = ended.vol, ended.cp
        checkpoint = {"tar": cp.to_json(), "warnings": ended.warnings}
        if ended.digest is not None:
            checkpoint["chain"] = ended.digest
        if ended.index is not None:
            checkpoint["index"] = ended.index
        try:
            info = vol.finish()
        except BaseException as e:
            vol.abort()
            self.slots.release()
            ctx.fail(e)
            raise
        try:
            ctx.state.add_volume(ctx.name, ctx.snapshot, info.index, info.to_json(), checkpoint)
        except BaseException as e:
            self.slots.release()
            ctx.fail(e)
            raise
        ctx.progress.volumes_built += 1
        self.futures.append(self.pool.submit(self._upload, info, list(ctx.dests)))

    # -- uploading ------------------------------------------------------------------------------
    def _upload(self, info: VolumeInfo, dests: list[Destination]) -> None:
        ctx = self.ctx
        try:
            if ctx.abort.is_set():
                return
            src = ctx.spool / info.name
            expected = info.expected()

            def progress(n: int) -> None:
                with ctx.lock:
                    ctx.progress.stored_bytes += n

            for d in dests:
                obj = d.put_file(
                    ctx.folder, ctx.snapshot, info.name, src, expected, progress, ctx.abort
                )
                check_stored(d, info.name, obj, expected)
                ctx.state.mark_stored(ctx.name, ctx.snapshot, info.index, d.name)
            with ctx.lock:
                ctx.progress.volumes_stored += 1
            src.unlink(missing_ok=True)
        except BaseException as e:
            ctx.fail(e)
            raise
        finally:
            self.slots.release()
