"""Restores fetch one volume ahead in a thread: when the restore ends early (an error,
Ctrl-C), that fetch must not hold it up — not even a download stalled inside a read."""
from __future__ import annotations

import os
import threading
from pathlib import Path

from odbackupd.destinations.local import LocalDestination
from odbackupd.snapshot.builder import JobSpec, SnapshotBuilder
from odbackupd.snapshot.restore import VolumeFetcher
from odbackupd.state import StateStore


class _Stalling:
    """A download that sends 64 KiB and then nothing until ``release`` is set."""

    def __init__(self, inner, release: threading.Event, reading: threading.Event) -> None:
        self.inner, self.release, self.reading, self.sent = inner, release, reading, 0

    def read(self, n: int = -1) -> bytes:
        if self.sent >= 65536:
            self.reading.set()
            self.release.wait()
        b = self.inner.read(min(n, 65536) if n and n > 0 else 65536)
        self.sent += len(b)
        return b

    def __enter__(self):  # noqa: ANN204
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.inner.close()


class StallingDestination(LocalDestination):
    def __init__(self, *a, stall: str, **kw) -> None:  # noqa: ANN002, ANN003
        super().__init__(*a, **kw)
        self.stall, self.release, self.reading = stall, threading.Event(), threading.Event()

    def open_read(self, job: str, snapshot: str, name: str):  # noqa: ANN201
        f = super().open_read(job, snapshot, name)
        return _Stalling(f, self.release, self.reading) if name == self.stall else f


def _snapshot(tmp_path: Path):  # noqa: ANN202
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"f{i}").write_bytes(os.urandom(600_000))  # incompressible: one volume each, about
    dest_dir = tmp_path / "dest"
    dest_dir.mkdir()
    state = StateStore(tmp_path / "state.db")
    r = SnapshotBuilder(JobSpec("t", [src], volume_size=512 << 10),
                        [LocalDestination("usb", dest_dir)],
                        state, tmp_path / "spool", "h").run()
    state.close()
    assert r.ok and len(r.manifest.volumes) >= 3, r.message
    return dest_dir, r.manifest


def _fetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "restore-fetch" and t.is_alive()]


def test_closing_does_not_wait_for_a_stalled_download(tmp_path):
    dest_dir, m = _snapshot(tmp_path)
    dest = StallingDestination("usb", dest_dir, stall=m.volumes[1]["name"])
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    fetch = iter(VolumeFetcher(dest, m, scratch))
    vol, path = next(fetch)
    assert vol["name"] == m.volumes[0]["name"] and path.stat().st_size == vol["size"]
    assert dest.reading.wait(30)  # the fetch of volume 2 is now stuck inside a read

    closed = threading.Thread(target=fetch.close)  # what an exception or Ctrl-C does
    closed.start()
    try:
        closed.join(30)
        assert not closed.is_alive(), "closing the restore waited for the stalled download"
        assert not dest.release.is_set()
        assert list(scratch.iterdir()) == []  # the scratch copies are gone
    finally:
        dest.release.set()  # the socket timeout, for a real download
    for t in _fetch_threads():
        t.join(30)
    assert _fetch_threads() == []  # and the worker ends once its read returns
    assert list(scratch.iterdir()) == []


def test_closing_mid_download_stops_the_fetch(tmp_path):
    dest_dir, m = _snapshot(tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    fetch = iter(VolumeFetcher(LocalDestination("usb", dest_dir), m, scratch))
    next(fetch)
    fetch.close()  # the worker notices at its next read: close waits that long, no longer
    assert _fetch_threads() == []
    assert list(scratch.iterdir()) == []
    # and a whole fetch still hands over every volume, verified, in order
    got = [v["name"] for v, p in VolumeFetcher(LocalDestination("usb", dest_dir), m, scratch)]
    assert got == [v["name"] for v in m.volumes]
    assert list(scratch.iterdir()) == []
