"""Which complete snapshots to keep: keep_last, keep_daily/weekly/monthly, then max_size.

Calendar buckets count as restic and borg count them: walking from the newest snapshot
back, the newest snapshot of each of the last N days (weeks, months) that have one is
kept. Keeping an incremental keeps every snapshot of its chain before it ("base of …"), so
what goes is a whole chain none of whose members is kept, or the tail of a chain after
its last kept member. Then, while the kept snapshots exceed ``max_size``, whole chains go,
oldest first — never the chain of the newest snapshot or of the one just made. Incomplete
folders are never counted here (the builder cleans them up).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from .manifest import Manifest, order_key

if TYPE_CHECKING:
    from ..config import JobConfig


@dataclass
class RetentionPolicy:
    keep_last: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    max_size: int | None = None

    @classmethod
    def from_job(cls, job: JobConfig) -> RetentionPolicy:
        return cls(job.keep_last, job.keep_daily, job.keep_weekly, job.keep_monthly, job.max_size)

    @property
    def has_keep_rules(self) -> bool:
        return any(v is not None for v in (self.keep_last, self.keep_daily, self.keep_weekly,
                                           self.keep_monthly))


@dataclass
class RetentionPlan:
    keep: list[Manifest] = field(default_factory=list)
    delete: list[Manifest] = field(default_factory=list)
    # due, but being read (snapshot/leases.py)
    deferred: list[Manifest] = field(default_factory=list)
    # snapshot -> why kept / why deleted
    reasons: dict[str, list[str]] = field(default_factory=dict)


def _bucket(fmt: Callable[[time.struct_time], object]) -> Callable[[Manifest], object]:
    return lambda m: fmt(time.localtime(m.started))


_BUCKETS = {
    "daily": _bucket(lambda t: (t.tm_year, t.tm_yday)),
    "weekly": lambda m: tuple(date.fromtimestamp(m.started).isocalendar()[:2]),
    "monthly": _bucket(lambda t: (t.tm_year, t.tm_mon)),
}


def _parents(snapshots: Sequence[Manifest]) -> dict[str, str]:
    """snapshot -> its base, for the bases that are there (a missing base starts a chain)."""
    ids = {m.snapshot for m in snapshots}
    return {m.snapshot: m.base for m in snapshots if m.kind == "incremental" and m.base in ids}


def _root(snapshot: str, parent: dict[str, str]) -> str:
    seen = set()
    while snapshot in parent and snapshot not in seen:
        seen.add(snapshot)
        snapshot = parent[snapshot]
    return snapshot


def plan(
    snapshots: Sequence[Manifest], policy: RetentionPolicy, protect: Sequence[str] = ()
) -> RetentionPlan:
    newest_first = sorted(snapshots, key=order_key, reverse=True)
    reasons: dict[str, list[str]] = {m.snapshot: [] for m in newest_first}
    kept: set[str] = set()
    for s in protect:
        if s in reasons:
            kept.add(s)
            reasons[s].append("just made")
    if not policy.has_keep_rules:
        for m in newest_first:
            kept.add(m.snapshot)
            reasons[m.snapshot].append("no keep rule")
    else:
        if policy.keep_last:
            for m in newest_first[: policy.keep_last]:
                kept.add(m.snapshot)
                reasons[m.snapshot].append("keep_last")
        for name, n in (("daily", policy.keep_daily), ("weekly", policy.keep_weekly),
                        ("monthly", policy.keep_monthly)):
            if not n:
                continue
            key = _BUCKETS[name]
            seen: list[object] = []
            for m in newest_first:
                b = key(m)
                if b in seen:
                    continue
                if len(seen) >= n:
                    break
                seen.append(b)
                kept.add(m.snapshot)
                reasons[m.snapshot].append(f"keep_{name}")
    # an incremental needs every snapshot of its chain before it: keeping it keeps them
    parent = _parents(newest_first)
    for m in newest_first:
        if m.snapshot not in kept:
            continue
        b = parent.get(m.snapshot)
        while b is not None:
            if f"base of {m.snapshot}" not in reasons[b] and not any(
                r.startswith("base of") for r in reasons[b]
            ):
                reasons[b].append(f"base of {m.snapshot}")
            if b in kept:
                break  # its own ancestors were (or will be) kept with it
            kept.add(b)
            b = parent.get(b)
    if policy.max_size is not None:
        # whole chains go, oldest first; never the chain of the newest or of what was just made
        chains: dict[str, list[Manifest]] = {}
        for m in reversed(newest_first):  # oldest first
            chains.setdefault(_root(m.snapshot, parent), []).append(m)
        current = (
            {_root(s, parent) for s in protect if s in reasons}
            | {_root(newest_first[0].snapshot, parent)}
            if newest_first else set()
        )
        total = sum(m.stored_bytes for m in newest_first if m.snapshot in kept)
        for root, members in chains.items():
            if total <= policy.max_size:
                break
            if root in current or not any(m.snapshot in kept for m in members):
                continue
            for m in members:
                if m.snapshot in kept:
                    kept.discard(m.snapshot)
                    total -= m.stored_bytes
                    reasons[m.snapshot].append(
                        "over max_size" + (f" (the chain of {root})" if len(members) > 1 else "")
                    )
    out = RetentionPlan(reasons=reasons)
    for m in sorted(snapshots, key=order_key):
        (out.keep if m.snapshot in kept else out.delete).append(m)
        if m.snapshot not in kept and not reasons[m.snapshot]:
            reasons[m.snapshot].append("not kept by any rule")
    return out
