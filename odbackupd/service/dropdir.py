"""Drop directories: each complete file put there becomes its own snapshot, then goes.

The API the controller uses::

    async def on_file(path: Path) -> bool:       # True: stored and verified
        run = await loop.run_in_executor(None, functools.partial(
            run_job, config, job, state, sources=[path], series=drop_series(job),
            trigger="drop"))
        return run.result.ok

    d = DropDir(loop, "etc", job.drop_dir, on_file=on_file, settle=job.quiet_period,
                on_outcome=None)    # optional: (path, "removed"|"failed"|"changed"|"kept")
    d.start()       # raises FileNotFoundError/NotADirectoryError (clear message) or
                    # WatchLimitError (see watcher.py)
    ...
    d.stop()

What "complete" means, and why:

- A file is taken when inotify reports it closed after writing (``IN_CLOSE_WRITE``) or
  moved in (``IN_MOVED_TO``: ``rsync``, ``mv``, ``curl -o x.part && mv``), never while it is
  being written: a write (``IN_MODIFY``) after the last close puts it back to waiting for
  the next close, even if it was already queued.
- Files already there at :meth:`DropDir.start` (or after the kernel's event queue
  overflowed) were written while nobody watched, so their closing was not seen; a hard
  link made with ``ln`` has no close at all. They are taken once their size and mtime have
  not changed for ``settle`` seconds (the job's quiet_period) AND no process has them open
  for writing. The latter is asked of the kernel, not of ``/proc/*/fd`` (heavy, racy, and
  unreadable without ptrace rights): a read lease (``F_SETLEASE``) is refused while any
  process holds a writable descriptor, and is released at once. Leases need CAP_LEASE
  (the unit grants it) or owning the file, and a file system that has them (not NFS);
  without them a file created while watched waits for its close, and one present at
  start is taken once stable — drop files by rename to be sure there.
- Before an upload starts the same check runs again: a file closed by one writer while
  another still has it open for writing is not taken yet.
- Names that are temporary by convention — ``.*``, ``*.tmp``, ``*.part``, ``*~`` — are
  ignored until they are renamed to a final name. Subdirectories are not descended into:
  they are logged once and left alone.
- One file at a time per drop directory (each is a run of the job's drop series, which has
  one lock), in the order they became complete.
- A file is deleted only after ``on_file`` returned True and only if it is still the same
  file (inode, size, mtime) as when its upload started; one that changed meanwhile is kept
  and taken again once closed. A failed upload (False or an exception) keeps the file and
  retries it after ``retry_initial`` seconds, doubling up to ``retry_max``.
- ``on_outcome(path, what)``, if given, hears how each attempt ended: "removed" (stored,
  verified, deleted), "failed" (kept, retried later), "changed" (stored, but the file
  changed meanwhile: kept) or "kept" (stored, but it could not be deleted).
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import pyinotify

from .droppolicy import file_signature, is_temporary_name, open_for_writing, unchanged
from .watcher import InotifyHub

log = logging.getLogger("odbackupd.drop")

__all__ = ["DropDir", "is_temporary_name", "open_for_writing"]

class DropDir:
    """Takes the complete files of one job's drop directory, one snapshot each."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        job: str,
        path: Path,
        *,
        on_file: Callable[[Path], Awaitable[bool]],
        settle: float = 300.0,
        retry_initial: float = 30.0,
        retry_max: float = 3600.0,
        hub: InotifyHub | None = None,
        on_outcome: Callable[[Path, str], None] | None = None,
    ) -> None:
        self.loop = loop
        self.job = job
        self.path = Path(os.path.normpath(path))
        self.on_file = on_file
        self.on_outcome = on_outcome
        self.settle = settle
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self._hub = hub
        self._dir = os.fsdecode(self.path)
        self._writing: set[str] = set()  # written to since it was last closed
        self._settling: dict[str, tuple[tuple, asyncio.TimerHandle]] = {}
        self._queue: dict[str, None] = {}  # complete files waiting, in order
        self._retry: dict[str, asyncio.TimerHandle] = {}
        self._failures: dict[str, int] = {}
        self._kept: dict[str, tuple] = {}  # uploaded but could not be removed: signature
        self._warned: set[str] = set()
        self._held: dict[str, int] = {}  # times found stable but still open for writing
        self._current: str | None = None
        self._closed_again = False  # the file being uploaded was closed after a write
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.running = False
        #: Counters for logs and tests.
        self.taken = 0
        self.failed = 0
        self.held_open = 0  # times a stable file was found still open for writing

    def _fields(self, name: str | None = None) -> dict:
        f = {"JOB": self.job, "DROP_DIR": self._dir}
        if name is not None:
            f["FILE"] = os.path.join(self._dir, name)
        return {"journal_fields": f}

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Watch the directory and look at what is already there."""
        try:
            st = os.stat(self._dir)
        except FileNotFoundError:
            raise FileNotFoundError(
                errno.ENOENT, f"job {self.job}: drop_dir '{self._dir}' does not exist; create "
                f"it (writable by the senders, e.g. `install -d -m 1733 {self._dir}`) or fix "
                "drop_dir in the configuration") from None
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(
                errno.ENOTDIR, f"job {self.job}: drop_dir '{self._dir}' is not a directory")
        if self._hub is None or self._hub.closed:
            self._hub = InotifyHub.for_loop(self.loop)
        self.running = True
        if self._hub.add(self, self._dir) is None:
            self.running = False
            raise PermissionError(errno.EACCES, f"job {self.job}: cannot watch drop_dir "
                                  f"'{self._dir}': permission denied")
        self._task = self.loop.create_task(self._work(), name=f"drop:{self.job}")
        self._scan()
        log.info("job %s: taking complete files from drop directory %s", self.job, self._dir,
                 extra=self._fields())

    def stop(self) -> None:
        """Stop watching. An upload in progress is abandoned, its file kept (the next
        start takes it again; the drop series resumes its snapshot)."""
        self.running = False
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for _, h in self._settling.values():
            h.cancel()
        for h in self._retry.values():
            h.cancel()
        self._settling.clear()
        self._retry.clear()
        self._queue.clear()
        if self._hub is not None:
            self._hub.release(self)

    # ---- events ------------------------------------------------------------------------

    def _scan(self) -> None:
        """Files present without their close having been seen: take them once stable."""
        try:
            with os.scandir(self._dir) as it:
                entries = list(it)
        except OSError as e:
            log.error("job %s: cannot list drop directory %s: %s", self.job, self._dir, e,
                      extra=self._fields())
            return
        for e in entries:
            name = e.name
            if e.is_dir(follow_symlinks=False):
                self._warn_once(name, "is a directory: drop directories take files only; "
                                "it is left alone")
            elif (not is_temporary_name(name) and name not in self._queue
                  and name not in self._retry and name != self._current):
                self._start_settling(name)

    def inotify_event(self, event: pyinotify.Event) -> None:
        if not self.running:
            return
        mask = event.mask
        if mask & pyinotify.IN_IGNORED and event.path == self._dir:
            log.error("job %s: drop directory %s was removed or unmounted; no more files "
                      "are taken from it until the daemon is reloaded", self.job, self._dir,
                      extra=self._fields())
            return
        if event.path != self._dir or not event.name:
            return  # an event of a shared watch below us, or on the directory itself
        name = event.name
        if mask & pyinotify.IN_ISDIR:
            if mask & (pyinotify.IN_CREATE | pyinotify.IN_MOVED_TO):
                self._warn_once(name, "is a directory: drop directories take files only; "
                                "it is left alone")
            return
        if is_temporary_name(name):
            return
        if mask & (pyinotify.IN_DELETE | pyinotify.IN_MOVED_FROM):
            self._forget(name)
        elif mask & (pyinotify.IN_CREATE | pyinotify.IN_MODIFY):
            self._writing.add(name)
            self._queue.pop(name, None)
            # normally its close comes first; a hard link (ln) never closes: it is taken once
            # stable and nobody has it open for writing (_settled compares size and mtime, so
            # later writes need no new timer: one lstat per file, not one per write)
            if name not in self._settling:
                self._start_settling(name)
        elif mask & pyinotify.IN_CLOSE_WRITE:
            self._writing.discard(name)
            self._enqueue(name)
        elif mask & pyinotify.IN_MOVED_TO:
            self._forget(name)  # a new file under this name
            self._enqueue(name)

    def inotify_overflow(self) -> None:
        if self.running:
            self._scan()

    def _warn_once(self, name: str, what: str) -> None:
        if name not in self._warned:
            self._warned.add(name)
            log.warning("job %s: %s/%s %s", self.job, self._dir, name, what,
                        extra=self._fields(name))

    def _forget(self, name: str) -> None:
        self._writing.discard(name)
        self._stop_settling(name)
        self._queue.pop(name, None)
        h = self._retry.pop(name, None)
        if h is not None:
            h.cancel()
        self._failures.pop(name, None)
        self._kept.pop(name, None)
        self._warned.discard(name)
        self._held.pop(name, None)

    def _enqueue(self, name: str) -> None:
        if not self.running:
            return
        self._stop_settling(name)
        h = self._retry.pop(name, None)
        if h is not None:
            h.cancel()
        if name == self._current:
            self._closed_again = True
            return
        self._queue[name] = None
        self._wake.set()

    # ---- files present without a seen close --------------------------------------------

    def _stat(self, name: str) -> os.stat_result | None:
        try:
            return os.lstat(os.path.join(self._dir, name))
        except OSError:
            return None

    def _start_settling(self, name: str) -> None:
        st = self._stat(name)
        if st is None:
            return
        self._stop_settling(name)
        handle = self.loop.call_later(self.settle, self._settled, name)
        self._settling[name] = (file_signature(st), handle)

    def _stop_settling(self, name: str) -> None:
        entry = self._settling.pop(name, None)
        if entry is not None:
            entry[1].cancel()

    def _still_open(self, name: str) -> None:
        """A file that would be complete but that a process has open for writing: said
        once, then checked again every settle period."""
        self.held_open += 1
        n = self._held[name] = self._held.get(name, 0) + 1
        log.log(logging.INFO if n == 1 else logging.DEBUG,
                "job %s: %s/%s is still open for writing; it is taken once nobody writes it%s",
                self.job, self._dir, name, "" if n == 1 else f" (seen open {n} times)",
                extra=self._fields(name))
        self._start_settling(name)

    def _settled(self, name: str) -> None:
        sig, _ = self._settling.pop(name, (None, None))
        st = self._stat(name)
        if st is None:
            return
        if file_signature(st) != sig:
            self._start_settling(name)  # still changing: wait another period
            return
        writers = open_for_writing(os.path.join(self._dir, name))
        if writers:
            self._still_open(name)  # stable, but a writer still has it open
        elif writers is False:
            self._writing.discard(name)
            self._enqueue(name)
        elif name not in self._writing:
            self._enqueue(name)  # present at start, stable, and the kernel cannot tell more
        # else: created while watched and the kernel cannot tell: wait for its close

    # ---- taking files ------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            name = next(iter(self._queue))
            del self._queue[name]
            self._current, self._closed_again = name, False
            try:
                await self._take(name)
            except Exception:  # a bug here must not end the drop directory: keep the file
                log.exception("job %s: taking %s/%s failed", self.job, self._dir, name)
                self._retry_later(name)
            finally:
                self._current = None
            if self._closed_again and self._stat(name) is not None:
                self._enqueue(name)

    async def _take(self, name: str) -> None:
        path = self.path / name
        st = self._stat(name)
        if st is None or name in self._writing:
            return  # gone, or written to again since it was closed: wait for the next close
        if not stat.S_ISREG(st.st_mode):
            self._warn_once(name, "is not a regular file (a symlink, fifo, …): not taken")
            return
        sig = file_signature(st)
        if self._kept.get(name) == sig:
            return  # already stored; only its removal failed
        if open_for_writing(path):
            self._still_open(name)  # one writer closed it, another still has it open
            return
        try:
            ok = bool(await self.on_file(path))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the file stays and is retried
            log.error("job %s: taking %s failed: %s", self.job, path, e, exc_info=True,
                      extra=self._fields(name))
            ok = False
        if not ok:
            self._retry_later(name)
            self._outcome(path, "failed")
            return
        self._failures.pop(name, None)
        now = self._stat(name)
        if now is None:
            return
        if not unchanged(sig, now) or name in self._writing:
            log.warning("job %s: %s changed while it was being stored; it is kept and taken "
                        "again once complete", self.job, path, extra=self._fields(name))
            if name not in self._writing:
                self._start_settling(name)
            self._outcome(path, "changed")
            return
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            self._kept[name] = sig
            hint = ""
            if e.errno == errno.EROFS:  # the unit's ProtectSystem=strict
                hint = (f"; the service may write only its own directories: add "
                        f"ReadWritePaths={self._dir} with `systemctl edit odbackupd`")
            elif e.errno in (errno.EACCES, errno.EPERM):
                hint = f"; the daemon's user needs write access to {self._dir}"
            log.error("job %s: %s is stored but could not be removed: %s%s", self.job, path,
                      e.strerror or e, hint, extra=self._fields(name))
            self._outcome(path, "kept")
            return
        self.taken += 1
        log.info("job %s: %s stored, verified and removed from the drop directory", self.job,
                 path, extra=self._fields(name))
        self._outcome(path, "removed")

    def _outcome(self, path: Path, what: str) -> None:
        if self.on_outcome is not None:
            try:
                self.on_outcome(path, what)
            except Exception:  # a listener's bug must not stop the drop directory
                log.exception("job %s: on_outcome failed", self.job)

    def _retry_later(self, name: str) -> None:
        self.failed += 1
        n = self._failures[name] = self._failures.get(name, 0) + 1
        delay = min(self.retry_max, self.retry_initial * 2 ** (n - 1))
        log.warning("job %s: %s/%s was not stored (attempt %d); it stays and is retried in "
                    "%.0fs", self.job, self._dir, name, n, delay, extra=self._fields(name))
        self._retry[name] = self.loop.call_later(delay, self._enqueue, name)
