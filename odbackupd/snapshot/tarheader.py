"""The PAX tar headers of the snapshot stream, byte for byte what Python's ``tarfile``
writes in ``PAX_FORMAT`` (tests/snapshot/test_tarheader.py checks it), without its
per-entry cost; and the PAX time format both directions.
"""

from __future__ import annotations

import functools
import os
import tarfile
from collections.abc import Sequence

BLOCK = 512


def format_ns(ns: int) -> str:
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    return f"{sign}{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def parse_ns(value: str) -> int:
    """Parse a PAX time ("1700000000.123456789", "-1.5", "12") to integer nanoseconds."""
    neg = value.startswith("-")
    whole, _, frac = value.lstrip("+-").partition(".")
    ns = int(whole or "0") * 1_000_000_000 + int((frac + "000000000")[:9] or "0")
    return -ns if neg else ns


_NUL = b"\0"
_POSIX_MAGIC = b"ustar\x0000"
_NO_DEVICE = _NUL * 16
_TAIL = _NUL * (155 + 12)  # prefix (unused in PAX archives) and the block's padding
_MAX_OCTAL_8 = 8**7  # largest value + 1 of an 8-byte octal field (uid, gid)
_MAX_OCTAL_12 = 8**11  # of a 12-byte field (size, mtime)


def _field(value: bytes, length: int) -> bytes:
    """A ustar text field's content as Python's tarfile writes it in a PAX archive: ASCII,
    every other character as "?", cut to ``length`` (the PAX records carry the real value)."""
    if not value.isascii():
        value = os.fsdecode(value).encode("ascii", "replace")
    return value[:length]


_MAGIC_SUM = sum(_POSIX_MAGIC) + 8 * 32  # the checksum field counts as eight spaces


def _ustar_block(
    name: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    typ: bytes,
    linkname: bytes,
    uname: bytes,
    gname: bytes,
    devices: bytes,
) -> bytes:
    name, linkname = _field(name, 100), _field(linkname, 100)
    uname, gname = _field(uname, 32), _field(gname, 32)
    numbers = b"%07o\0%07o\0%07o\0%011o\0%011o\0" % (mode, uid, gid, size, mtime)
    # the checksum sums every byte of the block; the NUL padding adds nothing
    chksum = (
        sum(name)
        + sum(numbers)
        + typ[0]
        + sum(linkname)
        + _MAGIC_SUM
        + sum(uname)
        + sum(gname)
        + sum(devices)
    )
    return b"".join(
        (
            name.ljust(100, _NUL),
            numbers,
            b"%06o\0 " % chksum,
            typ,
            linkname.ljust(100, _NUL),
            _POSIX_MAGIC,
            uname.ljust(32, _NUL),
            gname.ljust(32, _NUL),
            devices,
            _TAIL,
        )
    )


@functools.lru_cache(maxsize=1024)
def _pax_block(size: int) -> bytes:
    """The ustar block announcing ``size`` bytes of PAX records (the same for every entry
    whose records have that length)."""
    return _ustar_block(
        b"././@PaxHeader", 0, 0, 0, size, 0, tarfile.XHDTYPE, b"", b"", b"", _NO_DEVICE
    )


def _pax_records(records: list[tuple[bytes, bytes]]) -> bytes:
    """PAX extended records ("<len> <keyword>=<value>\\n") with values as raw bytes, as
    GNU tar writes non-UTF-8 names: no ``hdrcharset`` keyword, which GNU tar would warn
    about and neither reader needs."""
    out = []
    for k, v in records:
        n = len(k) + len(v) + 3  # " ", "=", "\n"
        p = 0
        while True:  # the length counts its own digits
            total = n + len(str(p))
            if total == p:
                break
            p = total
        out.append(b"%d %s=%s\n" % (p, k, v))
    return b"".join(out)


def encode_header(
    name: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime_ns: int,
    typ: bytes,
    linkname: bytes = b"",
    uname: bytes = b"",
    gname: bytes = b"",
    device: tuple[int, int] | None = None,
    xattrs: Sequence[tuple[bytes, bytes]] = (),
) -> bytes:
    """One entry's headers: a PAX extended header, then the ustar block.

    Byte for byte what Python's ``tarfile`` writes in ``PAX_FORMAT`` (the ``mtime`` record
    to the nanosecond, then the ``SCHILY.xattr.*`` records, then whatever does not fit the
    ustar fields: ``path``, ``linkpath``, ``uname``, ``gname``, ``uid``, ``gid``, ``size``),
    without its per-entry cost: a snapshot of many small files spent most of its time there.
    ``name`` is the archive name (a directory's ends with "/").
    """
    mtime_record = (
        b"%d.%09d" % divmod(mtime_ns, 1_000_000_000)
        if mtime_ns >= 0
        else format_ns(mtime_ns).encode()
    )
    records = [(b"mtime", mtime_record), *xattrs]
    for key, value, length in (
        (b"path", name, 100),
        (b"linkpath", linkname, 100),
        (b"uname", uname, 32),
        (b"gname", gname, 32),
    ):
        if len(value) > length or not value.isascii():
            records.append((key, value))
    mtime = mtime_ns // 1_000_000_000
    numbers = []
    for key, value, limit in (
        (b"uid", uid, _MAX_OCTAL_8),
        (b"gid", gid, _MAX_OCTAL_8),
        (b"size", size, _MAX_OCTAL_12),
        (b"mtime", mtime, _MAX_OCTAL_12),
    ):
        if 0 <= value < limit:
            numbers.append(value)
        else:
            numbers.append(0)  # the ustar field says 0; the PAX record has the value
            if key != b"mtime":  # already recorded to the nanosecond
                records.append((key, str(value).encode("ascii")))
    uid, gid, size, mtime = numbers
    devices = _NO_DEVICE if device is None else b"%07o\0%07o\0" % device
    payload = _pax_records(records)
    return b"".join(
        (
            _pax_block(len(payload)),
            payload,
            bytes(-len(payload) % BLOCK),
            _ustar_block(name, mode, uid, gid, size, mtime, typ, linkname, uname, gname, devices),
        )
    )
