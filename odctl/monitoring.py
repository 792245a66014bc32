"""What odctl's offline commands tell the metrics file and the notifiers
(``odctl notify test NAME`` is odctl/commands/notify.py).

``prune``, ``verify`` and an in-process ``login``/``logout`` change what the metrics say
(snapshot counts, the last verify, whether an account's login works): each records it in
the state database and rewrites ``[daemon] metrics_file``, when this user may write the
state database (root or the daemon's user); a damaged snapshot also queues the
``verify_failed`` notification and sends it at once (what fails stays queued for the
daemon).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def _with_state(cfg: Any, state: Any, fn: Callable[[Any], None]) -> None:
    """``state``: the state database as odctl opened it, None when this user may not."""
    if state is None:
        return
    try:
        fn(state)
        from odbackupd import metrics

        metrics.publish(cfg, state)
    finally:
        state.close()


def after_login(cfg: Any, state: Any, account: str, ok: bool) -> None:
    from odbackupd import metrics

    _with_state(cfg, state, lambda st: metrics.record_account(st, account, login_ok=ok))


def after_prune(cfg: Any, state: Any, series: str, plans: dict[str, Any]) -> None:
    from odbackupd import metrics

    def record(st: Any) -> None:
        for dest, plan in plans.items():
            metrics.record_snapshots(st, series, dest, plan.keep)

    _with_state(cfg, state, record)


def after_verify(cfg: Any, state: Any, job: Any, series: str, reports: list[dict]) -> None:
    from odbackupd import metrics
    from odbackupd.notify import message, queue
    from odbackupd.notify.deliver import deliver_due

    def record(st: Any) -> None:
        for dest in sorted({r["destination"] for r in reports}):
            mine = [r for r in reports if r["destination"] == dest]
            metrics.record_verify(st, series, dest, all(r["ok"] for r in mine))
        bad = [r for r in reports if not r["ok"]]
        if not bad:
            return
        problems = "\n".join(f"{r['destination']}: {r['snapshot']}: {p}"
                             for r in bad for p in r["problems"])
        queue.queue_event(cfg, st, job, series, ["verify_failed"], lambda ev: message.document(
            ev, host=cfg.daemon.hostname, series=series, job=job.name, snapshot=bad[0]["snapshot"],
            destination=bad[0]["destination"], result="damaged", finished=time.time(),
            error=f"{len(bad)} damaged snapshot(s)", log=problems))
        deliver_due(cfg, st, deadline=time.monotonic() + 30)

    _with_state(cfg, state, record)
