"""One volume: whatever the writer thread does (encrypt, hash, write), the file it leaves
restores with the standard tools and its recorded size and hashes are those of the file."""
from __future__ import annotations

import errno
import hashlib
import os
import random
import subprocess

import pytest
import zstandard

from odbackupd.crypto.age import parse_recipient
from odbackupd.hashes import quickxor_file
from odbackupd.snapshot.volumes import VolumeWriter, make_compressor


def _payload() -> bytes:
    rnd = random.Random(11)
    text = b"".join(b"line %d of a log\n" % i for i in range(200_000))
    return text + rnd.randbytes(5 << 20) + text[:12345]  # > several zstd jobs and writer batches


@pytest.mark.parametrize("quickxor", [True, False], ids=["quickxor", "sha256-only"])
def test_volume_records_the_hashes_of_its_file(tmp_path, quickxor):
    data = _payload()
    vol = VolumeWriter(tmp_path, 7, 1000, make_compressor(3, 0), quickxor=quickxor)
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
    assert zstandard.ZstdDecompressor().decompressobj().decompress(stored) == data
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_encrypted_volume_is_one_age_file_that_age_and_zstd_restore(tmp_path, age_key):
    key, recipient = age_key
    data = _payload()
    vol = VolumeWriter(tmp_path, 1, 0, make_compressor(3, 0), [parse_recipient(recipient)])
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
    vol = VolumeWriter(tmp_path, 1, 0, make_compressor(3, 0))
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
