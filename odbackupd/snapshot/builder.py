"""The snapshot pipeline: walk → tar → zstd → (age) → volumes → destinations → manifest.

One thread builds volumes into the spool; upload workers hand finished volumes to every
destination while the next one is built. The spool holds at most ``upload_workers + 1``
volumes, so scratch disk is a few volumes whatever the snapshot's size.

Every finished volume is recorded in the state database with the tar checkpoint that
follows it. A run that finds an in-progress snapshot of its job resumes it: volumes
already stored are neither rebuilt nor sent again, volumes still in the spool are sent,
and building continues from the last checkpoint.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from .. import __version__
from ..config.checks import symlinked_dir_source
from ..destinations.base import MANIFEST_NAME, Destination, DestinationError, Expected, StoredObject
from ..destinations.compare import check_stored, matches
from ..state import StateStore
from . import chain
from .catalog import SNAPSHOT_ID_RE, next_in_series, series_folder
from .completed import finish_if_stored
from .incbuild import (
    RESTORE_NAME, ChainPlanner, IndexCache, adopt_index, drop_scratch, scratch_intact, scratch_sizes, source_roots, store_index,
    summary, without_chain,
)
from .incchain import Decision
from .incremental import LOC_SCRATCH, TREE_SCRATCH, Compare, IndexPlan
from .manifest import Manifest, new_snapshot_id
from .mounts import FSTAB, MOUNTINFO, unmounted_sources
from .tarstream import TarCheckpoint, TarStream
from .volumes import VolumeInfo, VolumeWriter, make_compressor
from .walk import ExcludeMatcher, Walker

if TYPE_CHECKING:
    from ..config import JobConfig

log = logging.getLogger("odbackupd.snapshot")

COMPLETED = "completed"
COMPLETED_WITH_WARNINGS = "completed with warnings"
FAILED = "failed"
CANCELLED = "cancelled"

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
            name=job.name, sources=tuple(job.sources), exclude=tuple(job.exclude),
            recipients=tuple(job.recipients), volume_size=job.volume_size,
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
    error: BaseException | None = None  # what made a failed run fail (its type matters: NotLoggedIn)

    @property
    def ok(self) -> bool:
        return self.status in (COMPLETED, COMPLETED_WITH_WARNINGS)


def _verify_stored(dest: Destination, info: VolumeInfo, obj: StoredObject) -> None:
    check_stored(dest, info.name, obj, Expected(info.size, info.sha256, info.quickxor))


def _manifest_sources(sources: Sequence[Path], *, encrypted: bool) -> list[str]:
    """The sources as the manifest names them. The manifest is plain text next to the
    volumes: for an encrypted snapshot a source that is a file (a drop-directory file) is
    named by its directory only, so no file name is readable without the key."""
    out: list[str] = []
    for s in sources:
        name = str(s)
        if encrypted and not os.path.isdir(s):
            name = os.path.dirname(name) or name
        if name not in out:
            out.append(name)
    return out


def _is_empty_dir(path: Path) -> bool | None:
    """True for a directory (not a symlink) with no entries, False for one with entries,
    None when it is not a directory or cannot be read (the walk reports that itself)."""
    try:
        if os.path.islink(path) or not os.path.isdir(path):
            return None
        with os.scandir(path) as it:
            return next(it, None) is None
    except OSError:
        return None


def _stored_ok(info: VolumeInfo, obj: StoredObject | None) -> bool:
    return matches(obj, Expected(info.size, info.sha256, info.quickxor))


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
        self.index_dir = index_dir
        self.signing_key = signing_key
        self.fstab, self.mountinfo = fstab, mountinfo
        if not destinations:
            raise ValueError("a snapshot needs at least one destination")
        self.job = job
        self.dests = list(destinations)
        self.state = state
        self.spool_root = Path(spool_root)
        self.hostname = hostname
        self.folder = series_folder(hostname, job.name)  # this host's folder of the series
        self.workers = max(1, upload_workers)
        self.progress_cb = progress
        self.cancel = cancel or threading.Event()
        self.skip_paths = frozenset(os.fsencode(os.path.normpath(p)) for p in skip_paths)
        self.clock = clock
        self.progress = Progress()
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._abort = threading.Event()
        self._warnings: list[tuple[str, str, str]] = []
        self._warning_counts: dict[str, int] = {}
        self._last_progress = 0.0

    # -- reporting --------------------------------------------------------------------------
    def _report(self, kind: str, path: bytes, message: str) -> None:
        p = os.fsdecode(path)
        with self._lock:
            self._warning_counts[kind] = self._warning_counts.get(kind, 0) + 1
            if len(self._warnings) < MAX_WARNING_DETAILS:
                self._warnings.append((kind, p, message))
        log.warning("%s: %s", p, message, extra={"journal_fields": {"JOB": self.job.name, "WARNING_KIND": kind}})

    def _emit_progress(self, force: bool = False) -> None:
        if self.progress_cb is None:
            return
        now = time.monotonic()
        if force or now - self._last_progress >= 0.5:
            self._last_progress = now
            self.progress_cb(self.progress)

    # -- the run ----------------------------------------------------------------------------
    def run(self) -> RunResult:
        job = self.job.name
        missing = [str(p) for p in self.job.sources if not os.path.lexists(p)]
        if missing:
            # An unmounted disk or a mistyped path: an empty "successful" snapshot would
            # count for retention and push good ones out. Nothing is made, nothing pruned.
            return RunResult(job, None, FAILED, (
                f"source {', '.join(missing)} does not exist (not mounted? moved?); nothing was "
                "backed up and the earlier snapshots are untouched"))
        linked = [m for m in map(symlinked_dir_source, self.job.sources) if m]
        if linked:
            return RunResult(job, None, FAILED, "; ".join(linked) + "; nothing was backed up and the earlier "
                             "snapshots are untouched")
        unmounted = unmounted_sources(self.job.sources, self.fstab, self.mountinfo)
        if unmounted:
            return RunResult(job, None, FAILED, "; ".join(
                f"source {src} is on {point}, which /etc/fstab lists but is not mounted"
                for src, point in unmounted) + "; nothing was backed up and the earlier snapshots are untouched")
        # A disk mounted by hand or by a script leaves an empty directory when it is not:
        # a source directory that had entries at the last snapshot and has none now fails
        # the run (retention would count an empty snapshot), unless the job allows it.
        empty = {str(p): _is_empty_dir(p) for p in self.job.sources}  # one scandir each
        nonempty_now = [p for p, e in empty.items() if e is False]
        had = set(json.loads(self.state.get(f"nonempty_sources:{job}") or "[]"))
        emptied = [p for p, e in empty.items() if e and p in had]
        if emptied and not self.job.allow_empty_sources:
            return RunResult(job, None, FAILED, (
                f"source {', '.join(emptied)} is empty but had files at the last snapshot (is its "
                "disk mounted?); nothing was backed up and the earlier snapshots are untouched. "
                f"If it was emptied on purpose, set allow_empty_sources = true in [job.{self.job.name}]"))
        params = self.job.params(self.dests)
        recipients = []
        if self.job.recipients:
            from ..crypto.age import parse_recipient

            recipients = [parse_recipient(r) for r in self.job.recipients]
        inprog = self.state.inprogress(job)
        cache = IndexCache(self.index_dir, job) if self.index_dir is not None and self.job.incremental else None
        if inprog is not None and finish_if_stored(self.dests, self.folder, inprog.snapshot):
            self.state.forget(job)  # its manifest is stored: done, not to be "resumed"
            if cache is not None:  # and its index, still in the spool, is the next run's base
                adopt_index(cache, self.dests[0], self.folder, inprog.snapshot, self.spool_root / job / inprog.snapshot)
            inprog = None
        resuming = inprog is not None and without_chain(inprog.params) == params
        self.chains = ChainPlanner(self.dests, job, self.hostname)
        if resuming and inprog.params.get("base"):
            # an interrupted incremental goes on only while its base's index is still the cache's
            meta = cache.read_meta() if cache is not None else None
            if meta is None or meta.get("damaged") or meta.get("snapshot") != inprog.params["base"]:
                resuming = False
        # a new snapshot needs about what the last one took: a drive without that much
        # room is a clear error now, not a 507 after an hour of uploading
        prev_stored = self.state.get(f"last_stored_bytes:{job}")
        needed = int(prev_stored) if prev_stored and not resuming else None
        for d in self.dests:
            d.prepare(needed)

        resumed = False
        resumes = 0
        self.decision = Decision("full", None, "")
        if resuming:
            snapshot, started = inprog.snapshot, inprog.started
            if inprog.params.get("base"):
                base_m = self.chains.base(inprog.params["base"])
                if base_m is None:
                    resuming = False
                else:
                    self.decision = Decision("incremental", base_m, "")
        if resuming:
            resumed = True
            resumes = inprog.resumes + 1
            self.state.note_resume(job)
        else:
            if inprog is not None:
                log.info("job %s: settings changed since interrupted snapshot %s; starting anew", job, inprog.snapshot)
                self.state.forget(job)
            started = self.clock()
            snapshot = new_snapshot_id(started)
            if cache is not None:
                self.decision = self.chains.decide(
                    cache, started, full_every=self.job.full_every, full_if_older_than=self.job.full_if_older_than,
                    sources=_manifest_sources(self.job.sources, encrypted=bool(self.job.recipients)),
                    encryption={"recipients": [_fingerprint(r) for r in self.job.recipients]}
                    if self.job.recipients else None)
            self.state.begin(job, snapshot, started, dict(
                params, kind=self.decision.kind,
                base=self.decision.base.snapshot if self.decision.base else None))
        self.cache = cache
        result = RunResult(job, snapshot, FAILED, resumed=resumed, full_reason=self.decision.reason)
        spool = self.spool_root / job / snapshot
        self._clean_spool(job, keep=snapshot)
        spool.mkdir(parents=True, exist_ok=True, mode=0o700)
        result.removed_leftovers = self._remove_leftovers(job, keep=snapshot)

        # what the last snapshot of this kind read: an incremental reads far less than a full
        prev = self.state.get(f"last_data_bytes:{job}:{self.decision.kind}") or (
            self.state.get(f"last_data_bytes:{job}") if self.decision.kind == "full" else None)
        self.progress.estimated_total = int(prev) if prev else None

        pending, resume_cp, next_index, warn_counts = self._reconcile(job, snapshot, spool)
        if resume_cp is not None and self.cache is not None and not scratch_intact(spool, self.state.volumes(
                job, snapshot)[next_index - 2].checkpoint):
            # the spool lost the index records of what was already built: build it all again
            log.info("job %s: the index of interrupted snapshot %s is gone from the spool; rebuilding", job, snapshot)
            self.state.drop_volumes_from(job, snapshot, 1)
            pending, resume_cp, next_index, warn_counts = [], None, 1, {}
        result.reused_volumes = next_index - 1 - len(pending)
        for k, v in warn_counts.items():
            self._warning_counts[k] = self._warning_counts.get(k, 0) + v

        slots = threading.Semaphore(self.workers + 1)
        futures: list[Future] = []
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=f"upload-{job}")
        try:
            for info, missing in pending:
                self._acquire(slots)
                futures.append(pool.submit(self._upload, job, snapshot, spool, info, missing, slots))
            if resume_cp is None or not resume_cp.finished:
                self._build(job, snapshot, spool, recipients, resume_cp, next_index, slots, pool, futures)
            self.progress.phase = "uploading"
            self._emit_progress(force=True)
            for f in futures:
                while True:
                    self._check()
                    try:
                        f.result(timeout=0.2)
                        break
                    except TimeoutError:
                        continue
        except RunCancelled:
            self._abort.set()
            pool.shutdown(wait=True, cancel_futures=True)
            result.status, result.message = CANCELLED, "cancelled; the next run resumes this snapshot"
            return self._finish_result(result)
        except BaseException as e:
            self._abort.set()
            pool.shutdown(wait=True, cancel_futures=True)
            if not self.state.volumes(job, snapshot):  # nothing to resume from: no index scratch either
                drop_scratch(spool)
            err = self._error or e
            result.error = err
            result.status = FAILED
            result.message = f"{err}; the next run resumes this snapshot"
            if isinstance(err, OSError) and err.errno == errno.ENOSPC and str(err.filename or "").startswith(
                    str(self.spool_root)):
                result.message = (
                    f"the spool directory {self.spool_root} is full ({err.filename}): it needs room for "
                    f"about {self.workers + 2} volumes of {self.job.volume_size >> 20} MiB; free space there "
                    "or set [daemon] spool_dir elsewhere; the next run resumes this snapshot")
            if not isinstance(err, (DestinationError, RunFailed, OSError)):
                log.exception("job %s: snapshot %s failed", job, snapshot)
            return self._finish_result(result)
        pool.shutdown(wait=True)

        # every volume is stored everywhere: the manifest makes the snapshot complete
        self.progress.phase = "finishing"
        self._emit_progress(force=True)
        records = self.state.volumes(job, snapshot)
        last_cp = TarCheckpoint.from_json(records[-1].checkpoint["tar"])
        volumes = [{k: v for k, v in r.info.items() if k != "index"} for r in records]
        base = self.decision.base
        st = last_cp.stats
        sequence, previous = next_in_series(self.dests, job, snapshot, self.hostname)
        manifest = Manifest(
            job=job, snapshot=snapshot, host=self.hostname, started=started, finished=self.clock(),
            tool_version=__version__,
            compression={"algorithm": "zstd", "level": self.job.compression_level},
            encryption=(
                {"format": "age-v1", "recipients": [_fingerprint(r) for r in self.job.recipients]}
                if self.job.recipients else None
            ),
            sources=_manifest_sources(self.job.sources, encrypted=bool(self.job.recipients)),
            files=st.files, dirs=st.dirs, others=st.others,
            data_bytes=st.data_bytes, tar_bytes=last_cp.offset,
            volumes=volumes,
            warnings=dict(self._warning_counts),
            resumes=resumes, sequence=sequence, previous=previous,
            chain=chain.manifest_field() if all("chain" in r.checkpoint for r in records) else None,
            kind=self.decision.kind, base=base.snapshot if base else None,
        )
        manifest.folder = self.folder
        built = None
        try:
            if self.cache is not None:
                manifest.changes = {"new": st.new, "changed": st.changed, "unchanged": st.unchanged,
                                    "deleted": st.deleted}
                built = store_index(self.dests, self.folder, manifest, spool, source_roots(self.job.sources),
                                    [r.info for r in records], recipients, self._abort)
            text = self.chains.restore_text(manifest, encrypted=bool(self.job.recipients))
            data = manifest.dumps(sign_with=self.signing_key)
            for d in self.dests:
                d.put_bytes(self.folder, snapshot, RESTORE_NAME, text)
                d.put_bytes(self.folder, snapshot, MANIFEST_NAME, data)
        except BaseException as e:
            result.error = e
            result.status, result.message = FAILED, f"writing the manifest: {e}; the next run finishes this snapshot"
            return self._finish_result(result)
        if built is not None:
            try:
                self.cache.store(built, snapshot)  # type: ignore[union-attr]
            except OSError as e:  # the snapshot is complete; the next run is a full and says why
                self.cache.drop()  # type: ignore[union-attr]
                self._report("index", os.fsencode(self.cache.describe()), f"cannot cache the index: {e}")  # type: ignore[union-attr]
        self.state.forget(job)
        self.state.set(f"last_data_bytes:{job}", str(manifest.data_bytes))
        self.state.set(f"last_data_bytes:{job}:{manifest.kind}", str(manifest.data_bytes))
        self.state.set(f"last_stored_bytes:{job}", str(manifest.stored_bytes))
        self.state.set(f"nonempty_sources:{job}", json.dumps(nonempty_now))
        shutil.rmtree(spool, ignore_errors=True)
        result.manifest = manifest
        result.status = COMPLETED_WITH_WARNINGS if self._warning_counts else COMPLETED
        result.message = summary(manifest, self.decision.reason)
        self.progress.phase = "done"
        self._emit_progress(force=True)
        return self._finish_result(result)

    def _finish_result(self, result: RunResult) -> RunResult:
        result.warnings = list(self._warnings)
        result.warning_counts = dict(self._warning_counts)
        return result

    def _check(self) -> None:
        if self._error is not None:
            raise RunFailed(str(self._error)) from self._error
        if self.cancel.is_set():
            raise RunCancelled()

    def _acquire(self, slots: threading.Semaphore) -> None:
        while not slots.acquire(timeout=0.2):
            self._check()

    # -- resume -----------------------------------------------------------------------------
    def _reconcile(
        self, job: str, snapshot: str, spool: Path
    ) -> tuple[list[tuple[VolumeInfo, list[Destination]]], TarCheckpoint | None, int, dict[str, int]]:
        """Decide, for an in-progress snapshot, what is stored, what to send, where to resume."""
        records = self.state.volumes(job, snapshot)
        if not records:
            return [], None, 1, {}
        stored = {d.name: d.list_objects(self.folder, snapshot) for d in self.dests}
        pending: list[tuple[VolumeInfo, list[Destination]]] = []
        keep = len(records)
        for i, rec in enumerate(records):
            info = VolumeInfo.from_json(rec.info)
            missing = [d for d in self.dests if not _stored_ok(info, stored[d.name].get(info.name))]
            for d in self.dests:
                if d not in missing and d.name not in rec.stored:
                    self.state.mark_stored(job, snapshot, info.index, d.name)
            if missing:
                f = spool / info.name
                if f.is_file() and f.stat().st_size == info.size:
                    pending.append((info, missing))
                else:
                    keep = i  # lost from the spool before it was stored: rebuild from here
                    break
        if keep < len(records):
            self.state.drop_volumes_from(job, snapshot, records[keep].idx)
            for rec in records[keep:]:
                (spool / rec.info["name"]).unlink(missing_ok=True)
        if keep == 0:
            return [], None, 1, {}
        last = records[keep - 1]
        cp = TarCheckpoint.from_json(last.checkpoint["tar"])
        kept_names = {r.info["name"] for r in records[:keep]} | {TREE_SCRATCH, LOC_SCRATCH}
        for p in spool.iterdir():
            if p.name not in kept_names:
                p.unlink(missing_ok=True)  # half-built volumes
        log.info(
            "job %s: resuming snapshot %s after volume %d (tar offset %d); %d volume(s) still to send",
            job, snapshot, last.idx, cp.offset, len(pending),
        )
        return pending, cp, last.idx + 1, dict(last.checkpoint.get("warnings", {}))

    def _clean_spool(self, job: str, keep: str) -> None:
        d = self.spool_root / job
        if d.is_dir():
            for p in d.iterdir():
                if p.name != keep:
                    shutil.rmtree(p, ignore_errors=True)

    def _remove_leftovers(self, job: str, keep: str) -> list[str]:
        """Incomplete snapshot folders of earlier interrupted runs of this host that cannot be
        resumed: in this host's folder and in the old shared layout's, only those the state
        database says this host made (a folder without a manifest names no host: it may be
        another server's upload in progress)."""
        removed = []
        for d in self.dests:
            for folder in (self.folder, job):
                for name in d.list_snapshot_dirs(folder):
                    if name == keep or (folder == job and not SNAPSHOT_ID_RE.fullmatch(name)):
                        continue
                    if MANIFEST_NAME in d.list_objects(folder, name):
                        continue
                    if not self.state.made_here(job, name):
                        log.info("job %s: leaving incomplete snapshot folder %s/%s on %s: this host's "
                                 "state does not show it made it", job, folder, name, d.describe())
                        continue
                    log.info("job %s: removing incomplete snapshot %s from %s", job, name, d.describe())
                    d.delete_snapshot(folder, name)
                    removed.append(f"{d.name}:{name}")
        return removed

    # -- building -----------------------------------------------------------------------------
    def _build(
        self, job: str, snapshot: str, spool: Path, recipients: list, resume_cp: TarCheckpoint | None,
        index: int, slots: threading.Semaphore, pool: ThreadPoolExecutor, futures: list[Future],
    ) -> None:
        self.progress.phase = "building"
        walker = Walker(
            [os.fsencode(str(s)) for s in self.job.sources],
            ExcludeMatcher(self.job.exclude),
            self.job.one_file_system,
            on_problem=lambda p: self._report(p.kind, p.path, p.message),
            skip_paths=self.skip_paths | {os.fsencode(str(self.spool_root))},
        )
        stream = TarStream(walker, self._report, resume=resume_cp)
        self.plan = None
        if self.cache is not None:
            base = self.decision.base
            self.plan = stream.plan = IndexPlan(
                spool, snapshot, self.cache.data if base is not None else None, base.snapshot if base else None,
                Compare(self.job.ignore_inode, self.job.ignore_ctime), lambda: int(self.clock() * 1e9),
                stream.cp.stats, resume=resume_cp)
        cctx = make_compressor(self.job.compression_level, self.job.compression_threads)
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
        prev = self._chain_prev(job, snapshot, index)
        limit = self.job.volume_size
        try:
            for chunk in stream:
                if ended is not None:
                    seals.append(sealer.submit(self._seal, job, snapshot, spool, ended, pool, futures, slots))
                    ended = None
                if vol is None:
                    self._acquire(slots)
                    start = stream.cp.offset - len(chunk)
                    header = b"" if prev is None else chain.volume_header(job, snapshot, index, start, prev)
                    vol = VolumeWriter(spool, index, start, cctx, recipients, quickxor, header)
                    self.progress.current_volume = vol.name
                vol.write(chunk)
                cp = stream.cp
                self.progress.files, self.progress.data_bytes = cp.stats.files, cp.stats.data_bytes
                self.progress.tar_bytes = cp.offset
                if vol.estimated_size() >= limit:
                    ended, vol, index = self._end(vol, stream, prev is not None), None, index + 1
                    prev = ended.digest
                self._check()
                self._emit_progress()
            if vol is not None:
                ended, vol = self._end(vol, stream, prev is not None), None
            if ended is not None:
                ended.cp = stream.checkpoint()  # the stream's end: a finished checkpoint
                if self.plan is not None:  # and every index record written up to it
                    self.plan.sync()
                    ended.index = scratch_sizes(spool)
                if ended.digest is not None:
                    ended.vol.append(chain.end_marker(job, snapshot, ended.vol.index, ended.cp.offset))
                seals.append(sealer.submit(self._seal, job, snapshot, spool, ended, pool, futures, slots))
                ended = None
            for f in seals:
                f.result()  # every volume recorded (and its upload queued) before we go on
        finally:
            for v in (vol, ended.vol if ended is not None else None):
                if v is not None:
                    v.abort()
                    slots.release()
            sealer.shutdown(wait=True)
            if self.plan is not None:
                self.plan.close()

    def _chain_prev(self, job: str, snapshot: str, index: int) -> str | None:
        """What the chain header of volume ``index`` names as the volume before it; None
        when the volumes before it carry no chain (a snapshot begun by an older version)."""
        if index == 1:
            return chain.ZERO
        records = self.state.volumes(job, snapshot)
        return records[-1].checkpoint.get("chain") if records else None

    def _end(self, vol: VolumeWriter, stream: TarStream, chained: bool) -> "_Ended":
        """End ``vol``'s zstd frame at the current checkpoint."""
        vol.end_frame()
        cp = stream.checkpoint()
        with self._lock:
            warnings = dict(self._warning_counts)
        index = None
        if self.plan is not None:
            self.plan.sync()  # the index records up to this checkpoint are on disk with it
            index = scratch_sizes(self.plan.spool)
        return _Ended(vol, cp, warnings, vol.plain_digest() if chained else None, index)

    def _seal(
        self, job: str, snapshot: str, spool: Path, ended: "_Ended",
        pool: ThreadPoolExecutor, futures: list[Future], slots: threading.Semaphore,
    ) -> None:
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
            slots.release()
            self._fail(e)
            raise
        try:
            self.state.add_volume(job, snapshot, info.index, info.to_json(), checkpoint)
        except BaseException as e:
            slots.release()
            self._fail(e)
            raise
        self.progress.volumes_built += 1
        futures.append(pool.submit(self._upload, job, snapshot, spool, info, list(self.dests), slots))

    def _fail(self, e: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = e
        self._abort.set()

    # -- uploading ---------------------------------------------------------------------------
    def _upload(
        self, job: str, snapshot: str, spool: Path, info: VolumeInfo, dests: list[Destination],
        slots: threading.Semaphore,
    ) -> None:
        try:
            if self._abort.is_set():
                return
            src = spool / info.name
            expected = Expected(info.size, info.sha256, info.quickxor)

            def progress(n: int) -> None:
                with self._lock:
                    self.progress.stored_bytes += n

            for d in dests:
                obj = d.put_file(self.folder, snapshot, info.name, src, expected, progress, self._abort)
                _verify_stored(d, info, obj)
                self.state.mark_stored(job, snapshot, info.index, d.name)
            with self._lock:
                self.progress.volumes_stored += 1
            src.unlink(missing_ok=True)
        except BaseException as e:
            self._fail(e)
            raise
        finally:
            slots.release()


@dataclass
class _Ended:
    """A volume whose zstd frame has ended, waiting to be sealed."""

    vol: VolumeWriter
    cp: TarCheckpoint
    warnings: dict
    digest: str | None  # SHA-256 of its plaintext, for the next volume's chain header
    index: dict | None = None  # the index scratch sizes at this checkpoint (incremental.py)


def _fingerprint(recipient: str) -> str:
    from ..crypto.age import parse_recipient, recipient_fingerprint

    return recipient_fingerprint(parse_recipient(recipient))
