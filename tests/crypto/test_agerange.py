"""odbackupd.crypto.agerange: plaintext ranges of age files made by the real ``age`` CLI
and by our AgeWriter, fetching only the chunks a range needs; damage is an AgeError."""

from __future__ import annotations

import os

import pytest

from odbackupd.crypto import age
from odbackupd.crypto.age import (
    AgeHeaderError,
    AgeMACError,
    AgeNoMatchError,
    AgePayloadError,
    encrypt_bytes,
    load_identities,
)
from odbackupd.crypto.agerange import FIRST_SLICE, AgeRange
from tests.crypto.test_age import age_cli, age_encrypt, keys  # noqa: F401 - fixtures

CHUNK = 64 * 1024
ENC = CHUNK + 16


class Stored:
    """A stored age file behind a fetch that counts what it is asked for."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.calls: list[tuple[int, int]] = []

    def fetch(self, start: int, length: int) -> bytes:
        assert start >= 0 and length > 0 and start + length <= len(self.data), (start, length)
        self.calls.append((start, length))
        return self.data[start : start + length]

    def open(self, identities, **kw) -> AgeRange:
        return AgeRange(self.fetch, len(self.data), identities, **kw)

    @property
    def fetched(self) -> int:
        return sum(n for _, n in self.calls)


def points(size: int) -> list[int]:
    """Offsets around every chunk boundary of a plaintext of ``size`` bytes, and its ends."""
    out = {0, 1, size - 1, size}
    for b in range(CHUNK, size + 1, CHUNK):
        out |= {b - 1, b, b + 1}
    return sorted(p for p in out if 0 <= p <= size)


SIZES = {
    "empty": 0,
    "1": 1,
    "one partial chunk": CHUNK - 1,
    "one full chunk": CHUNK,
    "full + 1": CHUNK + 1,
    "last chunk full": 3 * CHUNK,
    "last chunk partial": 3 * CHUNK + 100,
}


@pytest.fixture(scope="module")
def identities(keys):  # noqa: F811
    return load_identities(keys[0].path)


def _made_by(maker: str, age_cli, keys, plain: bytes) -> bytes:  # noqa: F811
    if maker == "age CLI":
        return age_encrypt(age_cli, [keys[0].recipient], plain)
    return encrypt_bytes(plain, [keys[0].recipient])


@pytest.mark.parametrize("maker", ["age CLI", "AgeWriter"])
@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_every_range_across_chunk_boundaries(maker, size, age_cli, keys, identities):  # noqa: F811
    plain = os.urandom(size)
    stored = Stored(_made_by(maker, age_cli, keys, plain))
    r = stored.open(identities)
    assert r.plain_size == size
    assert r.chunks == max(1, -(-size // CHUNK))
    assert stored.calls == [(0, min(FIRST_SLICE, len(stored.data)))]  # the header, once
    mac_line_end = stored.data.index(b"\n", stored.data.index(b"\n--- ") + 1)
    assert r.payload_start == mac_line_end + 1 + 16  # the header, its MAC line, the nonce
    ps = points(size)
    for a in ps:
        for b in ps:
            if b < a:
                continue
            stored.calls.clear()
            assert r.read(a, b - a) == plain[a:b], (a, b)
            if a == b:
                assert stored.calls == []
                continue
            first, last = a // CHUNK, (b - 1) // CHUNK
            want = min(r.payload_start + (last + 1) * ENC, len(stored.data))
            assert stored.calls == [(r.payload_start + first * ENC,
                                     want - r.payload_start - first * ENC)], (a, b)


def test_last_chunk_full_or_partial_is_opened_as_the_last(age_cli, keys, identities):  # noqa: F811
    for size, last_len in ((3 * CHUNK, CHUNK), (3 * CHUNK + 100, 100)):
        plain = os.urandom(size)
        stored = Stored(age_encrypt(age_cli, [keys[0].recipient], plain))
        r = stored.open(identities)
        assert len(stored.data) - r.payload_start - (r.chunks - 1) * ENC == last_len + 16
        assert r.read(size - 1, 1) == plain[-1:]
        assert r.read(0, 1) == plain[:1]


def test_empty_payload(age_cli, keys, identities):  # noqa: F811
    stored = Stored(age_encrypt(age_cli, [keys[0].recipient], b""))
    r = stored.open(identities)
    assert (r.plain_size, r.chunks) == (0, 1)
    assert r.read(0, 0) == b""
    with pytest.raises(AgePayloadError, match="beyond the end of the age payload"):
        r.read(0, 1)


def test_a_read_fetches_only_the_chunks_it_needs(age_cli, keys, identities):  # noqa: F811
    plain = os.urandom(6_000_000)
    stored = Stored(age_encrypt(age_cli, [keys[0].recipient], plain))
    r = stored.open(identities)
    header = stored.fetched
    assert header == FIRST_SLICE
    stored.calls.clear()
    a = 40 * CHUNK - 50  # 100 bytes across the boundary of chunks 39 and 40
    assert r.read(a, 100) == plain[a : a + 100]
    assert stored.calls == [(r.payload_start + 39 * ENC, 2 * ENC)]
    stored.calls.clear()
    assert r.read(1_000_000, 4 << 20) == plain[1_000_000 : 1_000_000 + (4 << 20)]
    assert len(stored.calls) == 1 and stored.fetched <= (4 << 20) + 2 * ENC
    assert r.stored_range(1_000_000, 4 << 20) == stored.calls[0]


def test_many_recipients_header_longer_than_the_first_slice(age_cli, keys, identities):  # noqa: F811
    others = [str(age.generate_identity().recipient) for _ in range(60)]
    plain = os.urandom(2 * CHUNK + 7)
    stored = Stored(age_encrypt(age_cli, [*others, keys[0].recipient], plain))
    r = stored.open(identities)
    assert r.payload_start > FIRST_SLICE
    assert len(stored.calls) >= 2 and stored.calls[0] == (0, FIRST_SLICE)
    assert r.read(CHUNK - 3, CHUNK + 10) == plain[CHUNK - 3 : 2 * CHUNK + 7]
    # given back, payload_start makes the header one fetch of exactly its length
    again = Stored(stored.data)
    r2 = again.open(identities, payload_start=r.payload_start)
    assert again.calls == [(0, r.payload_start)] and r2.payload_start == r.payload_start
    assert r2.read(len(plain) - 1, 1) == plain[-1:]


def test_multiple_recipients_our_writer(keys):  # noqa: F811
    plain = os.urandom(CHUNK + 1)
    data = encrypt_bytes(plain, [k.recipient for k in keys])
    for k in keys:
        assert Stored(data).open(load_identities(k.path)).read(CHUNK - 1, 2) == plain[-2:]


def _chunk(r: AgeRange, i: int) -> slice:
    return slice(r.payload_start + i * ENC, r.payload_start + (i + 1) * ENC)


def test_flipped_byte_in_a_chunk(age_cli, keys, identities):  # noqa: F811
    plain = os.urandom(3 * CHUNK + 5)
    good = age_encrypt(age_cli, [keys[0].recipient], plain)
    r = Stored(good).open(identities)
    bad = bytearray(good)
    bad[_chunk(r, 1).start + 1000] ^= 0x01
    r = Stored(bytes(bad)).open(identities)
    with pytest.raises(AgePayloadError, match="chunk 1 failed authentication"):
        r.read(CHUNK + 10, 1)
    with pytest.raises(AgePayloadError, match="chunk 1"):
        r.read(0, 3 * CHUNK)  # a range over it fails as a whole
    # chunks it does not cover are still read (and authenticated) on their own
    assert r.read(0, CHUNK) == plain[:CHUNK]
    assert r.read(2 * CHUNK, CHUNK + 5) == plain[2 * CHUNK :]


def test_flipped_tag_of_the_last_chunk(identities, keys):  # noqa: F811
    data = bytearray(encrypt_bytes(os.urandom(CHUNK + 10), [keys[0].recipient]))
    data[-1] ^= 0x80
    with pytest.raises(AgePayloadError, match="chunk 1 failed"):
        Stored(bytes(data)).open(identities).read(CHUNK, 10)


def test_swapped_chunks(age_cli, keys, identities):  # noqa: F811
    plain = os.urandom(3 * CHUNK + 5)
    good = age_encrypt(age_cli, [keys[0].recipient], plain)
    r = Stored(good).open(identities)
    bad = bytearray(good)
    bad[_chunk(r, 0)], bad[_chunk(r, 1)] = good[_chunk(r, 1)], good[_chunk(r, 0)]
    r = Stored(bytes(bad)).open(identities)
    for i in (0, 1):
        with pytest.raises(AgePayloadError, match=f"chunk {i} failed authentication"):
            r.read(i * CHUNK, 1)
    assert r.read(2 * CHUNK, 5) == plain[2 * CHUNK : 2 * CHUNK + 5]


def test_truncated_or_extended_files(age_cli, keys, identities):  # noqa: F811
    plain = os.urandom(3 * CHUNK + 5)
    good = age_encrypt(age_cli, [keys[0].recipient], plain)
    start = Stored(good).open(identities).payload_start
    # cut at a chunk boundary: chunk 2 now looks like the last one, but was not sealed so
    cut = Stored(good[: start + 3 * ENC]).open(identities)
    assert cut.plain_size == 3 * CHUNK
    with pytest.raises(AgePayloadError, match="chunk 2 failed authentication"):
        cut.read(3 * CHUNK - 1, 1)
    # cut inside the last chunk, and extended by some bytes
    for data in (good[:-1], good + b"x" * 20):
        with pytest.raises(AgePayloadError, match="chunk 3 failed authentication"):
            Stored(data).open(identities).read(3 * CHUNK, 1)
    # too little left for a tag, an empty final chunk after full ones, no payload at all
    for data, message in ((good[: start + 3 * ENC + 15], "chunk 3 is truncated"),
                          (good[: start + 3 * ENC + 16], "final chunk is empty but"),
                          (good[:start], "payload truncated: no chunks")):
        with pytest.raises(AgePayloadError, match=message):
            Stored(data).open(identities)
    with pytest.raises(AgeHeaderError, match="payload nonce"):
        Stored(good[: start - 1]).open(identities)
    with pytest.raises(AgeHeaderError, match="header truncated"):
        Stored(good[:40]).open(identities)
    with pytest.raises(AgeHeaderError, match="empty file"):
        AgeRange(lambda a, n: b"", 0, identities)


def test_a_file_shorter_than_its_stored_size(age_cli, keys, identities):  # noqa: F811
    data = age_encrypt(age_cli, [keys[0].recipient], os.urandom(2 * CHUNK))
    short = data[:-100]
    r = AgeRange(lambda a, n: short[a : a + n], len(data), identities)
    with pytest.raises(AgePayloadError, match="shorter than its stored size"):
        r.read(CHUNK, 10)
    assert r.read(0, 10) == age.decrypt_bytes(data, identities)[:10]
    tiny = data[:100]
    with pytest.raises(AgeHeaderError, match="shorter than its stored size"):
        AgeRange(lambda a, n: tiny[a : a + n], len(data), identities)


def test_wrong_identity_tampered_header_and_bad_arguments(age_cli, keys, identities):  # noqa: F811
    data = age_encrypt(age_cli, [keys[0].recipient], os.urandom(100))
    with pytest.raises(AgeNoMatchError, match="no identity matched"):
        Stored(data).open(load_identities(keys[1].path))
    grease = data.replace(b"\n---", b"\n-> grease\n\n---", 1)  # a stanza added: MAC no longer fits
    with pytest.raises(AgeMACError, match="header MAC mismatch"):
        Stored(grease).open(identities)
    r = Stored(data).open(identities)
    with pytest.raises(ValueError, match="negative"):
        r.read(-1, 2)
    with pytest.raises(AgePayloadError, match="bytes 50-100 are beyond the end"):
        r.read(50, 51)
    with pytest.raises(AgeHeaderError, match="not an age file"):
        Stored(b"-----BEGIN AGE ENCRYPTED FILE-----\n" * 3).open(identities)
