"""quickXorHash, as OneDrive computes it, for the emulator's own use.

A deliberately independent implementation (the project's fast one lives in
``odbackupd.hashes``; the emulator must not share code with the client it checks).

The algorithm (Microsoft's code-snippets/quickxorhash.md): a 160-bit register; input byte
*i* is XORed in at bit offset ``(i * 11) mod 160``, wrapping around; at the end the 64-bit
little-endian length is XORed into the last 8 of the 20 output bytes.

Because ``160 * 11 = 0 (mod 160)``, byte *i* lands at the same offset as byte ``i + 160``.
So the input is first folded into 160 "lanes" (lane k = XOR of every byte whose position is
k mod 160) with big-integer XORs, which keeps this fast enough for tens of MiB per test;
only the 160 lane bytes are then placed bit by bit.
"""

from __future__ import annotations

import base64

WIDTH_BITS = 160
LANES = 160
_BLOCK = LANES * 4096  # fold 640 KiB at a time (4096 = 2**12 lane blocks)
_MASK160 = (1 << WIDTH_BITS) - 1


def _fold(buf: bytes | memoryview) -> int:
    """XOR all 160-byte blocks of ``buf`` (its length a multiple of 160) together."""
    view = memoryview(buf)
    acc = 0
    for off in range(0, len(view), _BLOCK):
        acc ^= int.from_bytes(view[off:off + _BLOCK], "little")
    size = _BLOCK
    while size > LANES:  # halve: 4096 blocks -> 1 block in 12 steps
        size //= 2
        acc = (acc & ((1 << (size * 8)) - 1)) ^ (acc >> (size * 8))
    return acc


class QuickXorHash:
    """Incremental quickXorHash: ``update()`` any number of times, then ``b64digest()``."""

    def __init__(self) -> None:
        self._lanes = 0  # 160 lane bytes as a little-endian integer
        self._length = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        data = bytes(data)
        if not data:
            return
        pos = self._length % LANES
        self._length += len(data)
        head = b"\0" * pos + data
        tail = -len(head) % LANES
        self._lanes ^= _fold(head + b"\0" * tail)

    def digest(self) -> bytes:
        lanes = self._lanes.to_bytes(LANES, "little")
        reg = 0
        for k, byte in enumerate(lanes):
            if byte:
                shift = (k * 11) % WIDTH_BITS
                reg ^= ((byte << shift) | (byte >> (WIDTH_BITS - shift))) & _MASK160
        out = bytearray(reg.to_bytes(20, "little"))
        for i, b in enumerate(self._length.to_bytes(8, "little")):
            out[12 + i] ^= b
        return bytes(out)

    def b64digest(self) -> str:
        return base64.b64encode(self.digest()).decode("ascii")


def quickxor_b64(data: bytes) -> str:
    h = QuickXorHash()
    h.update(data)
    return h.b64digest()


def quickxor_file(path, chunk: int = 8 << 20) -> str:
    h = QuickXorHash()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.b64digest()


def quickxor_reference(data: bytes) -> str:
    """Byte-at-a-time version straight from the description (slow; for cross-checks)."""
    reg = 0
    for i, byte in enumerate(data):
        shift = (i * 11) % WIDTH_BITS
        reg ^= ((byte << shift) | (byte >> (WIDTH_BITS - shift))) & _MASK160
    out = bytearray(reg.to_bytes(20, "little"))
    for i, b in enumerate(len(data).to_bytes(8, "little")):
        out[12 + i] ^= b
    return base64.b64encode(bytes(out)).decode("ascii")
