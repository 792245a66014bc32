"""The resume planner: which snapshot a run makes, and where it starts.

A run that finds an in-progress snapshot of its series resumes it when nothing that
matters changed (``JobSpec.params``, and for an incremental its base is still the cached
index's): volumes already stored are neither rebuilt nor sent again, volumes still in the
spool are sent, and building continues from the last checkpoint. Otherwise a new snapshot
is begun, full or incremental as ``ChainPlanner.decide`` says.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..destinations.base import Destination
from .completed import finish_if_stored
from .incbuild import ChainPlanner, IndexCache, adopt_index, scratch_intact, without_chain
from .incchain import Decision
from .incremental import LOC_SCRATCH, TREE_SCRATCH
from .manifest import new_snapshot_id
from .runctx import RunContext
from .tarstream import TarCheckpoint
from .volumes import VolumeInfo

log = logging.getLogger("odbackupd.snapshot")


@dataclass
class Plan:
    resumed: bool = False
    resumes: int = 0  # how often this snapshot was resumed, this run included


@dataclass
class Resume:
    """Where building starts: what is stored, what is still to send, the checkpoint."""

    pending: list[tuple[VolumeInfo, list[Destination]]] = field(default_factory=list)
    checkpoint: TarCheckpoint | None = None
    next_index: int = 1
    warnings: dict[str, int] = field(default_factory=dict)  # counts up to the checkpoint

    @property
    def reused(self) -> int:
        """Volumes stored everywhere already: neither built nor sent again."""
        return self.next_index - 1 - len(self.pending)


def plan_snapshot(
    ctx: RunContext, chains: ChainPlanner, sources: list[str], encryption: dict | None
) -> Plan:
    """Choose the snapshot (sets ``ctx.snapshot``, ``started``, ``decision``, ``cache``)
    and record it in the state database as in progress."""
    job = ctx.name
    params = ctx.job.params(ctx.dests)
    inprog = ctx.state.inprogress(job)
    cache = (
        IndexCache(ctx.index_dir, job)
        if ctx.index_dir is not None and ctx.job.incremental
        else None
    )
    if inprog is not None and finish_if_stored(ctx.dests, ctx.folder, inprog.snapshot):
        ctx.state.forget(job)  # its manifest is stored: done, not to be "resumed"
        if cache is not None:  # and its index, still in the spool, is the next run's base
            adopt_index(
                cache,
                ctx.dests[0],
                ctx.folder,
                inprog.snapshot,
                ctx.spool_root / job / inprog.snapshot,
            )
        inprog = None
    resuming = inprog is not None and without_chain(inprog.params) == params
    if resuming and inprog.params.get("base"):
        # an interrupted incremental goes on only while its base's index is still the cache's
        meta = cache.read_meta() if cache is not None else None
        if meta is None or meta.get("damaged") or meta.get("snapshot") != inprog.params["base"]:
            resuming = False
    # a new snapshot needs about what the last one took: a drive without that much
    # room is a clear error now, not a 507 after an hour of uploading
    prev_stored = ctx.state.last_stored_bytes(job)
    needed = prev_stored if prev_stored and not resuming else None
    for d in ctx.dests:
        d.prepare(needed)

    ctx.cache = cache
    ctx.decision = Decision("full", None, "")
    if resuming and inprog.params.get("base"):
        base_m = chains.base(inprog.params["base"])
        if base_m is None:
            resuming = False
        else:
            ctx.decision = Decision("incremental", base_m, "")
    if resuming:
        ctx.snapshot, ctx.started = inprog.snapshot, inprog.started
        ctx.state.note_resume(job)
        return Plan(resumed=True, resumes=inprog.resumes + 1)
    if inprog is not None:
        log.info(
            "job %s: settings changed since interrupted snapshot %s; starting anew",
            job,
            inprog.snapshot,
        )
        ctx.state.forget(job)
    ctx.started = ctx.clock()
    ctx.snapshot = new_snapshot_id(ctx.started)
    if cache is not None:
        ctx.decision = chains.decide(
            cache,
            ctx.started,
            full_every=ctx.job.full_every,
            full_if_older_than=ctx.job.full_if_older_than,
            sources=sources,
            encryption=encryption,
        )
    ctx.state.begin(
        job,
        ctx.snapshot,
        ctx.started,
        dict(
            params,
            kind=ctx.decision.kind,
            base=ctx.decision.base.snapshot if ctx.decision.base else None,
        ),
    )
    return Plan()


def estimated_total(ctx: RunContext) -> int | None:
    """What the last snapshot of this kind read: an incremental reads far less than a full."""
    job = ctx.name
    prev = ctx.state.last_data_bytes(job, ctx.decision.kind) or (
        ctx.state.last_data_bytes(job) if ctx.decision.kind == "full" else None
    )
    return prev or None


def where_to_start(ctx: RunContext) -> Resume:
    """For the chosen snapshot: what is stored, what to send, where building resumes."""
    r = _reconcile(ctx, ctx.spool)
    if (
        r.checkpoint is not None
        and ctx.cache is not None
        and not scratch_intact(
            ctx.spool, ctx.state.volumes(ctx.name, ctx.snapshot)[r.next_index - 2].checkpoint
        )
    ):
        # the spool lost the index records of what was already built: build it all again
        log.info(
            "job %s: the index of interrupted snapshot %s is gone from the spool; rebuilding",
            ctx.name,
            ctx.snapshot,
        )
        ctx.state.drop_volumes_from(ctx.name, ctx.snapshot, 1)
        return Resume()
    return r


def _reconcile(ctx: RunContext, spool: Path) -> Resume:
    job, snapshot = ctx.name, ctx.snapshot
    records = ctx.state.volumes(job, snapshot)
    if not records:
        return Resume()
    stored = {d.name: d.list_objects(ctx.folder, snapshot) for d in ctx.dests}
    pending: list[tuple[VolumeInfo, list[Destination]]] = []
    keep = len(records)
    for i, rec in enumerate(records):
        info = VolumeInfo.from_json(rec.info)
        missing = [d for d in ctx.dests if not info.stored_as(stored[d.name].get(info.name))]
        for d in ctx.dests:
            if d not in missing and d.name not in rec.stored:
                ctx.state.mark_stored(job, snapshot, info.index, d.name)
        if missing:
            f = spool / info.name
            if f.is_file() and f.stat().st_size == info.size:
                pending.append((info, missing))
            else:
                keep = i  # lost from the spool before it was stored: rebuild from here
                break
    if keep < len(records):
        ctx.state.drop_volumes_from(job, snapshot, records[keep].idx)
        for rec in records[keep:]:
            (spool / rec.info["name"]).unlink(missing_ok=True)
    if keep == 0:
        return Resume()
    last = records[keep - 1]
    cp = TarCheckpoint.from_json(last.checkpoint["tar"])
    kept_names = {r.info["name"] for r in records[:keep]} | {TREE_SCRATCH, LOC_SCRATCH}
    for p in spool.iterdir():
        if p.name not in kept_names:
            p.unlink(missing_ok=True)  # half-built volumes
    log.info(
        "job %s: resuming snapshot %s after volume %d (tar offset %d); %d volume(s) still to send",
        job,
        snapshot,
        last.idx,
        cp.offset,
        len(pending),
    )
    return Resume(pending, cp, last.idx + 1, dict(last.checkpoint.get("warnings", {})))
