"""inotify triggers: run a ``watch = true`` job once its sources have been quiet.

(Over 400 lines on purpose: the shared inotify instance, the batched tree walk and the
per-job debounce are one mechanism whose invariants — one watch descriptor per inode,
shared between jobs — are explained and kept together here.)

The API the controller uses::

    w = JobWatcher(loop, "etc", [Path("/etc"), Path("/srv/git")],
                   quiet_period=job.quiet_period, max_delay=job.max_delay,
                   exclude=job.exclude, skip_paths=[daemon.state_dir, daemon.spool_dir],
                   one_file_system=job.one_file_system, on_trigger=controller.watch_fired)
    try:
        report = w.start()      # WatchReport: watches set, seconds taken, unreadable dirs
    except WatchLimitError as e:
        log.error("%s", e)      # the message says which limit and how to raise it
        ...                     # the job keeps only its schedule
    ...
    w.stop()

``on_trigger(job)`` is called on the loop, never from a thread, ``quiet_period`` seconds
after the last change seen and at the latest ``max_delay`` seconds after the first change
of a burst, however long the burst lasts. A burst that overflows the kernel's event queue
(``IN_Q_OVERFLOW``) counts as a change of every watched tree, so it still triggers exactly
one run; missed new directories are then picked up by walking the trees again. Whether a
run is already going when the trigger fires is the controller's business (run again after
it, or not).

Why it is built this way:

- One inotify instance per process (:class:`InotifyHub`, one per loop), read through
  pyinotify's ``AsyncioNotifier`` (``loop.add_reader``): no thread polls anything.
- The kernel gives one watch descriptor per inode per inotify instance, and adding a watch
  again replaces its mask; pyinotify keeps one callback per descriptor. Two jobs whose
  trees overlap (or a drop directory inside another job's sources) would steal each
  other's events. So the hub keeps its own owner sets per descriptor, adds every watch with
  the same mask and dispatches each event to every owner; an owner's ``stop`` removes a
  watch only when no other owner holds it.
- New directories are followed by the watcher itself, not by pyinotify's ``auto_add``:
  that way they get the job's excludes, skip paths and one-file-system rule, count towards
  the job's ownership, and a directory moved in from outside is watched recursively while
  one moved out stops being watched.
- Timers run on the loop's clock (``loop.call_at``): a quiet period is re-armed lazily
  (the callback re-checks the deadline), so ten thousand events cost ten thousand integer
  updates, not ten thousand timer reschedules.
- pyinotify decodes event names and encodes watch paths strictly as UTF-8; Linux names are
  bytes. :class:`_WatchManager`/:class:`_Notifier` use ``os.fsencode``/``surrogateescape``
  so a directory with a non-UTF-8 name is watched like any other (a backup tool must not
  go blind on the names it archives).

Timers use the loop's monotonic clock, not :mod:`odbackupd.service.clock` (that one is
the wall clock for cron schedules; a quiet period is an interval, and tests run it for
real with quiet periods of a fraction of a second).
"""
from __future__ import annotations

import array
import asyncio
import errno
import fcntl
import logging
import os
import stat
import struct
import termios
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pyinotify

from ..snapshot.walk import ExcludeMatcher

log = logging.getLogger("odbackupd.watch")

__all__ = ["InotifyHub", "JobWatcher", "WatchLimitError", "WatchReport", "inotify_limits"]

#: One mask for every watch (see the module docstring: descriptors are shared). It is what
#: a watched tree and a drop directory need together; IN_DONT_FOLLOW: never watch through a
#: symlink; IN_EXCL_UNLINK: no events from files already deleted but still open.
WATCH_MASK = (
    pyinotify.IN_CREATE | pyinotify.IN_DELETE | pyinotify.IN_MODIFY | pyinotify.IN_ATTRIB
    | pyinotify.IN_CLOSE_WRITE | pyinotify.IN_MOVED_FROM | pyinotify.IN_MOVED_TO
    | pyinotify.IN_DONT_FOLLOW | pyinotify.IN_EXCL_UNLINK
)  # fmt: skip

_SYSCTL = Path("/proc/sys/fs/inotify")
_USERNS_WATCHES = Path("/proc/sys/user/max_inotify_watches")


