"""What a run tells the metrics file and the notifiers: the runner's one hook object.

``run_job`` makes a :class:`RunObserver` when the run starts (it queues the ``start``
notification), hands it the opened destinations (it counts the bytes they are sent),
and calls :meth:`RunObserver.finished` once the run's end is recorded (metrics, the
run-end notification, the metrics file). Everything here is guarded: a broken metrics
directory or notifier is logged and never fails or slows a backup (delivery happens
elsewhere, from the queue).
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from . import metrics
from .notify import message, queue
from .runstatus import RunStatus

log = logging.getLogger("odbackupd.observe")

TAIL_LINES = 200


class _LogTail(logging.Handler):
    """The last lines the run logged (its own thread's records, or any naming its job)."""

    def __init__(self, job: str) -> None:
        super().__init__(logging.INFO)
        self.job = job
        self.thread = threading.get_ident()
        self.owner = threading.current_thread()
        self.lines: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "journal_fields", None) or {}
        if record.thread == self.thread or fields.get("JOB") == self.job:
            try:
                self.lines.append(self.format(record))
            except Exception:  # noqa: BLE001 - a tail line is not worth an error
                pass


class RunObserver:
    def __init__(self, config: Any, state: Any, job: str, series: str, run_id: int,
                 trigger: str) -> None:
        self.config, self.state, self.job, self.series, self.run_id = (
            config, state, job, series, run_id)
        self.trigger = trigger
        self.started = time.time()
        self.uploaded: collections.Counter[str] = collections.Counter()
        self.dests: list[Any] = []
        self._tail = _LogTail(job)
        top = logging.getLogger("odbackupd")
        for h in [h for h in top.handlers if isinstance(h, _LogTail) and not h.owner.is_alive()]:
            top.removeHandler(h)  # left by a run that crashed before finished()
        top.addHandler(self._tail)
        self._guard("queueing the start notification", lambda: queue.queue_event(
            config, state, config.jobs[job], series, ["start"], lambda ev: self._doc(ev)))

    def _guard(self, what: str, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception:  # noqa: BLE001 - monitoring must never fail the backup
            log.exception("job %s: %s failed", self.job, what)

    def _doc(self, event: str, **kw: Any) -> dict:
        return message.document(event, host=self.config.daemon.hostname, series=self.series,
                                job=self.job, run_id=self.run_id, started=self.started,
                                trigger=self.trigger, **kw)

    def attach(self, dests: Sequence[Any]) -> None:
        """Count what each destination is sent (volumes, including resumed uploads' rest)."""
        self.dests = list(dests)
        for d in self.dests:
            put = d.put_file

            # the arguments are Destination.put_file's own, passed on unchanged
            def counted(job, snapshot, name, src, expected, progress=None, cancel=None,  # noqa: ANN001, ANN202
                        _put: Callable[..., Any] = put, _name: str = d.name):
                def step(n: int) -> None:
                    self.uploaded[_name] += n
                    if progress is not None:
                        progress(n)
                return _put(job, snapshot, name, src, expected, step, cancel)

            d.put_file = counted

    def finished(self, run: Any) -> None:
        logging.getLogger("odbackupd").removeHandler(self._tail)
        if run.busy:
            return  # another process ran the series: this one did nothing to report
        self._guard("recording metrics", lambda: self._metrics(run))
        self._guard("queueing notifications", lambda: self._notify(run))
        metrics.publish(self.config, self.state)

    def _metrics(self, run: Any) -> None:
        r = run.result
        job = self.config.jobs[self.job]
        metrics.record_run(self.state, self.series, r.status, time.time(),
                           time.time() - self.started, list(job.destinations))
        for name, kept in getattr(run, "kept", {}).items():
            metrics.record_snapshots(self.state, self.series, name, kept)
        throttled: collections.Counter[str] = collections.Counter()
        for d in self.dests:
            metrics.record_destination(self.state, d.name, self.uploaded[d.name], d.last_space())
            account = getattr(getattr(d, "account", None), "name", None)
            if account:
                throttled[account] += int(getattr(getattr(d, "client", None), "throttled", 0) or 0)
        login_ok = True if r.ok else (False if run.login_needed else None)
        for n in job.destinations:
            account = getattr(self.config.destinations.get(n), "account", None)
            if account:
                metrics.record_account(self.state, account, throttled=throttled.pop(account, 0),
                                       login_ok=login_ok)

    def _notify(self, run: Any) -> None:
        r = run.result
        if r.status == RunStatus.CANCELLED:
            return
        was_failing = queue.note_result(self.state, self.series, not r.ok)
        if r.ok:
            queue.series_recovered(self.state, self.series)
        m = r.manifest
        candidates = queue.run_end_candidates(r.ok, bool(r.warning_counts), run.login_needed,
                                              was_failing)
        lines = list(self._tail.lines) + [f"{r.status}: {r.message}"]
        queue.queue_event(self.config, self.state, self.config.jobs[self.job], self.series,
                          candidates,
                          lambda ev: self._doc(
                              ev, snapshot=r.snapshot, result=r.status, finished=time.time(),
                              files=m.files if m else None, data_bytes=m.data_bytes if m else None,
                              stored_bytes=m.stored_bytes if m else None,
                              warnings=sum(r.warning_counts.values()),
                              error=None if r.ok else r.message,
                              log="\n".join(lines)))
