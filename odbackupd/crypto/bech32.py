"""Bech32 (BIP 173) as age uses it: no length limit, case preserved in the HRP.

age keys are Bech32 strings (``age1…`` recipients, ``AGE-SECRET-KEY-1…`` identities).
The age spec drops BIP 173's 90-character limit, and a string must be all lowercase or
all uppercase; the checksum is always computed over the lowercase form. `decode` returns
the human-readable part in the case it was written in, so that callers can insist on
``age`` for recipients and ``AGE-SECRET-KEY-`` for identities, as age itself does.
"""

from __future__ import annotations

__all__ = ["Bech32Error", "decode", "encode"]

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_CHARSET_REV = {c: i for i, c in enumerate(CHARSET)}
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


class Bech32Error(ValueError):
    """A string is not valid Bech32 (the message never repeats the string: it may be a key)."""


def _polymod(values: list[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            if (top >> i) & 1:
                chk ^= _GENERATOR[i]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: bytes | list[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    acc = 0
    bits = 0
    out: list[int] = []
    maxv = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & maxv)
    elif bits >= from_bits or (acc << (to_bits - bits)) & maxv:
        raise Bech32Error("invalid padding in data part")
    return out


def encode(hrp: str, data: bytes) -> str:
    """Encode ``data`` under ``hrp``; the result has the case of ``hrp`` (which must not mix)."""
    if not hrp or any(not 33 <= ord(c) <= 126 for c in hrp):
        raise Bech32Error("invalid human-readable part")
    if hrp.lower() != hrp and hrp.upper() != hrp:
        raise Bech32Error("mixed-case human-readable part")
    lower = hrp.lower()
    values = _convert_bits(data, 8, 5, pad=True)
    polymod = _polymod(_hrp_expand(lower) + values + [0] * 6) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    out = lower + "1" + "".join(CHARSET[v] for v in values + checksum)
    return out.upper() if hrp.upper() == hrp and hrp.lower() != hrp else out


def decode(s: str) -> tuple[str, bytes]:
    """Return ``(hrp, data)``; ``hrp`` keeps the case it was written in."""
    if s.lower() != s and s.upper() != s:
        raise Bech32Error("mixed case")
    pos = s.rfind("1")
    if pos < 1 or pos + 7 > len(s):
        raise Bech32Error("separator '1' missing or misplaced")
    hrp = s[:pos]
    if any(not 33 <= ord(c) <= 126 for c in hrp):
        raise Bech32Error("invalid character in human-readable part")
    try:
        values = [_CHARSET_REV[c] for c in s[pos + 1 :].lower()]
    except KeyError:
        raise Bech32Error("invalid character in data part") from None
    if _polymod(_hrp_expand(hrp.lower()) + values) != 1:
        raise Bech32Error("invalid checksum")
    return hrp, bytes(_convert_bits(values[:-6], 5, 8, pad=False))
