"""Upload sessions against the strict emulator: what the service holds is the authority,
a fragment is never resent blindly, sessions survive cancellation and restart."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from odbackupd.destinations.base import DestinationError, Expected
from odbackupd.hashes import sha256_and_quickxor

from .conftest import CHUNK


@pytest.fixture
def dest(od, tmp_path):  # noqa: ANN001, ANN201
    src = tmp_path / "src"
    src.mkdir()
    od.write([src])
    od.login()
    state = od.state()
    d = od.destination(state)
    yield d
    d.close()
    state.close()


def _volume(tmp_path: Path, size: int, name: str = "vol") -> tuple[Path, Expected]:
    p = tmp_path / name
    p.write_bytes(os.urandom(size))
    sha, qx = sha256_and_quickxor(p)
    return p, Expected(size, sha, qx)


def _stored(od, name: str) -> bytes:  # noqa: ANN001
    return od.emu.read_file(f"/{od.folder}/t/s1/{name}")


def test_lost_final_answer_is_checked_not_resent(od, dest, tmp_path):
    emu = od.emu
    src, exp = _volume(tmp_path, 3 * CHUNK - 1000)
    emu.faults.add("lost_response", "upload.fragment", nth=3)  # the last one: committed, no answer
    obj = dest.put_file("t", "s1", "vol.000001.zst", src, exp)
    assert (obj.size, obj.quickxor) == (exp.size, exp.quickxor)
    assert emu.counters["requests.upload.fragment"] == 3
    assert emu.counters["bytes_uploaded"] == exp.size
    assert _stored(od, "vol.000001.zst") == src.read_bytes()
    emu.assert_no_violations()


@pytest.mark.parametrize("then", ["reset", "503"])
def test_partial_commit_goes_on_from_the_unaligned_offset(od, dest, tmp_path, then):
    emu = od.emu
    src, exp = _volume(tmp_path, 4 * CHUNK + 5)
    emu.faults.add("partial_commit", "upload.fragment", nth=2, keep=100_001, then=then)
    dest.put_file("t", "s1", "v", src, exp)
    assert emu.counters["bytes_uploaded"] == exp.size, "no byte was sent twice"
    puts = [r for r in emu.requests if r["label"] == "upload.fragment"]
    assert len(puts) == 6  # 5 fragments + the one that ran up to the chunk boundary
    assert _stored(od, "v") == src.read_bytes()
    emu.assert_no_violations()


def test_missing_next_expected_ranges_is_not_taken_for_done(od, dest, tmp_path):
    emu = od.emu
    src, exp = _volume(tmp_path, 3 * CHUNK)
    emu.faults.add("missing_ranges", "upload.fragment", nth=1)
    dest.put_file("t", "s1", "v", src, exp)
    assert emu.counters["upload_status_requests"] == 1
    assert _stored(od, "v") == src.read_bytes()
    emu.assert_no_violations()


def test_lost_session_restarts_the_file(od, dest, tmp_path):
    emu = od.emu
    src, exp = _volume(tmp_path, 3 * CHUNK)
    emu.faults.add("expire_session", "upload.fragment", nth=2)
    dest.put_file("t", "s1", "v", src, exp)
    assert emu.counters["sessions_created"] == 2
    assert _stored(od, "v") == src.read_bytes()
    emu.assert_no_violations()


def test_hashes_reported_late_are_fetched(od, dest, tmp_path):
    emu = od.emu
    src, exp = _volume(tmp_path, 2 * CHUNK + 7)
    emu.faults.add("hashes_missing", "upload.fragment", nth=3)
    obj = dest.put_file("t", "s1", "v", src, exp)
    assert obj.quickxor == exp.quickxor
    emu.assert_no_violations()


def test_cancel_keeps_the_session_and_the_next_call_resumes_it(od, dest, tmp_path):
    emu = od.emu
    src, exp = _volume(tmp_path, 6 * CHUNK)
    cancel = threading.Event()
    sent: list[int] = []

    def progress(n: int) -> None:
        sent.append(n)
        if sum(sent) >= 2 * CHUNK:
            cancel.set()

    with pytest.raises(DestinationError, match="cancelled"):
        dest.put_file("t", "s1", "v", src, exp, progress, cancel)
    rec = dest.state.session_get("od", f"{od.folder}/t/s1/v")
    assert rec["offset"] == 2 * CHUNK and rec["size"] == exp.size and rec["sha256"] == exp.sha256
    assert len(emu.upload_sessions()) == 1

    again = od.destination(dest.state)  # as after a daemon restart
    resumed: list[int] = []
    obj = again.put_file("t", "s1", "v", src, exp, resumed.append)
    assert obj.size == exp.size
    assert sum(resumed) == exp.size  # progress counts what is stored, including the resumed part
    assert emu.counters["sessions_created"] == 1 and emu.counters["sessions_resumed"] == 1
    assert emu.counters["bytes_uploaded"] == exp.size
    assert dest.state.session_get("od", f"{od.folder}/t/s1/v") is None
    again.close()
    emu.assert_no_violations()


@pytest.mark.graphemu(mode="business")
def test_business_resume_reads_closed_ranges(od, dest, tmp_path):
    emu = od.emu
    src, exp = _volume(tmp_path, 5 * CHUNK + 3)
    cancel = threading.Event()
    emu.faults.add("partial_commit", "upload.fragment", nth=3, keep=1234)  # unaligned "N-M"
    with pytest.raises(DestinationError):
        dest.put_file("t", "s1", "v", src, exp, lambda n: cancel.set() if n else None, cancel)
    again = od.destination(dest.state)
    again.put_file("t", "s1", "v", src, exp)
    assert emu.counters["bytes_uploaded"] == exp.size
    assert _stored(od, "v") == src.read_bytes()
    again.close()
    emu.assert_no_violations()


def test_small_and_empty_files_go_by_simple_put(od, dest, tmp_path):
    emu = od.emu
    for size in (0, 1, CHUNK):
        src, exp = _volume(tmp_path, size, f"f{size}")
        obj = dest.put_file("t", "s1", f"f{size}", src, exp)
        assert (obj.size, obj.quickxor) == (size, exp.quickxor)
    assert emu.counters["simple_uploads"] == 3 and emu.counters["sessions_created"] == 0
    emu.assert_no_violations()


def test_other_content_under_the_same_name_starts_a_new_session(od, dest, tmp_path):
    """A persisted session is resumed only for the same bytes (size and SHA-256)."""
    emu = od.emu
    src, exp = _volume(tmp_path, 4 * CHUNK)
    cancel = threading.Event()
    with pytest.raises(DestinationError):
        dest.put_file("t", "s1", "v", src, exp, lambda n: cancel.set(), cancel)
    other, exp2 = _volume(tmp_path, 4 * CHUNK, "other")
    dest.put_file("t", "s1", "v", other, exp2)
    assert _stored(od, "v") == other.read_bytes()
    assert emu.counters["sessions_cancelled"] == 1 and emu.counters["sessions_created"] == 2
    emu.assert_no_violations()


def test_bandwidth_limit_paces_uploads(od, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    od.write([src], daemon_extra='bandwidth_limit = "2MiB"\n')
    od.login()
    d = od.destination()
    f, exp = _volume(tmp_path, 12 * CHUNK)  # 3.75 MiB: the first 2 MiB are the bucket's burst
    t0 = time.monotonic()
    d.put_file("t", "s1", "v", f, exp)
    took = time.monotonic() - t0
    d.close()
    assert took >= (exp.size - (2 << 20)) / (2 << 20) * 0.9, f"{took:.2f}s is faster than 2 MiB/s"
    od.emu.assert_no_violations()


def test_parallel_uploads_are_capped_process_wide(od, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    od.write([src], parallel=2)
    od.login()
    dests = [od.destination() for _ in range(2)]  # e.g. two runs at once
    od.emu.faults.add("delay", "upload.fragment", times=None, seconds=0.05)
    files = [_volume(tmp_path, 2 * CHUNK, f"v{i}") for i in range(6)]
    slots = dests[0].slots
    assert slots is dests[1].slots
    slots.peak = 0
    errors: list[BaseException] = []

    def send(i: int) -> None:
        try:
            dests[i % 2].put_file("t", "s1", f"v{i}", *files[i])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert slots.peak == 2
    for d in dests:
        d.close()
    od.emu.assert_no_violations()


def test_partial_commit_of_the_last_fragment(od, dest, tmp_path):
    emu = od.emu
    src, exp = _volume(tmp_path, 2 * CHUNK + 5000)
    emu.faults.add("partial_commit", "upload.fragment", nth=3, keep=1000)
    dest.put_file("t", "s1", "v", src, exp)
    assert emu.counters["bytes_uploaded"] == exp.size
    assert _stored(od, "v") == src.read_bytes()
    emu.assert_no_violations()


def test_deleting_an_abandoned_snapshot_cancels_its_upload_sessions(od, dest, tmp_path):
    emu = od.emu
    src, exp = _volume(tmp_path, 4 * CHUNK)
    cancel = threading.Event()
    with pytest.raises(DestinationError):
        dest.put_file("t", "s1", "v", src, exp, lambda n: cancel.set(), cancel)
    assert len(emu.upload_sessions()) == 1
    dest.delete_snapshot("t", "s1")
    assert emu.upload_sessions() == [] and emu.counters["sessions_cancelled"] == 1
    assert list(dest.state.sessions("od")) == []
    emu.assert_no_violations()
