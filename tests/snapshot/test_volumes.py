"""One volume: whatever the writer thread does (encrypt, hash, write), the file it leaves
restores with the standard tools and its recorded size and hashes are those of the file."""
from __future__ import annotations

import errno
import hashlib
import io
import os
import random
import subprocess

import pytest
import zstandard

from odbackupd.crypto.age import parse_recipient
from odbackupd.hashes import quickxor_file
from odbackupd.snapshot.volumes import FrameCompressor, VolumeWriter


def _payload() -> bytes:
    rnd = random.Random(11)
    text = b"".join(b"line %d of a log\n" % i for i in range(200_000))
    return text + rnd.randbytes(5 << 20) + text[:12345]  # > several zstd jobs and writer batches


@pytest.mark.parametrize("quickxor", [True, False], ids=["quickxor", "sha256-only"])
def test_volume_records_the_hashes_of_its_file(tmp_path, quickxor):
    data = _payload()
    vol = VolumeWriter(tmp_path, 7, 1000, FrameCompressor(3, 0), quickxor=quickxor)
    view = memoryview(data)
    for i in range(0, len(data), 300_000):  # the tar stream's chunks, of any size
        vol.write(view[i : i + 300_000])
    info = vol.finish()
    path = tmp_path / "vol.000007.zst"
    assert info.name == path.name and not (tmp_path / "vol.000007.zst.part").exists()
    stored = path.read_bytes()
    assert info.size == len(stored)
    assert info.sha256 == hashlib.sha256(stored).hexdigest()
    assert info.quickxor == (quickxor_file(path) if quickxor else "")
    assert (info.tar_start, info.tar_end) == (1000, 1000 + len(data))
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(stored), read_across_frames=True)
    assert reader.read() == data
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_encrypted_volume_is_one_age_file_that_age_and_zstd_restore(tmp_path, age_key):
    key, recipient = age_key
    data = _payload()
    vol = VolumeWriter(tmp_path, 1, 0, FrameCompressor(3, 0), [parse_recipient(recipient)])
    vol.write(data)
    info = vol.finish()
    path = tmp_path / "vol.000001.zst.age"
    assert info.name == path.name
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.quickxor == quickxor_file(path) and info.size == path.stat().st_size
    plain = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"age -d -i {key} {path} | zstd -d"],
        capture_output=True, check=True,
    ).stdout
    assert plain == data


def test_a_write_error_in_the_writer_thread_reaches_the_builder(tmp_path):
    # the spool file is /dev/full: every write fails with ENOSPC, as on a full disk
    os.symlink("/dev/full", tmp_path / "vol.000001.zst.part")
    vol = VolumeWriter(tmp_path, 1, 0, FrameCompressor(3, 0))
    with pytest.raises(OSError) as info:
        for _ in range(40):
            vol.write(random.randbytes(1 << 20))  # fails here once the thread has failed...
        vol.finish()  # ...or here at the latest
    assert info.value.errno == errno.ENOSPC
    vol.abort()
    assert not (tmp_path / "vol.000001.zst").exists()



@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "age"])
def test_a_volume_name_gives_back_its_number_and_nothing_else_does(encrypted):
    from odbackupd.snapshot.volumes import volume_name, volume_number

    for n in (1, 12, 999_999, 1_000_000):  # past the padding too
        assert volume_number(volume_name(n, encrypted)) == n
    for other in ("", "vol.", "vol.12", "vol.x.zst", "vol.000012.zst.part", "index.zst",
                  "manifest.json"):
        assert volume_number(other) is None, other


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "age"])
def test_every_recorded_frame_decodes_on_its_own_to_its_tar_bytes(tmp_path, age_key, encrypted):
    """A reader starts at any frame of the table (odctl restore --path, odctl mount): each
    one is an independent zstd frame holding exactly the tar range the table names, pinned
    by its SHA-256 (unencrypted) or by the age header's (encrypted)."""
    from odbackupd.crypto.age import decrypt_bytes, load_identities
    from odbackupd.snapshot.frames import FRAME_SIZE, FrameTable

    key, recipient = age_key
    data = _payload() * 3  # several frames
    header = b"\x50\x2a\x4d\x18" + (5).to_bytes(4, "little") + b"chain"  # a skippable frame
    rec = [parse_recipient(recipient)] if encrypted else []
    vol = VolumeWriter(tmp_path, 3, 5000, FrameCompressor(3, 2), rec, header=header)
    for i in range(0, len(data), 700_001):
        vol.write(data[i : i + 700_001])
    info = vol.finish()
    stored = (tmp_path / info.name).read_bytes()
    plain = decrypt_bytes(stored, load_identities(key)) if encrypted else stored
    table = FrameTable.from_json(info.frames, info.tar_start)
    assert len(table.frames) > 2
    assert all(FRAME_SIZE - 700_001 < f.tar_len <= FRAME_SIZE for f in table.frames[:-1])
    assert table.frames[0].z_start == len(header) and table.tar_end == info.tar_end
    z_end = table.frames[-1].z_start + table.frames[-1].z_len
    assert z_end == len(plain)
    for f in table.frames:
        z = plain[f.z_start : f.z_start + f.z_len]
        assert zstandard.ZstdDecompressor().decompress(z) == data[f.tar_start - 5000 :][: f.tar_len]
        if encrypted:
            assert f.sha256 is None
        else:
            assert f.sha256 == hashlib.sha256(z).digest()
    if encrypted:
        prefix = stored[: table.age_payload_start]
        assert table.age_prefix_sha256 == hashlib.sha256(prefix).hexdigest()
    assert FrameTable.from_json(table.to_json(), info.tar_start) == table


def test_writes_of_every_size_come_back_whole_and_in_order(tmp_path):
    """Pieces smaller than a frame, ones that do not fit the frame being gathered, and one
    bigger than a frame buffer (a frame of its own), over two volumes of one compressor."""
    from odbackupd.snapshot.frames import FRAME_SIZE, FrameTable

    rnd = random.Random(5)
    sizes = [1, 511, 3 << 20, FRAME_SIZE + 1, 1 << 20, 5, FRAME_SIZE - 1, 2 << 20]
    comp = FrameCompressor(1, 2)
    try:
        for index in (1, 2):
            pieces = [rnd.randbytes(n) if i % 2 else bytes(n) for i, n in enumerate(sizes)]
            vol = VolumeWriter(tmp_path, index, 0, comp)
            for p in pieces:
                vol.write(p)
            info = vol.finish()
            stored = (tmp_path / info.name).read_bytes()
            reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(stored),
                                                                read_across_frames=True)
            assert reader.read() == b"".join(pieces)
            table = FrameTable.from_json(info.frames, 0)
            assert sum(f.tar_len for f in table.frames) == sum(sizes)
    finally:
        comp.close()