class WatchLimitError(OSError):
    """An inotify limit is used up; the message names it and says how to raise it."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


@dataclass
class WatchReport:
    """What :meth:`JobWatcher.start` set up, for the log and the benchmark."""

    job: str
    watches: int  # directories watched for this job (shared ones included)
    seconds: float  # time taken to walk the trees and add the watches
    unreadable: list[str] = field(default_factory=list)  # directories that could not be watched
    missing: list[str] = field(default_factory=list)  # sources that do not exist (yet)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def inotify_limits() -> dict[str, int | None]:
    """The kernel's inotify limits: ``max_user_watches``, ``max_user_instances``,
    ``max_queued_events`` (fs.inotify.*), and the user namespace's own watch limit."""
    limits = {name: _read_int(_SYSCTL / name)
              for name in ("max_user_watches", "max_user_instances", "max_queued_events")}
    limits["userns_max_watches"] = _read_int(_USERNS_WATCHES)
    return limits


def _watch_limit_message(what: str, watches_here: int) -> str:
    lim = inotify_limits()
    have = lim["max_user_watches"]
    ns = lim["userns_max_watches"]
    extra = ""
    if ns is not None and have is not None and ns < have:
        extra = f" (this user namespace allows only {ns}: user.max_inotify_watches)"
    return (
        f"cannot watch {what}: the inotify watch limit is used up after {watches_here} "
        f"watches by this daemon; fs.inotify.max_user_watches = {have}{extra}, shared by all "
        "processes of this user. Raise it, e.g. `sysctl fs.inotify.max_user_watches=524288` "
        "and a line fs.inotify.max_user_watches = 524288 in /etc/sysctl.d/90-odbackupd.conf; "
        "until then the job runs on its schedule only"
    )


class _WatchManager(pyinotify.WatchManager):
    """pyinotify's WatchManager, able to watch paths that are not valid UTF-8."""

    def __init__(self) -> None:
        try:
            super().__init__()
        except OSError as e:
            lim = inotify_limits()["max_user_instances"]
            raise WatchLimitError(
                errno.EMFILE,
                f"cannot start inotify ({e}); fs.inotify.max_user_instances = {lim} may be "
                "used up: raise it with `sysctl fs.inotify.max_user_instances=1024`; until "
                "then watched jobs run on their schedule only",
            ) from e
        wrapper = self._inotify_wrapper
        libc = getattr(wrapper, "_libc", None)
        if libc is not None:  # the ctypes binding encodes paths strictly: use fsencode
            wrapper._inotify_add_watch = lambda fd, path, mask: libc.inotify_add_watch(
                fd, os.fsencode(path), mask)

    def last_errno(self) -> int:
        return self._inotify_wrapper.get_errno() or 0


class _RawEvent(pyinotify._RawEvent):
    """pyinotify's raw event without its eager ``log.debug(str(self))`` (a formatted
    string per event, thrown away: a third of the cost of a burst)."""

    def __init__(self, wd: int, mask: int, cookie: int, name: str) -> None:
        self._str = None
        self.wd, self.mask, self.cookie, self.name = wd, mask, cookie, name


class _Notifier(pyinotify.AsyncioNotifier):
    """pyinotify's asyncio notifier, decoding event names with ``surrogateescape``.

    pyinotify's ``read_events`` decodes names strictly: one non-UTF-8 name would raise in
    the loop callback and lose the rest of the batch.
    """

    def read_events(self) -> None:
        buf = array.array("i", [0])
        if fcntl.ioctl(self._fd, termios.FIONREAD, buf, 1) == -1:
            return
        size = buf[0]
        try:
            raw = os.read(self._fd, size)
        except BlockingIOError:
            return
        pos = 0
        while pos + 16 <= len(raw):
            wd, mask, cookie, length = struct.unpack_from("iIII", raw, pos)
            name = raw[pos + 16:pos + 16 + length].rstrip(b"\0")
            self._eventq.append(_RawEvent(wd, mask, cookie, os.fsdecode(name)))
            pos += 16 + length


