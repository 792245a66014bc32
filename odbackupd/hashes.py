"""OneDrive's quickXorHash, folded by numpy so the hashing thread leaves the GIL to the others.

OneDrive reports a file's ``quickXorHash`` in its item metadata, so verifying an
upload means computing the same hash locally.  The algorithm (Microsoft, "Code
Snippets: QuickXorHash Algorithm") XORs byte ``i`` of the input into a 160-bit
state rotated left by ``(11 * i) mod 160`` bits; the 20-byte digest is that
state in little-endian byte order with the input length (little-endian, 64 bits)
XORed into its last 8 bytes.

Bytes whose positions are congruent mod 160 are XORed at the same bit offset, so
only the XOR of each of the 160 residue classes matters.  ``update`` folds its input
into a class accumulator of ``_WIDE`` bytes (byte j belongs to class j mod 160) with
one ``numpy.bitwise_xor.reduce`` over rows of ``_WIDE`` bytes: a C loop that runs
without the GIL, so the volume-writer thread no longer stalls the thread that builds
the tar stream (the big-integer version this replaces held the GIL for all of its
~1.3 GB/s).  Only a digest halves the accumulator to 160 class bytes and spreads
those to their bit offsets.  The arrays are ``uint8``: no alignment requirement on
the caller's buffer and no byte-order dependence.  Memory stays at one row of
accumulator and one of reduction result whatever the size of an ``update()``.
numpy is imported by the first ``QuickXorHash`` (see ``_numpy``), not by this module.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from typing import Any, BinaryIO

__all__ = [
    "QuickXorHash",
    "quickxor_b64",
    "quickxor_file",
    "sha256_and_quickxor",
]

_WIDTH_BITS = 160  # size of the quickXorHash state
_SHIFT = 11  # bit offset added per input byte
_CLASSES = 160  # byte positions that repeat: (i * 11) mod 160 has period 160
_WIDTH_MASK = (1 << _WIDTH_BITS) - 1

# Bytes per row of the reduction: 16 classes-periods.  Rows of 160 bytes make numpy's
# inner loop too short (measured 3-4 GB/s); 2560 bytes reach 13+ GB/s on one core, and
# the accumulator (320 uint64 words) stays under the 500 elements below which numpy
# keeps the GIL, so the only GIL release per update is the reduction itself.
_WIDE = _CLASSES * 16

# Read size for files: big reads, few syscalls, flat memory.
_FILE_CHUNK = 8 << 20

# numpy, imported by the first QuickXorHash: importing it costs ~13 MB of RSS and 0.1 s,
# which a process that imports this module without hashing (odctl) need not pay.
np: Any = None


def _numpy() -> Any:
    global np
    if np is None:
        import numpy

        np = numpy
    return np


def _as_bytes_view(data: bytes | bytearray | memoryview) -> memoryview:
    view = data if isinstance(data, memoryview) else memoryview(data)
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    return view


class QuickXorHash:
    """Incremental quickXorHash with the ``hashlib`` object shape.

    ``update`` accepts any bytes-like object, split at any points; the result
    depends only on the concatenated input.
    """

    name = "quickxorhash"
    digest_size = 20
    block_size = _CLASSES  # informational, as in hashlib: update() takes any size

    __slots__ = ("_acc", "_length")

    def __init__(self, data: bytes | bytearray | memoryview | None = None) -> None:
        # Byte j of _acc is the XOR of the input bytes at stream positions ≡ j (mod 160)
        # (among those folded in at j; any j with the same residue would do).
        self._acc = _numpy().zeros(_WIDE, dtype="u1")
        self._length = 0
        if data is not None:
            self.update(data)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        view = data if type(data) is bytes else _as_bytes_view(data)
        size = len(view)
        if not size:
            return
        buf = np.frombuffer(view, dtype=np.uint8)
        acc = self._acc
        pos = 0
        r = self._length % _CLASSES
        if r:  # bring the stream back to a multiple of 160: < 160 bytes to classes r..
            pos = min(_CLASSES - r, size)
            acc[r : r + pos] ^= buf[:pos]
        rows = (size - pos) // _WIDE
        if rows:
            end = pos + rows * _WIDE
            folded = np.bitwise_xor.reduce(buf[pos:end].reshape(rows, _WIDE), axis=0)
            words = acc.view(np.uint64)
            words ^= folded.view(np.uint64)
            pos = end
        if pos < size:  # fewer than _WIDE bytes, starting at class 0
            acc[: size - pos] ^= buf[pos:]
        self._length += size

    def digest(self) -> bytes:
        state = 0
        classes = np.bitwise_xor.reduce(self._acc.reshape(-1, _CLASSES), axis=0)
        for k, byte in enumerate(classes.tobytes()):
            if byte:
                # Rotate left within 160 bits: the part shifted past bit 159 wraps to bit 0.
                shifted = byte << ((k * _SHIFT) % _WIDTH_BITS)
                state ^= (shifted & _WIDTH_MASK) ^ (shifted >> _WIDTH_BITS)
        # Length is a 64-bit little-endian value XORed into the last 8 digest bytes.
        state ^= (self._length & 0xFFFF_FFFF_FFFF_FFFF) << (_WIDTH_BITS - 64)
        return state.to_bytes(self.digest_size, "little")

    def b64digest(self) -> str:
        """The digest as OneDrive reports it in ``file.hashes.quickXorHash``."""
        return base64.b64encode(self.digest()).decode("ascii")

    def hexdigest(self) -> str:
        return self.digest().hex()

    def copy(self) -> QuickXorHash:
        clone = QuickXorHash.__new__(QuickXorHash)
        clone._acc = self._acc.copy()
        clone._length = self._length
        return clone


def quickxor_b64(data: bytes | bytearray | memoryview) -> str:
    """OneDrive's base64 ``quickXorHash`` of ``data``."""
    return QuickXorHash(data).b64digest()


def _read_chunks(stream: BinaryIO) -> Iterator[memoryview]:
    buf = bytearray(_FILE_CHUNK)
    view = memoryview(buf)
    while True:
        n = stream.readinto(buf)
        if not n:
            return
        yield view[:n]


def quickxor_file(path: str | os.PathLike[str]) -> str:
    """OneDrive's base64 ``quickXorHash`` of the file at ``path``, in flat memory."""
    qx = QuickXorHash()
    with open(path, "rb", buffering=0) as stream:
        for chunk in _read_chunks(stream):
            qx.update(chunk)
    return qx.b64digest()


def sha256_and_quickxor(path: str | os.PathLike[str]) -> tuple[str, str]:
    """``(sha256 hex, quickXorHash base64)`` of a file, reading it once.

    A volume's manifest records its SHA-256 while OneDrive only reports the
    quickXorHash; hashing both in one pass halves the I/O of a verify.
    """
    sha = hashlib.sha256()
    qx = QuickXorHash()
    with open(path, "rb", buffering=0) as stream:
        for chunk in _read_chunks(stream):
            sha.update(chunk)
            qx.update(chunk)
    return sha.hexdigest(), qx.b64digest()
