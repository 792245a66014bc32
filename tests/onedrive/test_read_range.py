"""OneDriveDestination.read_range on the Graph emulator: exactly the bytes asked for, one
``:/content`` redirect for several ranges of a file, and the download faults (200 to a
Range, truncated bodies, expired URLs, ranges past the end)."""
from __future__ import annotations

import os
import tracemalloc

import pytest

from odbackupd.crypto import age
from odbackupd.crypto.agerange import FIRST_SLICE, AgeRange
from odbackupd.destinations.base import DestinationError, ObjectNotFound

JOB, SNAP = "host/t", "20261204T120000Z-abc"
MIB = 1 << 20


@pytest.fixture
def stored(od, tmp_path):
    """(destination, emulator, put(name, data)) with a logged-in OneDrive destination."""
    (tmp_path / "src").mkdir()
    od.write([tmp_path / "src"])
    od.login()
    dest = od.destination()
    folder = f"{od.folder}/{JOB}/{SNAP}"

    def put(name: str, data: bytes) -> bytes:
        od.emu.put_file(f"{folder}/{name}", data)
        return data

    yield dest, od.emu, put
    dest.close()


def content_gets(emu) -> int:  # noqa: ANN001
    return emu.counters["requests.graph.content.get"]


def test_ranges_of_one_file_cost_one_redirect_and_their_bytes(stored):
    dest, emu, put = stored
    data = put("vol.000001.zst.age", os.urandom(3 * MIB + 123))
    before = emu.counters["bytes_downloaded"]
    ranges = [(0, 1), (len(data) - 1, 1), (MIB - 7, 4 * 1024), (2 * MIB, MIB + 123),
              (0, len(data)), (12345, 0)]
    for start, length in ranges:
        assert dest.read_range(JOB, SNAP, "vol.000001.zst.age", start, length) == \
            data[start : start + length]
    assert content_gets(emu) == 1  # the download URL was kept for the next ranges
    assert emu.connections_accepted["files"] == 1  # and the connection to its host
    assert emu.counters["downloads"] == 5  # length 0 asks nothing
    assert emu.counters["bytes_downloaded"] - before == sum(n for _, n in ranges)
    emu.assert_no_violations()


def test_range_past_the_end_or_missing_file(stored):
    dest, emu, put = stored
    put("vol.000002.zst", b"x" * 1000)
    with pytest.raises(DestinationError, match=r"vol\.000002\.zst: bytes 990-1009 asked for, "
                                               r"but it holds 1000 bytes"):
        dest.read_range(JOB, SNAP, "vol.000002.zst", 990, 20)
    with pytest.raises(DestinationError, match=r"vol\.000002\.zst: bytes 1000-1000 asked .*"
                                               r"holds 1000 bytes: the range is beyond"):
        dest.read_range(JOB, SNAP, "vol.000002.zst", 1000, 1)  # 416 from the service
    with pytest.raises(ObjectNotFound, match=r"vol\.000009\.zst is missing"):
        dest.read_range(JOB, SNAP, "vol.000009.zst", 0, 1)
    with pytest.raises(ValueError, match="invalid byte range"):
        dest.read_range(JOB, SNAP, "vol.000002.zst", -1, 1)
    emu.assert_no_violations()


def test_a_200_to_a_range_is_read_forward_not_into_memory(stored):
    dest, emu, put = stored
    data = put("vol.000003.zst", os.urandom(32 * MIB))
    emu.faults.add("ignore_range", "download.get")
    before = emu.counters["bytes_downloaded"]
    tracemalloc.start()
    try:
        got = dest.read_range(JOB, SNAP, "vol.000003.zst", 20 * MIB + 5, 4096)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == data[20 * MIB + 5 : 20 * MIB + 5 + 4096]
    assert peak < 8 * MIB, peak  # a few 1 MiB blocks in flight, not the 20 MiB skipped
    assert emu.counters["requests.download.get"] == 1
    # the client hung up after the range: the rest of the file was never sent
    assert emu.counters["bytes_downloaded"] - before < len(data)
    emu.assert_no_violations()


def test_a_truncated_body_is_resumed_from_the_first_missing_byte(stored):
    dest, emu, put = stored
    data = put("vol.000004.zst", os.urandom(2 * MIB))
    emu.faults.add("truncate", "download.get", keep=100_000)
    before = emu.counters["bytes_downloaded"]
    assert dest.read_range(JOB, SNAP, "vol.000004.zst", 300_000, MIB) == \
        data[300_000 : 300_000 + MIB]
    assert emu.counters["requests.download.get"] == 2
    assert emu.counters["bytes_downloaded"] - before == MIB  # nothing sent twice
    assert content_gets(emu) == 1
    emu.assert_no_violations()