class Owner(Protocol):
    """What the hub calls: JobWatcher and DropDir implement it."""

    def inotify_event(self, event: pyinotify.Event) -> None: ...
    def inotify_overflow(self) -> None: ...


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, InotifyHub] = (
    weakref.WeakKeyDictionary())


class InotifyHub:
    """The process's inotify instance, shared by every watcher and drop directory.

    Watches are reference-counted by owner; the hub closes itself (and its file
    descriptor) when the last owner lets go, and :meth:`for_loop` makes a new one on
    demand.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        _quiet_pyinotify()
        self.loop = loop
        self._wm = _WatchManager()
        self._notifier = _Notifier(self._wm, loop, default_proc_fun=self._dispatch)
        self._owners: dict[int, set[Owner]] = {}
        self._held: dict[Owner, set[int]] = {}
        self.closed = False
        self.overflows = 0

    @classmethod
    def for_loop(cls, loop: asyncio.AbstractEventLoop) -> InotifyHub:
        hub = _hubs.get(loop)
        if hub is None or hub.closed:
            hub = _hubs[loop] = cls(loop)
        return hub

    @property
    def watch_count(self) -> int:
        return len(self._owners)

    def held_by(self, owner: Owner) -> int:
        return len(self._held.get(owner, ()))

    def add(self, owner: Owner, path: str) -> int | None:
        """Watch one directory for ``owner``: its descriptor, or None if it is gone or
        unreadable (the caller decides whether that matters). Raises WatchLimitError."""
        try:
            ret = self._wm.add_watch(path, WATCH_MASK, proc_fun=self._dispatch, quiet=False)
        except pyinotify.WatchManagerError:
            err = self._wm.last_errno()
            if err == errno.ENOSPC:
                raise WatchLimitError(err, _watch_limit_message(
                    f"'{path}'", self.watch_count)) from None
            if err in (errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.ELOOP):
                return None
            raise OSError(err, f"cannot watch '{path}': {os.strerror(err)}") from None
        wd = next(iter(ret.values()))
        self._owners.setdefault(wd, set()).add(owner)
        self._held.setdefault(owner, set()).add(wd)
        return wd

    def path_of(self, wd: int) -> str | None:
        w = self._wm.watches.get(wd)
        return w.path if w is not None else None

    def release(self, owner: Owner, under: str | None = None) -> None:
        """Drop ``owner``'s watches (only those at or below ``under`` if given)."""
        held = self._held.get(owner, set())
        if under is not None:
            prefix = under.rstrip("/") + "/"
            wds = {wd for wd in held
                   if (p := self.path_of(wd)) is not None and (p == under or p.startswith(prefix))}
        else:
            wds = set(held)
        for wd in wds:
            held.discard(wd)
            owners = self._owners.get(wd)
            if owners is None:
                continue
            owners.discard(owner)
            if not owners:
                del self._owners[wd]
                try:
                    self._wm.rm_watch(wd, quiet=False)
                except pyinotify.WatchManagerError:
                    self._wm.watches.pop(wd, None)  # the kernel dropped it already
        if not held:
            self._held.pop(owner, None)
        if not self._held:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._notifier.stop()  # removes the reader and closes the inotify fd
        self._owners.clear()
        self._held.clear()

    def _dispatch(self, event: pyinotify.Event) -> None:
        if event.mask & pyinotify.IN_Q_OVERFLOW:
            self.overflows += 1
            log.warning("inotify event queue overflowed (fs.inotify.max_queued_events = %s): "
                        "treating every watched tree as changed",
                        inotify_limits()["max_queued_events"])
            for owner in list(self._held):
                owner.inotify_overflow()
            return
        owners = self._owners.get(event.wd, ())
        if event.mask & pyinotify.IN_IGNORED:  # the kernel removed it: directory gone
            for owner in self._owners.pop(event.wd, ()):
                self._held.get(owner, set()).discard(event.wd)
        for owner in list(owners):
            owner.inotify_event(event)


def _quiet_pyinotify() -> None:
    """pyinotify installs its own stderr handler and logs every raw event at debug; we
    report what matters ourselves, through the daemon's logging (journald)."""
    plog = logging.getLogger("pyinotify")
    for h in list(plog.handlers):
        plog.removeHandler(h)
    plog.setLevel(logging.ERROR)


