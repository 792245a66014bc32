"""Destination.read_range on a local directory: exactly the bytes asked for, a clear error
past the end; and the default every kind inherits, on a stream that cannot seek."""
from __future__ import annotations

import os
import subprocess
from typing import BinaryIO

import pytest

from odbackupd.destinations.base import Destination, DestinationError, ObjectNotFound
from odbackupd.destinations.local import LocalDestination

JOB, SNAP, NAME = "host/t", "20261204T120000Z-abc", "vol.000001.zst.age"


class Piped(LocalDestination):
    """A kind with only ``open_read``, and that a pipe: the default read_range."""

    read_range = Destination.read_range

    def open_read(self, job: str, snapshot: str, name: str) -> BinaryIO:
        path = self._dir(job, snapshot) / name
        if not path.exists():
            raise ObjectNotFound(f"{self.describe()}: {path} is missing")
        return subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE).stdout


class Seekable(LocalDestination):
    read_range = Destination.read_range  # the default, on a file


@pytest.fixture(params=[LocalDestination, Seekable, Piped])
def dest(request, tmp_path):
    d = request.param("usb", tmp_path / "usb", create=True)
    d.prepare()
    return d


@pytest.fixture
def data(dest, tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)
    folder = tmp_path / "usb" / JOB / SNAP
    folder.mkdir(parents=True)
    (folder / NAME).write_bytes(data)
    return data


def test_exact_ranges(dest, data):
    size = len(data)
    for start, length in [(0, 1), (size - 1, 1), (0, size), (1 << 20, 5), (123, 2 << 20),
                          (size, 0), (5, 0)]:
        assert dest.read_range(JOB, SNAP, NAME, start, length) == data[start : start + length]


def test_past_the_end_missing_or_negative(dest, data):
    size = len(data)
    for start, length in [(size - 5, 6), (size, 1), (size + 100, 10)]:
        with pytest.raises(DestinationError) as e:
            dest.read_range(JOB, SNAP, NAME, start, length)
        msg = str(e.value)
        assert f"{NAME}: bytes {start}-{start + length - 1} asked for" in msg
        assert "beyond its end" in msg and "usb" in msg
        if type(dest) is LocalDestination:
            assert f"it holds {size} bytes" in msg
    with pytest.raises(ObjectNotFound, match="vol.000002.zst is missing"):
        dest.read_range(JOB, SNAP, "vol.000002.zst", 0, 1)
    with pytest.raises(ValueError, match="invalid byte range"):
        dest.read_range(JOB, SNAP, NAME, 0, -1)


def test_unreadable_file_is_a_destination_error(tmp_path):
    d = LocalDestination("usb", tmp_path / "usb", create=True)
    d.prepare()
    (tmp_path / "usb" / JOB / SNAP).mkdir(parents=True)
    (tmp_path / "usb" / JOB / SNAP / NAME).mkdir()  # a directory: EISDIR
    with pytest.raises(DestinationError, match=f"reading .*{NAME}: Is a directory"):
        d.read_range(JOB, SNAP, NAME, 0, 1)
