"""The volume cache under odctl mount (odbackupd/snapshot/volcache.py), on a real snapshot
in a local destination: verified fetches, the size bound, least recently used first, never
a volume being read, damage never served, a killed mount's cache removed by the next."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from odbackupd.destinations.local import LocalDestination
from odbackupd.snapshot.catalog import list_snapshots
from odbackupd.snapshot.restore_errors import IntegrityError
from odbackupd.snapshot.volcache import VolumeCache
from tests.layout import series_dir

from .conftest import Mount, odbackupd


@pytest.fixture
def snap(setup, tmp_path):  # noqa: ANN001, ANN201
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"f{i}").write_bytes(os.urandom(1 << 20))
    cfg = setup.write([src], volume_size="1MiB")
    r = odbackupd("--config", str(cfg), "--once", "t")
    assert r.returncode == 0, r.stderr
    d = LocalDestination("usb", setup.dest)
    m = list_snapshots(d, "t").complete[-1]
    assert len(m.volumes) >= 5
    return d, m, cfg, src


def _held(cache: VolumeCache) -> set[str]:
    return {p.name.split(".", 1)[1] for p in cache.dir.iterdir() if ".vol." in p.name}


def test_bounded_least_recently_used_and_never_under_a_reader(snap, tmp_path):
    d, m, _, _ = snap
    v = m.volumes
    limit = int(v[0]["size"]) + int(v[1]["size"]) + 10
    cache = VolumeCache(d, tmp_path / "c", limit)
    try:
        for i in (0, 1):
            cache.release(m, v[i], cache.get(m, v[i]))
        assert _held(cache) == {v[0]["name"], v[1]["name"]} and cache.stats.fetched == 2
        cache.release(m, v[0], cache.get(m, v[0]))  # used again: now v[1] is the oldest
        assert cache.stats.hits == 1
        cache.release(m, v[2], cache.get(m, v[2]))
        assert _held(cache) == {v[0]["name"], v[2]["name"]}  # v[1] evicted, the least recently used
        assert cache.held_bytes <= limit

        p3 = cache.get(m, v[3])  # being read: never deleted under its reader
        p4 = cache.get(m, v[4])
        assert p3.exists() and p4.exists() and cache.in_use == 2
        assert _held(cache) == {v[3]["name"], v[4]["name"]}  # over the bound only by what is read
        cache.release(m, v[3], p3)
        cache.release(m, v[4], p4)
        assert cache.held_bytes <= limit and cache.in_use == 0
        assert all((p.stat().st_mode & 0o777) == 0o600 for p in cache.dir.iterdir())
    finally:
        cache.close()
    assert not cache.dir.exists()


def test_a_damaged_volume_is_never_served(snap, tmp_path, setup):
    d, m, _, _ = snap
    vol = m.volumes[1]
    stored = series_dir(setup.dest) / m.snapshot / vol["name"]
    good = stored.read_bytes()
    stored.write_bytes(good[:100] + bytes([good[100] ^ 1]) + good[101:])
    cache = VolumeCache(d, tmp_path / "c", 1 << 30)
    try:
        with pytest.raises(IntegrityError, match=vol["name"]):
            cache.get(m, vol)
        assert _held(cache) == set() and cache.in_use == 0
        stored.write_bytes(good)  # repaired (e.g. re-uploaded): the next read fetches it again
        cache.release(m, vol, cache.get(m, vol))
        assert _held(cache) == {vol["name"]} and cache.stats.fetched == 1
    finally:
        cache.close()


def test_a_killed_mounts_cache_is_removed_by_the_next(snap, setup, tmp_path, fuse):
    _, _, cfg, src = snap
    mnt = Mount(cfg, tmp_path / "mnt")
    with mnt:
        (mnt.path / "latest" / str(src).lstrip("/") / "f3").read_bytes()
        caches = list((setup.spool / "mount" / "t").iterdir())
        assert len(caches) == 1 and _held_dir(caches[0])
        mnt.proc.send_signal(signal.SIGKILL)  # no clean-up at all
        mnt.finish()
        # what the operator then does
        subprocess.run(["fusermount3", "-u", str(mnt.path)], check=True)
        assert caches[0].exists()
    with Mount(cfg, tmp_path / "mnt") as again:
        left = list((setup.spool / "mount" / "t").iterdir())
        assert caches[0] not in left and len(left) == 1  # the dead one's went, its own is there
    assert again.returncode == 0


def _held_dir(d: Path) -> list[str]:
    return [p.name for p in d.iterdir() if ".vol." in p.name]