def _expired_url_gets_a_fresh_one(stored) -> None:  # noqa: ANN001
    dest, emu, put = stored
    data = put("vol.000005.zst", os.urandom(MIB))
    assert dest.read_range(JOB, SNAP, "vol.000005.zst", 0, 10) == data[:10]
    emu.clock.advance(emu.config.download_url_lifetime + 1)
    assert dest.read_range(JOB, SNAP, "vol.000005.zst", 500, 10) == data[500:510]
    assert content_gets(emu) == 2
    # the one use of the expired URL is what made the fresh one be fetched
    assert [v["rule"] for v in emu.violations] == ["expired_download_url"]


def test_expired_download_url_personal(stored):
    _expired_url_gets_a_fresh_one(stored)  # 410 Gone


@pytest.mark.graphemu(mode="business")
def test_expired_download_url_business(stored):
    _expired_url_gets_a_fresh_one(stored)  # 401


def test_a_kept_url_of_a_file_replaced_since_is_not_trusted(stored):
    dest, emu, put = stored
    name = "vol.000006.zst"
    put(name, b"old" * 1000)
    assert dest.read_range(JOB, SNAP, name, 0, 3) == b"old"
    path = f"{dest.folder}/{JOB}/{SNAP}/{name}"
    with emu.lock:  # another machine deleted it and stored a new one under the same name
        emu.model.delete(emu._item(path, None), permanent=True)
    put(name, b"new" * 1000)
    assert dest.read_range(JOB, SNAP, name, 3, 3) == b"new"
    # and one this destination replaces itself
    dest.put_bytes(JOB, SNAP, name, b"own" * 10)
    assert dest.read_range(JOB, SNAP, name, 27, 3) == b"own"
    emu.assert_no_violations()


def test_open_read_and_read_range_agree_through_faults(stored):
    dest, emu, put = stored
    data = put("vol.000007.zst", os.urandom(3 * MIB))
    emu.faults.add("truncate", "download.get", every=2, times=None, keep=50_000)
    emu.faults.add("ignore_range", "download.get", nth=3)
    with dest.open_read(JOB, SNAP, "vol.000007.zst") as f:
        assert f.read() == data
    for start in (0, MIB - 1, 2 * MIB + 17):
        assert dest.read_range(JOB, SNAP, "vol.000007.zst", start, 200_000) == \
            data[start : start + 200_000]
    assert content_gets(emu) == 1
    emu.assert_no_violations()


def test_a_frame_of_an_encrypted_volume_costs_its_chunks_not_the_volume(stored):
    """AgeRange over read_range, as a one-file restore reads a ~4 MiB frame of a volume."""
    dest, emu, put = stored
    identity = age.generate_identity()
    plain = os.urandom(24 * MIB)
    put("vol.000008.zst.age", age.encrypt_bytes(plain, [identity.recipient]))
    size = dest.list_objects(JOB, SNAP)["vol.000008.zst.age"].size
    before = emu.counters["bytes_downloaded"]
    r = AgeRange(lambda a, n: dest.read_range(JOB, SNAP, "vol.000008.zst.age", a, n), size,
                 [identity])
    frame = (13 * MIB + 777, 4 * MIB + 5)
    assert r.read(*frame) == plain[frame[0] : frame[0] + frame[1]]
    fetched = emu.counters["bytes_downloaded"] - before
    # the header's first slice, then the 65 chunks that hold the frame: 4.07 of 24 MiB
    assert fetched == FIRST_SLICE + r.stored_range(*frame)[1] < frame[1] + 200_000, fetched
    # the listing gave the file's download URL: no :/content redirect at all
    assert content_gets(emu) == 0 and emu.counters["requests.download.get"] == 2
    emu.assert_no_violations()


def test_a_listed_file_is_read_through_the_url_its_listing_gave(stored):
    """What restore --path does: list the snapshot folder, then read the index and a
    volume's frames, without one :/content redirect each; once that URL has expired, a
    read gets a fresh one."""
    dest, emu, put = stored
    data = put("index.zst", os.urandom(MIB))
    assert "index.zst" in dest.list_objects(JOB, SNAP)
    assert dest.read_range(JOB, SNAP, "index.zst", 10, 100) == data[10:110]
    assert content_gets(emu) == 0
    emu.clock.advance(emu.config.download_url_lifetime + 1)
    assert dest.read_range(JOB, SNAP, "index.zst", 20, 100) == data[20:120]
    assert content_gets(emu) == 1
