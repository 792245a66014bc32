"""The hand-written PAX header encoder writes exactly what Python's tarfile writes.

Checkpoints store the header of the entry in progress, and archives written before the
encoder existed came from tarfile, so the bytes must not change: every field that can
overflow its ustar slot, every non-ASCII or non-UTF-8 name, every entry type is compared
with tarfile's own output (with the raw-bytes PAX records GNU tar writes), and read back.
"""
from __future__ import annotations

import io
import itertools
import os
import tarfile

import pytest

from odbackupd.snapshot.tarheader import encode_header, format_ns


class _TarfilePax(tarfile.TarInfo):
    """tarfile's PAX writer with raw non-UTF-8 bytes in the records (no hdrcharset)."""

    @classmethod
    def _create_pax_generic_header(cls, pax_headers, type, encoding):  # noqa: A002, ANN001, ANN206
        records = bytearray()
        for keyword, value in pax_headers.items():
            k = keyword.encode("utf-8", "surrogateescape")
            v = value.encode("utf-8", "surrogateescape")
            n = len(k) + len(v) + 3
            p = 0
            while True:
                total = n + len(str(p))
                if total == p:
                    break
                p = total
            records += str(p).encode("ascii") + b" " + k + b"=" + v + b"\n"
        info = {"name": "././@PaxHeader", "type": type, "size": len(records),
                "magic": tarfile.POSIX_MAGIC}
        return (cls._create_header(info, tarfile.USTAR_FORMAT, "ascii", "replace")
                + cls._create_payload(bytes(records)))


def tarfile_header(name, mode, uid, gid, size, mtime_ns, typ, linkname=b"", uname=b"", gname=b"",  # noqa: ANN001, ANN201
                   device=None, xattrs=()):
    ti = _TarfilePax(os.fsdecode(name))
    ti.mode, ti.uid, ti.gid, ti.size, ti.type = mode, uid, gid, size, typ
    ti.mtime = mtime_ns // 1_000_000_000
    ti.linkname, ti.uname, ti.gname = os.fsdecode(linkname), os.fsdecode(uname), os.fsdecode(gname)
    if device is not None:
        ti.devmajor, ti.devminor = device
    ti.pax_headers = {"mtime": format_ns(mtime_ns)}
    for k, v in xattrs:
        ti.pax_headers[os.fsdecode(k)] = v.decode("utf-8", "surrogateescape")
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


NAMES = [
    b"etc/passwd", b"a" * 100, b"b" * 101, b"deep/" * 40 + b"file", b"caf\xe9-latin1",
    "café/ünï".encode(), "日本語".encode() * 40, b"srv/dir/",
]
NUMBERS = [  # (uid, gid, size, mtime_ns): in range, at the ustar limits, past them, negative time
    (0, 0, 0, 0),
    (1000, 100, 12345, 1_700_000_000_123_456_789),
    (8**7 - 1, 8**7 - 1, 8**11 - 1, (8**11 - 1) * 10**9),
    (8**7, 2**32 - 2, 8**11, 8**11 * 10**9 + 5),
    (65534, 65534, 10**13, -1_500_000_000),
]
OWNERS = [(b"root", b"root"), (b"", b""), (b"u" * 33, b"g" * 32), ("josé".encode(), b"\xffgrp")]


@pytest.mark.parametrize("name", NAMES)
def test_regular_file_headers_match_tarfile(name):
    for (uid, gid, size, mtime), (uname, gname) in itertools.product(NUMBERS, OWNERS):
        args = (name, 0o644, uid, gid, size, mtime, tarfile.REGTYPE, b"", uname, gname)
        assert encode_header(*args) == tarfile_header(*args), (uid, gid, size, mtime, uname, gname)


@pytest.mark.parametrize(
    "typ,linkname,device",
    [
        (tarfile.SYMTYPE, b"../target", None),
        (tarfile.SYMTYPE, b"t" * 100, None),
        (tarfile.SYMTYPE, b"l" * 300, None),
        (tarfile.SYMTYPE, b"\xfe\xff-not-utf8", None),
        (tarfile.LNKTYPE, b"srv/first/name", None),
        (tarfile.DIRTYPE, b"", None),
        (tarfile.FIFOTYPE, b"", None),
        (tarfile.CHRTYPE, b"", (1, 3)),
        (tarfile.BLKTYPE, b"", (259, 1048575)),
    ],
)
def test_other_entry_types_match_tarfile(typ, linkname, device):
    name = b"srv/entry/" if typ == tarfile.DIRTYPE else b"srv/entry"
    xattrs = [(b"SCHILY.xattr.user.note", b"v\xff\x00raw"), (b"SCHILY.xattr.user.x", b"1" * 200)]
    for uid, gid, _size, mtime in NUMBERS:
        args = (name, 0o4755, uid, gid, 0, mtime, typ, linkname, b"root", b"disk", device, xattrs)
        assert encode_header(*args) == tarfile_header(*args)


def test_headers_read_back_with_every_value():
    name = b"srv/" + b"x" * 120 + b"/caf\xe9"
    buf = encode_header(name, 0o600, 8**7 + 1, 5, 3, -1_500_000_000, tarfile.REGTYPE, b"",
                        "josé".encode(), b"staff", None, [(b"SCHILY.xattr.user.k", b"value")])
    data = buf + b"abc" + bytes(512 - 3) + bytes(1024)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:", encoding="utf-8",
                      errors="surrogateescape") as tf:
        [m] = tf.getmembers()
        assert os.fsencode(m.name) == name
        assert ((m.mode, m.uid, m.gid, m.size, m.uname, m.gname)
                == (0o600, 8**7 + 1, 5, 3, "josé", "staff"))
        assert m.pax_headers["mtime"] == "-1.500000000"
        assert m.pax_headers["SCHILY.xattr.user.k"] == "value"
        assert tf.extractfile(m).read() == b"abc"
