"""Process-wide pacing of Graph traffic: the Retry-After gate, the bandwidth limit and the
cap on parallel uploads.

Why process-wide: Microsoft throttles per *app* (client id) and tenant, not per
connection. When one upload worker gets ``429 Retry-After: 30``, every other worker of
the same app that keeps sending makes the throttling longer and counts against the
budget (GRAPH-NOTES 1.12). So all requests of one app pass one :class:`RetryAfterGate`.
Likewise ``[daemon] bandwidth_limit`` and ``max_parallel_uploads`` are over *all*
uploads of the daemon, whatever job or destination they belong to.
"""
from __future__ import annotations

import email.utils
import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "Cancelled",
    "RetryAfterGate",
    "SharedDeadline",
    "TokenBucket",
    "UploadSlots",
    "bandwidth_limiter",
    "gate_for",
    "parse_retry_after",
    "upload_slots",
]


class Cancelled(Exception):
    """A wait was interrupted by the caller's cancel event."""


def _sleep(seconds: float, cancel: threading.Event | None) -> None:
    if seconds <= 0:
        return
    if cancel is None:
        time.sleep(seconds)
    elif cancel.wait(seconds):
        raise Cancelled()


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date.

    ``None`` when the header is absent or unparsable (the caller then backs off on its own).
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now())


class RetryAfterGate:
    """A time before which no request of one app may be sent.

    ``block(seconds)`` only ever moves the gate later; ``wait()`` sleeps until it has
    passed. Monotonic time, so a clock step does not open or stall the gate. With a
    ``shared`` file (:class:`SharedDeadline`) the gate is also every other process's on
    this host: a run or odctl started right after another one was throttled waits too.
    """

    def __init__(self, shared: SharedDeadline | None = None) -> None:
        self._until = 0.0
        self._lock = threading.Lock()
        self._shared = shared
        self.waits = 0  # how often a request had to wait (for tests and status)

    def block(self, seconds: float) -> None:
        until = time.monotonic() + max(0.0, seconds)
        with self._lock:
            if until > self._until:
                self._until = until
        if self._shared is not None:
            self._shared.extend(until)

    def remaining(self) -> float:
        with self._lock:
            until = self._until
        if self._shared is not None:
            until = max(until, self._shared.read())
        return max(0.0, until - time.monotonic())

    def wait(self, cancel: threading.Event | None = None) -> None:
        while True:
            left = self.remaining()
            if left <= 0:
                return
            with self._lock:
                self.waits += 1
            _sleep(left, cancel)


_gates: dict[tuple[str, str], RetryAfterGate] = {}
_gates_lock = threading.Lock()


def gate_for(app_key: str, state_dir: Path | None = None) -> RetryAfterGate:
    """The one gate of an app (e.g. ``authority|client_id``) in this process; with a
    ``state_dir``, shared with the host's other processes through a file there."""
    with _gates_lock:
        key = (app_key, str(state_dir or ""))
        gate = _gates.get(key)
        if gate is None:
            shared = SharedDeadline(state_dir, app_key) if state_dir is not None else None
            gate = _gates[key] = RetryAfterGate(shared)
        return gate


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


class SharedDeadline:
    """``STATE_DIR/throttle/APP``: the gate's deadline as ``BOOT_ID MONOTONIC``, which every
    process of the host reads before it sends (CLOCK_MONOTONIC is one clock for the whole
    host until reboot; a deadline from another boot is void). Best effort: a state
    directory this user cannot read or write leaves the gate per process."""

    def __init__(self, state_dir: Path, app_key: str) -> None:
        name = hashlib.sha256(app_key.encode()).hexdigest()[:16]
        self.path = Path(state_dir) / "throttle" / name
        self.boot = _boot_id()
        self._seen: tuple[int, int] | None = None  # (inode, mtime_ns) of the file last read
        self._value = 0.0

    def _own(self, path: Path, fd: int | None = None) -> None:
        """What root makes here belongs to the state directory's owner (the service's user)."""
        if os.geteuid() == 0:
            st = self.path.parent.parent.stat()
            if fd is None:
                os.chown(path, st.st_uid, st.st_gid)
            else:
                os.fchown(fd, st.st_uid, st.st_gid)

    def _parse(self, text: str) -> float:
        boot, _, until = text.strip().partition(" ")
        try:
            return float(until) if boot == self.boot else 0.0
        except ValueError:
            return 0.0

    def read(self) -> float:
        try:
            st = os.stat(self.path)
        except OSError:
            return 0.0
        if self._seen != (st.st_ino, st.st_mtime_ns):
            try:
                self._value = self._parse(self.path.read_text())
            except OSError:
                return 0.0
            self._seen = (st.st_ino, st.st_mtime_ns)
        return self._value

    def extend(self, until: float) -> None:
        try:
            if not self.path.parent.is_dir():
                self.path.parent.mkdir(mode=0o700)
                self._own(self.path.parent)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            self._own(self.path, fd)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            current = self._parse(os.read(fd, 200).decode(errors="replace"))
            if until > current:
                data = f"{self.boot} {until:.3f}\n".encode()
                os.lseek(fd, 0, os.SEEK_SET)
                os.ftruncate(fd, 0)
                os.write(fd, data)
        except OSError:
            pass
        finally:
            os.close(fd)


class TokenBucket:
    """Bytes-per-second limiter shared by every upload in the process.

    ``consume(n)`` takes ``n`` bytes worth of tokens, going into debt when ``n`` is larger
    than the bucket (a whole chunk is sent at once) and sleeping the debt off, so the
    long-run rate is ``rate`` whatever the chunk size. ``rate=None``: no limit.
    """

    def __init__(self, rate: int | None, burst: int | None = None) -> None:
        self._lock = threading.Lock()
        self.set_rate(rate, burst)

    def set_rate(self, rate: int | None, burst: int | None = None) -> None:
        with self._lock:
            self.rate = rate if rate and rate > 0 else None
            self.burst = float(burst if burst is not None else (self.rate or 0))
            self._tokens = self.burst
            self._last = time.monotonic()

    def consume(self, n: int, cancel: threading.Event | None = None) -> None:
        if self.rate is None or n <= 0:
            return
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= n
            debt = -self._tokens
        if debt > 0:
            _sleep(debt / self.rate, cancel)


_bucket = TokenBucket(None)


def bandwidth_limiter(rate: int | None) -> TokenBucket:
    """The process's one bucket, set to ``rate`` (the latest configuration wins)."""
    if rate != _bucket.rate:
        _bucket.set_rate(rate)
    return _bucket


class UploadSlots:
    """A semaphore whose size can change (``systemctl reload`` with a new
    ``max_parallel_uploads``) without losing track of the slots in use."""

    def __init__(self, limit: int) -> None:
        self._cond = threading.Condition()
        self.limit = max(1, limit)
        self.in_use = 0
        self.peak = 0

    def set_limit(self, limit: int) -> None:
        with self._cond:
            self.limit = max(1, limit)
            self._cond.notify_all()

    def acquire(self, cancel: threading.Event | None = None) -> None:
        with self._cond:
            while self.in_use >= self.limit:
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                self._cond.wait(0.2)
            self.in_use += 1
            self.peak = max(self.peak, self.in_use)

    def release(self) -> None:
        with self._cond:
            self.in_use -= 1
            self._cond.notify()


_slots = UploadSlots(4)


def upload_slots(limit: int) -> UploadSlots:
    """The process's one set of upload slots, sized ``limit`` (the latest configuration wins)."""
    if limit != _slots.limit:
        _slots.set_limit(limit)
    return _slots
