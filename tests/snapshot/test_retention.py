"""Retention rules on synthetic snapshot lists (calendar buckets as restic/borg count them)."""
from __future__ import annotations

import time

from odbackupd.snapshot.manifest import Manifest
from odbackupd.snapshot.retention import RetentionPolicy, plan

DAY = 86400


def _m(i: int, started: float, size: int = 100) -> Manifest:
    return Manifest(job="t", snapshot=f"s{i:03d}", host="h", started=started, finished=started + 1,
                    tool_version="x", compression={}, encryption=None, sources=[], files=0, dirs=0,
                    others=0, data_bytes=0, tar_bytes=0,
                    volumes=[{"name": "vol.000001.zst", "size": size, "sha256": "0"}])


def _noon(days_ago: int, hour: int = 12) -> float:
    t = time.localtime(time.time() - days_ago * DAY)
    return time.mktime((t.tm_year, t.tm_mon, t.tm_mday, hour, 0, 0, 0, 0, -1))


def test_no_rules_keeps_everything():
    snaps = [_m(i, _noon(10 - i)) for i in range(10)]
    p = plan(snaps, RetentionPolicy())
    assert p.delete == []


def test_keep_last():
    snaps = [_m(i, _noon(10 - i)) for i in range(10)]
    p = plan(snaps, RetentionPolicy(keep_last=3))
    assert [m.snapshot for m in p.keep] == ["s007", "s008", "s009"]
    assert len(p.delete) == 7


def test_keep_daily_takes_newest_of_each_day():
    snaps = []
    i = 0
    for day in range(5, 0, -1):
        for hour in (6, 18):
            snaps.append(_m(i, _noon(day, hour)))
            i += 1
    p = plan(snaps, RetentionPolicy(keep_daily=3))
    kept = [m.snapshot for m in p.keep]
    assert kept == ["s005", "s007", "s009"]  # the 18:00 ones of the three newest days


def test_keep_monthly_and_weekly_combine_with_keep_last():
    snaps = [_m(i, _noon(400 - i * 10)) for i in range(41)]  # one every 10 days
    p = plan(snaps, RetentionPolicy(keep_last=2, keep_weekly=4, keep_monthly=6))
    kept = {m.snapshot for m in p.keep}
    assert {"s040", "s039"} <= kept
    assert 6 <= len(kept) <= 12
    for m in p.keep:
        assert p.reasons[m.snapshot]


def test_max_size_deletes_oldest_but_never_the_newest():
    snaps = [_m(i, _noon(10 - i), size=100) for i in range(10)]
    p = plan(snaps, RetentionPolicy(max_size=350))
    assert [m.snapshot for m in p.keep] == ["s007", "s008", "s009"]
    p = plan(snaps, RetentionPolicy(max_size=10), protect=["s009"])
    assert [m.snapshot for m in p.keep] == ["s009"]
    assert "over max_size" in p.reasons["s000"]
