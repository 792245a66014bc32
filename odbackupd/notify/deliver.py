"""Sending what the queue holds: retries with back-off, given up after a day.

``deliver_due`` is one pass over what is due (the daemon runs it from its loop in a
thread, :mod:`odbackupd.service.delivery`); :class:`OnceDelivery` is what
``odbackupd --once`` runs around a run, so cron users are notified too. A message that
cannot be sent stays queued for the next pass or the next process.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ..journal import MSG_NOTIFY_GIVEN_UP
from . import queue
from .senders import DeliveryError, send

log = logging.getLogger("odbackupd.notify")

FIRST_RETRY = 30.0  # seconds; doubling up to MAX_RETRY
MAX_RETRY = 3600.0
GIVE_UP_AFTER = 86400.0


def backoff(attempts: int) -> float:
    return min(MAX_RETRY, FIRST_RETRY * 2 ** max(0, attempts - 1))


def deliver_due(config: Any, state: Any, *, now: float | None = None,
                stop: threading.Event | None = None, deadline: float | None = None,
                everything: bool = False) -> int:
    """Send every due message once (``everything``: also those waiting for a retry, as a
    daemon start does); returns how many got through. ``deadline`` (time.monotonic()) and
    ``stop`` end the pass early; the rest stays queued."""
    sent = 0
    for item in queue.due(state, float("inf") if everything else now):
        if ((stop is not None and stop.is_set())
                or (deadline is not None and time.monotonic() >= deadline)):
            break
        fields = {"NOTIFIER": item.notifier, "EVENT": item.event, "SERIES": item.series,
                  "JOB": item.message.get("job", item.series)}
        cfg = getattr(config, "notify", {}).get(item.notifier)
        if cfg is None:
            log.info("notifier %s is no longer configured: dropping its %s message about %s",
                     item.notifier, item.event, item.series, extra={"journal_fields": fields})
            queue.done(state, item.id)
            continue
        try:
            send(cfg, item.message)
        except DeliveryError as e:
            t = time.time() if now is None else now
            if t - item.created >= GIVE_UP_AFTER:
                queue.done(state, item.id)
                _given_up(state, item, str(e), fields)
            else:
                wait = backoff(item.attempts + 1)
                queue.retry_at(state, item.id, t + wait, str(e))
                log.warning("notifier %s: %s message about %s not delivered (attempt %d): %s;"
                            " next try in %.0fs",
                            item.notifier, item.event, item.series, item.attempts + 1, e, wait,
                            extra={"journal_fields": fields})
            continue
        except Exception as e:  # noqa: BLE001 - a bug in a sender must not stop the queue
            log.exception("notifier %s: sending failed", item.notifier)
            queue.retry_at(state, item.id, (time.time() if now is None else now) + MAX_RETRY,
                           repr(e))
            continue
        queue.done(state, item.id)
        sent += 1
        log.info("notifier %s: %s message about %s delivered",
                 item.notifier, item.event, item.series, extra={"journal_fields": fields})
    return sent


def _given_up(state: Any, item: queue.Pending, why: str, fields: dict) -> None:
    from .. import metrics

    log.error("notifier %s: gave up the %s message about %s after %d attempts over a day: %s",
              item.notifier, item.event, item.series, item.attempts + 1, why,
              extra={"journal_fields": {**fields, "MESSAGE_ID": MSG_NOTIFY_GIVEN_UP}})
    metrics.ensure(state)
    metrics.add_value(state, "odbackupd_notifications_failed_total", 1, notifier=item.notifier)


class OnceDelivery:
    """``with OnceDelivery(config, state):`` around ``--once``'s run: sends what is queued
    while the run goes on (the start ping arrives at the start), then one last pass of at
    most ``final`` seconds; what still fails waits for the next run or the daemon."""

    POLL = 1.0

    def __init__(self, config: Any, state: Any, final: float = 30.0) -> None:
        self.config, self.state, self.final = config, state, final
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.POLL):
            self._pass(stop=self._stop)

    def _pass(self, **kw: Any) -> None:
        try:
            deliver_due(self.config, self.state, **kw)
        except Exception:  # noqa: BLE001 - notifications never fail a backup
            log.exception("delivering notifications failed")

    def __enter__(self) -> OnceDelivery:
        if getattr(self.config, "notify", None):
            self._thread.start()
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        if not getattr(self.config, "notify", None):
            return
        self._stop.set()
        if exc_type is KeyboardInterrupt:
            return  # the second Ctrl-C: stop at once; the queue keeps what is left
        self._thread.join()
        self._pass(deadline=time.monotonic() + self.final)