def _inside(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


class JobWatcher:
    """Watches one job's sources and calls ``on_trigger(job)`` after changes settle.

    ``paths``: the job's sources; a directory is watched recursively (new directories
    followed), a single file through its parent directory (so a file replaced by rename,
    as editors and logrotate do, is still seen). ``exclude``: the job's exclude patterns,
    ``skip_paths``: the daemon's own state and spool directories — neither is watched nor
    counts as a change. ``hub``: the shared :class:`InotifyHub` (default: the loop's).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        job: str,
        paths: Sequence[Path],
        *,
        quiet_period: float,
        max_delay: float,
        on_trigger: Callable[[str], None],
        exclude: Sequence[str] = (),
        skip_paths: Sequence[Path] = (),
        one_file_system: bool = True,
        hub: InotifyHub | None = None,
    ) -> None:
        self.loop = loop
        self.job = job
        self.quiet_period = quiet_period
        self.max_delay = max(max_delay, quiet_period)
        self.on_trigger = on_trigger
        self.one_file_system = one_file_system
        self._hub = hub
        self._exclude = ExcludeMatcher(exclude)
        self._skip = [os.path.normpath(os.fsdecode(p)) for p in skip_paths]
        self._trees: list[str] = []
        self._files: set[str] = set()
        self._file_dirs: set[str] = set()
        self._missing: list[str] = []
        for p in paths:
            s = os.path.normpath(os.fsdecode(p))
            try:
                st = os.lstat(s)
            except OSError:
                self._missing.append(s)
                continue
            if stat.S_ISDIR(st.st_mode):
                self._trees.append(s)
            else:
                self._files.add(s)
                self._file_dirs.add(os.path.dirname(s))
        self._first: float | None = None  # first change of the current burst (loop time)
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._unreadable: list[str] = []
        self.running = False
        #: Counters for logs, tests and the benchmark.
        self.changes = 0
        self.triggers = 0

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> WatchReport:
        """Walk the trees and add the watches in one go, blocking the caller (about a
        second per 50,000 directories, see bench/bench_watch.py; the daemon uses
        :meth:`start_async`). Raises WatchLimitError (having released what it added) when an
        inotify limit is used up."""
        t0 = time.monotonic()
        steps = self._begin()
        try:
            for _ in steps:
                pass
        except WatchLimitError as e:
            self._limit_hit(e)
        return self._report(t0)

    async def start_async(self, batch: int = 500) -> WatchReport | None:
        """:meth:`start` for the daemon: the walk gives the event loop back every ``batch``
        directories, so D-Bus calls, timers and the watchdog keep being served while a big
        tree is set up (adding a watch must stay on the loop's thread, where pyinotify reads
        its events; a walk done in another thread would race the descriptor table). None
        when :meth:`stop` ended the walk first (a reload)."""
        t0 = time.monotonic()
        steps = self._begin()
        try:
            for i, _ in enumerate(steps, 1):
                if i % batch == 0:
                    await asyncio.sleep(0)
                    if not self.running:  # stopped meanwhile: drop what this batch added
                        assert self._hub is not None
                        self._hub.release(self)
                        return None
        except WatchLimitError as e:
            self._limit_hit(e)
        return self._report(t0)

    def _begin(self) -> Iterator[None]:
        hub = self._hub = (self._hub if self._hub and not self._hub.closed
                           else InotifyHub.for_loop(self.loop))
        self.running = True
        return self._walk_steps(hub)

    def _walk_steps(self, hub: InotifyHub) -> Iterator[None]:
        for d in sorted(self._file_dirs):
            if hub.add(self, d) is None:
                self._unreadable.append(d)
        for top in self._trees:
            yield from self._watch_tree(top)

    def _limit_hit(self, e: WatchLimitError) -> None:
        self.stop()
        raise WatchLimitError(e.errno, f"job {self.job}: {e.strerror}") from None

    def _report(self, t0: float) -> WatchReport:
        assert self._hub is not None
        report = WatchReport(self.job, self._hub.held_by(self), time.monotonic() - t0,
                             list(self._unreadable), list(self._missing))
        log.info("job %s: watching %d directories (%.2fs)%s", self.job, report.watches,
                 report.seconds,
                 f"; {len(report.unreadable)} could not be watched" if report.unreadable else "",
                 extra={"journal_fields": {"JOB": self.job}})
        return report

    def stop(self) -> None:
        """Remove this job's watches and forget a pending trigger."""
        self.running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._first = None
        if self._hub is not None:
            self._hub.release(self)

    # ---- watching ----------------------------------------------------------------------

    def _pruned(self, path: str) -> bool:
        return _inside(path, self._skip) or self._exclude.excluded(os.fsencode(path))

    def _watch_tree(self, top: str) -> Iterator[None]:
        """Watch ``top`` and every directory below it that the job would archive; yields
        after each directory (the caller decides when to give the loop back)."""
        assert self._hub is not None
        try:
            dev = os.lstat(top).st_dev
        except OSError:
            return
        stack = [top]
        while stack:
            yield
            d = stack.pop()
            if self._hub.add(self, d) is None:
                if os.path.lexists(d):
                    self._unreadable.append(d)
                continue
            try:
                with os.scandir(d) as it:
                    for e in it:
                        try:
                            if not e.is_dir(follow_symlinks=False):
                                continue
                            if self.one_file_system and e.stat(follow_symlinks=False).st_dev != dev:
                                continue
                        except OSError:
                            continue
                        if not self._pruned(e.path):
                            stack.append(e.path)
            except OSError:
                continue

    def _relevant(self, path: str) -> bool:
        if _inside(path, self._trees):
            return not self._pruned(path)
        return path in self._files

    def inotify_event(self, event: pyinotify.Event) -> None:
        if not self.running:
            return
        path = event.pathname
        if event.mask & pyinotify.IN_IGNORED:
            if _inside(path, self._trees):
                self._changed()  # a watched directory vanished (deleted or unmounted)
            return
        if not self._relevant(path):
            return
        if event.mask & pyinotify.IN_ISDIR and _inside(path, self._trees):
            if event.mask & pyinotify.IN_MOVED_FROM:
                self._hub.release(self, under=path)  # type: ignore[union-attr]
            elif event.mask & (pyinotify.IN_CREATE | pyinotify.IN_MOVED_TO):
                self._follow(path)
        self._changed()

    def inotify_overflow(self) -> None:
        """Events were lost: count it as a change, and walk again for new directories."""
        if not self.running:
            return
        self._changed()
        try:
            for top in self._trees:
                self._watch_now(top)
        except WatchLimitError as e:
            log.error("job %s: %s", self.job, e.strerror,
                      extra={"journal_fields": {"JOB": self.job}})

    def _watch_now(self, top: str) -> None:
        for _ in self._watch_tree(top):
            pass

    def _follow(self, path: str) -> None:
        try:
            self._watch_now(path)
        except WatchLimitError as e:
            # The running daemon cannot fall back by itself here: the trees stay watched
            # except below this directory, and the message says how to fix it.
            log.error("job %s: %s", self.job, e.strerror,
                      extra={"journal_fields": {"JOB": self.job}})

    # ---- debouncing --------------------------------------------------------------------

    def _due(self) -> float:
        assert self._first is not None
        return min(self._last + self.quiet_period, self._first + self.max_delay)

    def _changed(self) -> None:
        self.changes += 1
        self._last = self.loop.time()
        if self._first is None:
            self._first = self._last
        if self._timer is None:
            self._timer = self.loop.call_at(self._due(), self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self._first is None:
            return
        due = self._due()
        # asyncio runs a timer up to one clock resolution early: re-arm only if it is later
        if due > self.loop.time() + self.loop._clock_resolution:  # type: ignore[attr-defined]
            self._timer = self.loop.call_at(due, self._fire)
            return
        self._first = None
        self.triggers += 1
        log.info("job %s: sources changed, starting a run", self.job,
                 extra={"journal_fields": {"JOB": self.job, "TRIGGER": "watch"}})
        try:
            self.on_trigger(self.job)
        except Exception:  # a controller bug must not stop the watcher
            log.exception("job %s: on_trigger failed", self.job)
