"""The manifest assembler: once every volume is stored everywhere, the manifest (with the
index, for a series with incrementals) makes the snapshot complete.

Order on every destination: the index object, ``RESTORE.txt``, ``manifest.json`` last.
Then the state database forgets the in-progress snapshot and keeps what the next run
compares against (sizes, the sources that had entries, the cached index).
"""

from __future__ import annotations

import os
import shutil

from .. import __version__
from ..destinations.base import MANIFEST_NAME
from . import chain
from .catalog import next_in_series
from .incbuild import RESTORE_NAME, BuiltIndex, ChainPlanner, source_roots, store_index
from .manifest import Manifest
from .runctx import RunContext
from .spec import JobSpec
from .tarstream import TarCheckpoint


def manifest_sources(job: JobSpec) -> list[str]:
    """The sources as the manifest names them. The manifest is plain text next to the
    volumes: for an encrypted snapshot a source that is a file (a drop-directory file) is
    named by its directory only, so no file name is readable without the key."""
    out: list[str] = []
    for s in job.sources:
        name = str(s)
        if job.recipients and not os.path.isdir(s):
            name = os.path.dirname(name) or name
        if name not in out:
            out.append(name)
    return out


def encryption_field(job: JobSpec) -> dict | None:
    """The recipients by fingerprint (no key in a plain-text manifest); None: unencrypted."""
    if not job.recipients:
        return None
    from ..crypto.age import parse_recipient, recipient_fingerprint

    return {"recipients": [recipient_fingerprint(parse_recipient(r)) for r in job.recipients]}


def assemble(ctx: RunContext, resumes: int) -> Manifest:
    """The manifest of the snapshot whose volumes the state database lists."""
    job, snapshot = ctx.name, ctx.snapshot
    records = ctx.state.volumes(job, snapshot)
    last_cp = TarCheckpoint.from_json(records[-1].checkpoint["tar"])
    # the frame tables go to the index only (frames.py)
    volumes = [{k: v for k, v in r.info.items() if k not in ("index", "frames")} for r in records]
    base = ctx.decision.base
    st = last_cp.stats
    sequence, previous = next_in_series(ctx.dests, job, snapshot, ctx.hostname)
    enc = encryption_field(ctx.job)
    manifest = Manifest(
        job=job,
        snapshot=snapshot,
        host=ctx.hostname,
        started=ctx.started,
        finished=ctx.clock(),
        tool_version=__version__,
        compression={"algorithm": "zstd", "level": ctx.job.compression_level},
        encryption={"format": "age-v1", **enc} if enc else None,
        sources=manifest_sources(ctx.job),
        files=st.files,
        dirs=st.dirs,
        others=st.others,
        data_bytes=st.data_bytes,
        tar_bytes=last_cp.offset,
        volumes=volumes,
        warnings=dict(ctx.warning_counts),
        resumes=resumes,
        sequence=sequence,
        previous=previous,
        chain=chain.manifest_field() if all("chain" in r.checkpoint for r in records) else None,
        kind=ctx.decision.kind,
        base=base.snapshot if base else None,
    )
    manifest.folder = ctx.folder
    if ctx.cache is not None:
        manifest.changes = {
            "new": st.new,
            "changed": st.changed,
            "unchanged": st.unchanged,
            "deleted": st.deleted,
        }
    return manifest


def publish(
    ctx: RunContext, manifest: Manifest, chains: ChainPlanner, signing_key: object | None
) -> BuiltIndex | None:
    """Store the index, RESTORE.txt and the signed manifest on every destination."""
    built = None
    if ctx.cache is not None:
        records = ctx.state.volumes(ctx.name, ctx.snapshot)
        built = store_index(
            ctx.dests,
            ctx.folder,
            manifest,
            ctx.spool,
            source_roots(ctx.job.sources),
            [r.info for r in records],
            ctx.recipients,
            ctx.abort,
        )
    text = chains.restore_text(manifest, encrypted=bool(ctx.job.recipients))
    data = manifest.dumps(sign_with=signing_key)
    for d in ctx.dests:
        d.put_bytes(ctx.folder, ctx.snapshot, RESTORE_NAME, text)
        d.put_bytes(ctx.folder, ctx.snapshot, MANIFEST_NAME, data)
    return built


def record_completion(
    ctx: RunContext, manifest: Manifest, built: BuiltIndex | None, nonempty: list[str]
) -> None:
    """The snapshot is complete: cache its index, forget it as in progress, keep what the
    next run compares against, empty its spool."""
    job = ctx.name
    if built is not None and ctx.cache is not None:
        try:
            ctx.cache.store(built, ctx.snapshot)
        except OSError as e:  # the snapshot is complete; the next run is a full and says why
            ctx.cache.drop()
            ctx.report("index", os.fsencode(ctx.cache.describe()), f"cannot cache the index: {e}")
    ctx.state.forget(job)
    ctx.state.set_snapshot_sizes(job, manifest.kind, manifest.data_bytes, manifest.stored_bytes)
    ctx.state.set_nonempty_sources(job, nonempty)
    shutil.rmtree(ctx.spool, ignore_errors=True)
