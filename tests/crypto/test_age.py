"""odbackupd.crypto.age against the real age CLI and the public age test vectors.

Volumes must restore with nothing but ``age -d``, so interoperability with Debian's
``age``/``age-keygen`` (installed by scripts/setup-dev.sh) is tested both ways, and the
reader is held to the C2SP CCTV testkit (read from ../shared/testdata/age-testkit).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import random
import shutil
import subprocess
import tracemalloc
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from odbackupd.crypto import age, bech32
from odbackupd.crypto.age import (
    AgeArmorError,
    AgeError,
    AgeHeaderError,
    AgeMACError,
    AgeNoMatchError,
    AgePayloadError,
    AgeReader,
    AgeWriter,
)

CHUNK = 64 * 1024
SHARED_TESTDATA = (Path(__file__).resolve().parents[2] / ".." / "shared" / "testdata").resolve()
TESTKIT = SHARED_TESTDATA / "age-testkit"

# The spec's own example key pair (c2sp.org/age, "The X25519 recipient type").
SPEC_IDENTITY = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"
SPEC_RECIPIENT = "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"

# --- the testkit --------------------------------------------------------------------------

# Recipient types not implemented here. Their vectors are not skipped: each must fail
# with AgeError, and expected successes must fail precisely with "no matching identity".
UNSUPPORTED_RECIPIENT_TYPES = {
    "mlkem768x25519": "post-quantum hybrid (X-Wing); identities AGE-SECRET-KEY-PQ-1…",
}
UNSUPPORTED_VECTORS = frozenset(
    {
        "armor_hybrid",
        "hybrid",
        "hybrid_and_x25519",
        "hybrid_bad_tag",
        "hybrid_currupted_enc_mlkem",
        "hybrid_currupted_enc_x25519",
        "hybrid_extra_argument",
        "hybrid_grease",
        "hybrid_identity",
        "hybrid_long_file_key",
        "hybrid_long_share",
        "hybrid_low_order",
        "hybrid_multiple_recipients",
        "hybrid_no_match",
        "hybrid_not_canonical_body",
        "hybrid_not_canonical_enc",
        "hybrid_short_share",
        "hybrid_uppercase",
        "hybrid_x25519_arg",
    }
)

EXPECTED_ERROR = {
    "header failure": AgeHeaderError,
    "HMAC failure": AgeMACError,
    "no match": AgeNoMatchError,
    "payload failure": AgePayloadError,
    "armor failure": AgeArmorError,
}


@dataclass
class Vector:
    name: str
    expect: str
    payload: str | None
    identities: list[str] = field(default_factory=list)
    passphrases: list[str] = field(default_factory=list)
    armored: bool = False
    body: bytes = b""


def load_vector(path: Path) -> Vector:
    raw = path.read_bytes()
    head, sep, body = raw.partition(b"\n\n")
    assert sep, f"{path.name}: no blank line after the vector header"
    v = Vector(name=path.name, expect="", payload=None)
    compressed = None
    for line in head.decode("utf-8").split("\n"):
        key, _, value = line.partition(": ")
        if key == "expect":
            v.expect = value
        elif key == "payload":
            v.payload = value
        elif key == "identity":
            v.identities.append(value)
        elif key == "passphrase":
            v.passphrases.append(value)
        elif key == "armored":
            v.armored = value == "yes"
        elif key == "compressed":
            compressed = value
    assert v.expect in ("success", *EXPECTED_ERROR), f"{path.name}: unknown expect {v.expect!r}"
    if compressed is not None:
        assert compressed == "zlib", f"{path.name}: unknown compression {compressed!r}"
        body = zlib.decompress(body)
    v.body = body
    return v


VECTOR_NAMES = sorted(p.name for p in TESTKIT.iterdir()) if TESTKIT.is_dir() else []


def decrypt_streaming(data: bytes, identities) -> tuple[hashlib._Hash, AgeError | None]:
    """Read in chunk-sized pieces; return the hash of what was handed out and any error."""
    digest = hashlib.sha256()
    reader = AgeReader(io.BytesIO(data), identities)
    try:
        while True:
            piece = reader.read(CHUNK)
            if not piece:
                return digest, None
            digest.update(piece)
    except AgeError as e:
        return digest, e


def test_testkit_is_present() -> None:
    assert TESTKIT.is_dir(), f"age testkit missing at {TESTKIT} (the repo sits beside shared/)"
    assert len(VECTOR_NAMES) == 143


def test_unsupported_list_is_exactly_the_post_quantum_vectors() -> None:
    pq = {n for n in VECTOR_NAMES if b"AGE-SECRET-KEY-PQ-" in (TESTKIT / n).read_bytes()[:4096]}
    assert pq == UNSUPPORTED_VECTORS


@pytest.mark.parametrize("name", VECTOR_NAMES)
def test_testkit_vector(name: str) -> None:
    v = load_vector(TESTKIT / name)
    if name in UNSUPPORTED_VECTORS:
        _check_unsupported_vector(v)
        return
    identities = [age.parse_identity(s) for s in v.identities]
    identities += [age.ScryptIdentity(p) for p in v.passphrases]
    if v.expect == "success":
        digest, err = decrypt_streaming(v.body, identities)
        assert err is None, f"{name}: {err}"
        assert digest.hexdigest() == v.payload
        return
    expected = EXPECTED_ERROR[v.expect]
    if expected in (AgePayloadError, AgeArmorError):
        # Raised while reading (armor may also fail while the header is read).
        try:
            digest, err = decrypt_streaming(v.body, identities)
        except AgeError as e:
            digest, err = None, e
        assert isinstance(err, expected), f"{name}: expected {v.expect}, got {err!r}"
        if expected is AgePayloadError and v.payload is not None:
            # Only authenticated chunks are handed out before the failure.
            assert digest is not None and digest.hexdigest() == v.payload
        return
    with pytest.raises(expected):
        AgeReader(io.BytesIO(v.body), identities)


def _check_unsupported_vector(v: Vector) -> None:
    usable = []
    for s in v.identities:
        if s.startswith("AGE-SECRET-KEY-PQ-"):
            with pytest.raises(AgeError, match="unsupported identity type"):
                age.parse_identity(s)
        else:
            usable.append(age.parse_identity(s))
    assert any(s.startswith("AGE-SECRET-KEY-PQ-") for s in v.identities)
    with pytest.raises(AgeError) as info:
        AgeReader(io.BytesIO(v.body), usable).read()
    if v.expect == "success":
        assert isinstance(info.value, AgeNoMatchError)
        assert "mlkem768x25519" in str(info.value)


# --- the real age CLI ---------------------------------------------------------------------


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} not found: run scripts/setup-dev.sh (apt package 'age')"
    return path


@pytest.fixture(scope="module")
def age_cli() -> str:
    return _tool("age")


@dataclass
class KeyFile:
    path: Path
    recipient: str  # from age-keygen's "# public key:" comment


def _keygen(directory: Path, name: str) -> KeyFile:
    path = directory / name
    subprocess.run([_tool("age-keygen"), "-o", str(path)], check=True, capture_output=True)
    comment = next(
        line for line in path.read_text().splitlines() if line.startswith("# public key: ")
    )
    return KeyFile(path, comment.removeprefix("# public key: "))


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> list[KeyFile]:
    d = tmp_path_factory.mktemp("keys")
    return [_keygen(d, f"key{i}.txt") for i in range(3)]


def age_decrypt(age_cli: str, key: KeyFile, data: bytes) -> bytes:
    proc = subprocess.run(
        [age_cli, "-d", "-i", str(key.path)], input=data, capture_output=True, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def age_encrypt(age_cli: str, recipients: list[str], data: bytes, armor: bool = False) -> bytes:
    args = [age_cli] + (["-a"] if armor else [])
    for r in recipients:
        args += ["-r", r]
    return subprocess.run(args, input=data, capture_output=True, check=True).stdout


SIZES = {
    "0": 0,
    "1": 1,
    "64KiB-1": CHUNK - 1,
    "64KiB": CHUNK,
    "64KiB+1": CHUNK + 1,
    "3x64KiB": 3 * CHUNK,
    "5MB": 5_000_000,
}


def payload(size: int) -> bytes:
    return os.urandom(size)


def encrypt_in_random_pieces(data: bytes, recipients, seed: int = 1) -> bytes:
    """Feed the writer arbitrary write() sizes, as the volume pipeline does."""
    rng = random.Random(seed)
    sink = io.BytesIO()
    w = AgeWriter(sink, recipients)
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        n = rng.choice([1, 7, 1000, CHUNK - 1, CHUNK, CHUNK + 1, 300_000])
        w.write(view[pos : pos + n])
        pos += n
    w.close()
    assert w.bytes_written == len(sink.getvalue())
    return sink.getvalue()


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_our_output_decrypts_with_age_cli(age_cli, keys, size) -> None:
    data = payload(size)
    ct = encrypt_in_random_pieces(data, [keys[0].recipient], seed=size)
    assert age_decrypt(age_cli, keys[0], ct) == data


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_age_cli_output_decrypts_with_our_reader(age_cli, keys, size) -> None:
    data = payload(size)
    ct = age_encrypt(age_cli, [keys[0].recipient], data)
    identities = age.load_identities(keys[0].path)
    assert AgeReader(io.BytesIO(ct), identities).read() == data
    # and in small, odd-sized reads
    reader = AgeReader(io.BytesIO(ct), identities)
    out = bytearray()
    while piece := reader.read(9_999):
        out += piece
    assert out == data


@pytest.mark.parametrize("size", [0, 1, CHUNK, 3 * CHUNK + 5], ids=["0", "1", "64KiB", "3x64KiB+5"])
def test_age_cli_armored_output_decrypts_with_our_reader(age_cli, keys, size) -> None:
    data = payload(size)
    ct = age_encrypt(age_cli, [keys[1].recipient], data, armor=True)
    assert ct.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----\n")
    assert age.decrypt_bytes(ct, age.load_identities(keys[1].path)) == data


def test_multiple_recipients_our_writer(age_cli, keys, tmp_path) -> None:
    ours = age.generate_identity()
    our_key = tmp_path / "ours.txt"
    our_key.write_text(f"# made by odbackupd\n{ours}\n")
    data = payload(3 * CHUNK + 123)
    recipients = [keys[0].recipient, age.parse_recipient(keys[1].recipient), ours.recipient]
    ct = encrypt_in_random_pieces(data, recipients)
    assert ct.count(b"\n-> X25519 ") == 3
    for key in keys[:2]:
        assert age_decrypt(age_cli, key, ct) == data
    assert age_decrypt(age_cli, KeyFile(our_key, str(ours.recipient)), ct) == data
    with pytest.raises(AgeNoMatchError):
        AgeReader(io.BytesIO(ct), age.load_identities(keys[2].path))


def test_multiple_recipients_age_cli(age_cli, keys) -> None:
    data = payload(5_000_000)
    ct = age_encrypt(age_cli, [k.recipient for k in keys], data)
    for key in keys:
        assert age.decrypt_bytes(ct, age.load_identities(key.path)) == data
    # an identity file holding a non-matching key first, then a matching one
    other = age.generate_identity()
    assert age.decrypt_bytes(ct, [other, *age.load_identities(keys[2].path)]) == data


def test_keys_agree_with_age_keygen(keys, tmp_path) -> None:
    for key in keys:
        (identity,) = age.load_identities(key.path)
        assert str(identity.recipient) == key.recipient
        assert str(age.parse_recipient(key.recipient)) == key.recipient
        assert str(identity) == key.path.read_text().splitlines()[-1]
    generated = age.generate_identity()
    path = tmp_path / "generated.txt"
    path.write_text(str(generated) + "\n")
    derived = subprocess.run(
        [_tool("age-keygen"), "-y", str(path)], capture_output=True, check=True, text=True
    ).stdout.strip()
    assert derived == str(generated.recipient)


def test_writer_emits_no_empty_final_chunk_except_for_empty_input(keys) -> None:
    r = [keys[0].recipient]
    sizes = {n: len(age.encrypt_bytes(payload(n), r)) for n in (0, 1, CHUNK, CHUNK + 1, 2 * CHUNK)}
    header = sizes[0] - 16  # header + nonce; the empty plaintext is one 16-byte tag
    assert sizes[1] == header + 1 + 16
    assert sizes[CHUNK] == header + CHUNK + 16  # one full final chunk, nothing after
    assert sizes[CHUNK + 1] == header + CHUNK + 16 + 1 + 16
    assert sizes[2 * CHUNK] == header + 2 * (CHUNK + 16)


# --- writer and reader behaviour ---------------------------------------------------------


@pytest.fixture(scope="module")
def identity() -> age.X25519Identity:
    return age.generate_identity()


class RecordingSink(io.BytesIO):
    """A real BytesIO that remembers whether anyone closed it."""

    was_closed = False

    def close(self) -> None:
        self.was_closed = True
        super().close()


def test_writer_header_at_first_write_or_close_and_sink_left_open(identity) -> None:
    sink = RecordingSink()
    w = AgeWriter(sink, [identity.recipient])
    assert sink.getvalue() == b"" and w.bytes_written == 0
    w.write(b"x")
    header_len = len(sink.getvalue())
    assert sink.getvalue().startswith(b"age-encryption.org/v1\n-> X25519 ")
    assert header_len == w.bytes_written and header_len > 0
    w.close()
    w.close()  # idempotent
    assert not sink.was_closed
    assert w.bytes_written == len(sink.getvalue()) == header_len + 1 + 16
    with pytest.raises(ValueError):
        w.write(b"more")
    assert age.decrypt_bytes(sink.getvalue(), [identity]) == b"x"

    empty = RecordingSink()
    w = AgeWriter(empty, [identity.recipient])
    w.close()
    assert not empty.was_closed and w.bytes_written == len(empty.getvalue())
    assert age.decrypt_bytes(empty.getvalue(), [identity]) == b""


def test_writer_context_manager_aborts_on_error(age_cli, keys) -> None:
    sink = io.BytesIO()
    with pytest.raises(RuntimeError):
        with AgeWriter(sink, [keys[0].recipient]) as w:
            w.write(payload(2 * CHUNK + 10))
            raise RuntimeError("the tar stream failed")
    partial = sink.getvalue()
    identities = age.load_identities(keys[0].path)
    digest, err = decrypt_streaming(partial, identities)
    assert isinstance(err, AgePayloadError)
    proc = subprocess.run(
        [age_cli, "-d", "-i", str(keys[0].path)], input=partial, capture_output=True
    )
    assert proc.returncode != 0
    with AgeWriter(sink := io.BytesIO(), [keys[0].recipient]) as w:
        w.write(b"ok")
    assert age_decrypt(age_cli, keys[0], sink.getvalue()) == b"ok"


class FailingSink(io.BytesIO):
    """Accepts ``budget`` writes, then fails like a full disk."""

    def __init__(self, budget: int) -> None:
        super().__init__()
        self.budget = budget

    def write(self, data) -> int:
        if self.budget == 0:
            raise OSError(28, "No space left on device")
        self.budget -= 1
        return super().write(data)


def test_writer_is_unusable_after_a_sink_error(identity) -> None:
    sink = FailingSink(budget=2)  # the header and one chunk
    w = AgeWriter(sink, [identity.recipient])
    with pytest.raises(OSError):
        w.write(payload(3 * CHUNK))
    assert w.closed
    w.close()  # no final chunk is written after the hole
    with pytest.raises(ValueError):
        w.write(b"x")
    _, err = decrypt_streaming(sink.getvalue(), [identity])
    assert isinstance(err, AgePayloadError)


def test_writer_handles_partial_raw_writes(identity, tmp_path) -> None:
    data = payload(2 * CHUNK + 5)
    out_path = tmp_path / "out.age"
    r, wfd = os.pipe()
    # a raw (unbuffered) pipe end: write() may take less than it is given
    with open(out_path, "wb") as out, open(wfd, "wb", buffering=0) as raw_sink:
        cat = subprocess.Popen(["cat"], stdin=r, stdout=out)
        os.close(r)
        w = AgeWriter(raw_sink, [identity.recipient])
        w.write(data)
        w.close()
    assert cat.wait() == 0
    assert age.decrypt_bytes(out_path.read_bytes(), [identity]) == data


def test_writer_accepts_any_buffer(identity) -> None:
    sink = io.BytesIO()
    w = AgeWriter(sink, [str(identity.recipient)])
    w.write(bytearray(b"ab"))
    w.write(memoryview(b"--cd--")[2:4])
    import array

    w.write(array.array("H", [0x6665]))  # little-endian "ef"
    w.close()
    assert age.decrypt_bytes(sink.getvalue(), [identity]) == b"abcd" + array.array(
        "H", [0x6665]
    ).tobytes()


def test_reader_readinto_and_read_sizes(identity) -> None:
    data = payload(5 * CHUNK + 17)
    ct = age.encrypt_bytes(data, [identity.recipient])
    for size in (1, 100, CHUNK - 1, CHUNK, CHUNK + 1, 4 * CHUNK, 10 * CHUNK):
        reader = AgeReader(io.BytesIO(ct), [identity])
        assert reader.readable() and not reader.seekable()
        buf = bytearray(size)
        out = bytearray()
        while n := reader.readinto(buf):
            out += buf[:n]
        assert out == data, size
        assert reader.read(10) == b"" and reader.readinto(buf) == 0
    reader = AgeReader(io.BytesIO(ct), [identity])
    assert reader.read(0) == b""
    assert reader.read(3) == data[:3]
    assert reader.read(CHUNK) == data[3 : CHUNK + 3]  # spans a chunk boundary
    assert reader.read() == data[CHUNK + 3 :]
    # usable wherever a file object is expected
    buffered = io.BufferedReader(AgeReader(io.BytesIO(ct), [identity]))
    assert buffered.read() == data


def test_reader_does_not_close_source(identity) -> None:
    src = RecordingSink(age.encrypt_bytes(b"data", [identity.recipient]))
    reader = AgeReader(src, [identity])
    assert reader.read() == b"data"
    reader.close()
    assert not src.was_closed
    with pytest.raises(ValueError):
        reader.read(1)


def test_reader_from_unbuffered_pipe(identity, tmp_path) -> None:
    """A raw pipe returns short reads; chunks must still be reassembled exactly."""
    data = payload(3 * CHUNK + 99)
    path = tmp_path / "f.age"
    path.write_bytes(age.encrypt_bytes(data, [identity.recipient]))
    proc = subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE, bufsize=0)
    try:
        assert AgeReader(proc.stdout, [identity]).read() == data
    finally:
        proc.stdout.close()
        proc.wait()


def test_memory_stays_flat(identity, tmp_path) -> None:
    block = os.urandom(1 << 20)
    buf = bytearray(1 << 20)  # the caller's buffers are not ours to count
    path = tmp_path / "big.age"
    tracemalloc.start()
    try:
        with open(path, "wb") as f:
            w = AgeWriter(f, [identity.recipient])
            for _ in range(48):
                w.write(block)
            w.write(block[:12345])
            w.close()
        _, peak_write = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            reader = AgeReader(f, [identity])
            while n := reader.readinto(buf):
                digest.update(memoryview(buf)[:n])
        with open(path, "rb") as f:
            reader = AgeReader(f, [identity])
            while reader.read(100_000):
                pass
        _, peak_read = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    expected = hashlib.sha256(block * 48 + block[:12345]).hexdigest()
    assert digest.hexdigest() == expected
    assert peak_write < 512 * 1024, peak_write
    assert peak_read < 512 * 1024, peak_read


# --- tampering -----------------------------------------------------------------------------


def _fully_decrypt(data: bytes, identities) -> bytes:
    return AgeReader(io.BytesIO(data), identities).read()


def test_every_single_byte_flip_is_detected(identity) -> None:
    data = payload(300)
    ct = age.encrypt_bytes(data, [identity.recipient])
    for i in range(len(ct)):
        for mask in (0x01, 0x80):
            tampered = bytearray(ct)
            tampered[i] ^= mask
            with pytest.raises(AgeError):
                _fully_decrypt(bytes(tampered), [identity])


def test_flipped_header_byte_fails(identity) -> None:
    ct = age.encrypt_bytes(payload(1000), [identity.recipient])
    header_end = ct.index(b"\n--- ")
    tampered = bytearray(ct)
    tampered[header_end - 3] ^= 0x04  # inside the stanza body
    with pytest.raises(AgeError):
        AgeReader(io.BytesIO(bytes(tampered)), [identity])
    # an added stanza changes the MAC'd header
    grease = ct.replace(b"\n--- ", b"\n-> grease\n\n--- ", 1)
    with pytest.raises(AgeMACError):
        AgeReader(io.BytesIO(grease), [identity])


def test_flipped_chunk_byte_fails_after_the_good_chunks(identity) -> None:
    data = payload(3 * CHUNK)
    ct = bytearray(age.encrypt_bytes(data, [identity.recipient]))
    start = len(ct) - 3 * (CHUNK + 16)
    ct[start + (CHUNK + 16) + 500] ^= 0x10  # second chunk
    digest, err = decrypt_streaming(bytes(ct), [identity])
    assert isinstance(err, AgePayloadError) and "chunk 1" in str(err)
    assert digest.hexdigest() == hashlib.sha256(data[:CHUNK]).hexdigest()


def test_truncation_fails(identity) -> None:
    data = payload(2 * CHUNK + 100)
    ct = age.encrypt_bytes(data, [identity.recipient])
    payload_start = len(ct) - (2 * (CHUNK + 16) + 116)
    for cut in (
        len(ct) - 1,  # last byte of the final tag
        len(ct) - 116,  # whole final chunk: ends on a chunk boundary
        payload_start + CHUNK + 16,  # after the first chunk
        payload_start,  # nonce only, no chunks
        payload_start - 5,  # inside the nonce
        30,  # inside the header
        0,
    ):
        with pytest.raises(AgeError):
            _fully_decrypt(ct[:cut], [identity])
    with pytest.raises(AgePayloadError, match="no final chunk"):
        _fully_decrypt(ct[: len(ct) - 116], [identity])


def test_appended_data_fails(identity) -> None:
    data = payload(CHUNK)
    ct = age.encrypt_bytes(data, [identity.recipient])
    for extra in (b"\x00", b"garbage", os.urandom(CHUNK + 16), ct[-(CHUNK + 16) :]):
        digest, err = decrypt_streaming(ct + extra, [identity])
        assert isinstance(err, AgePayloadError), extra[:8]
        assert "trailing data" in str(err)


def test_reordered_chunks_fail(identity) -> None:
    data = payload(3 * CHUNK + 1)
    ct = age.encrypt_bytes(data, [identity.recipient])
    enc = CHUNK + 16
    start = len(ct) - (3 * enc + 17)
    c0, c1 = ct[start : start + enc], ct[start + enc : start + 2 * enc]
    swapped = ct[:start] + c1 + c0 + ct[start + 2 * enc :]
    with pytest.raises(AgePayloadError):
        _fully_decrypt(swapped, [identity])


def test_low_order_share_is_rejected(identity) -> None:
    zero_share = base64.b64encode(bytes(32)).rstrip(b"=").decode()
    stanza = age.Stanza(("X25519", zero_share), bytes(32))
    with pytest.raises(AgeHeaderError, match="low-order"):
        identity.unwrap([stanza])


def test_wrong_or_missing_identity(identity) -> None:
    ct = age.encrypt_bytes(b"secret", [identity.recipient])
    with pytest.raises(AgeNoMatchError, match="no identity matched"):
        AgeReader(io.BytesIO(ct), [age.generate_identity()])
    with pytest.raises(AgeNoMatchError):
        AgeReader(io.BytesIO(ct), [])


def test_not_an_age_file() -> None:
    with pytest.raises(AgeHeaderError, match="empty"):
        AgeReader(io.BytesIO(b""), [])
    with pytest.raises(AgeError):
        AgeReader(io.BytesIO(b"\x28\xb5\x2f\xfd zstd frame"), [])


# --- keys, bech32, identity files ----------------------------------------------------------


def test_spec_key_pair() -> None:
    identity = age.parse_identity(SPEC_IDENTITY)
    assert str(identity) == SPEC_IDENTITY
    assert str(identity.recipient) == SPEC_RECIPIENT
    assert age.parse_recipient(SPEC_RECIPIENT) == identity.recipient
    assert SPEC_IDENTITY not in repr(identity) and SPEC_RECIPIENT in repr(identity)


@pytest.mark.parametrize(
    "valid",
    [
        "A12UEL5L",
        "a12uel5l",
        "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio"
        "1tt5tgs",
        "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
        "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
    ],
)
def test_bech32_bip173_valid_checksums(valid) -> None:
    hrp, _ = bech32.decode(valid)
    assert hrp == valid[: valid.rfind("1")]


@pytest.mark.parametrize(
    "invalid",
    [
        "pzry9x0s0muk",  # no separator
        "1pzry9x0s0muk",  # empty HRP
        "x1b4n0q5v",  # invalid data character
        "li1dgmt3",  # checksum too short
        "A1G7SGD8",  # checksum computed over uppercase HRP
        "10a06t8",  # empty HRP
        "1qzzfhee",  # empty HRP
        "a12UEL5L",  # mixed case
    ],
)
def test_bech32_bip173_invalid(invalid) -> None:
    with pytest.raises(bech32.Bech32Error):
        bech32.decode(invalid)


def test_bech32_round_trip_without_length_limit() -> None:
    data = os.urandom(200)  # longer than BIP 173's 90 characters, as age allows
    s = bech32.encode("age1pq", data)
    assert len(s) > 90 and bech32.decode(s) == ("age1pq", data)
    assert bech32.encode("AGE-SECRET-KEY-", b"\x01") == bech32.encode(
        "age-secret-key-", b"\x01"
    ).upper()


@pytest.mark.parametrize(
    "bad, message",
    [
        (SPEC_RECIPIENT[:-1] + ("q" if SPEC_RECIPIENT[-1] != "q" else "p"), "checksum"),
        (SPEC_RECIPIENT.upper(), "lowercase"),
        (SPEC_RECIPIENT[:10] + SPEC_RECIPIENT[10:].upper(), "mixed case"),
        (bech32.encode("age", os.urandom(31)), "length"),
        (bech32.encode("age1pq", os.urandom(1216)), "unsupported recipient type"),
        ("ssh-ed25519 AAAAC3Nza", "malformed"),
    ],
)
def test_parse_recipient_rejects(bad, message) -> None:
    with pytest.raises(AgeError, match=message):
        age.parse_recipient(bad)


def test_parse_identity_rejects() -> None:
    with pytest.raises(AgeError, match="uppercase"):
        age.parse_identity(SPEC_IDENTITY.lower())
    with pytest.raises(AgeError, match="not an age X25519 identity"):
        age.parse_identity(SPEC_RECIPIENT)
    with pytest.raises(AgeError, match="unsupported identity type"):
        age.parse_identity("AGE-PLUGIN-YUBIKEY-1QQQQQQ")


def test_load_identities_file_format(tmp_path) -> None:
    a, b = age.generate_identity(), age.generate_identity()
    path = tmp_path / "ids.txt"
    path.write_text(
        f"# created: 2024-01-01T00:00:00Z\n# public key: {a.recipient}\n{a}\n\n"
        f"   \n# second key\r\n{b}\r\n"
    )
    loaded = age.load_identities(path)
    assert [str(i) for i in loaded] == [str(a), str(b)]


def test_load_identities_errors_name_file_and_line_without_secrets(tmp_path) -> None:
    key = str(age.generate_identity())
    broken = key[:-1] + ("Q" if key[-1] != "Q" else "P")
    path = tmp_path / "ids.txt"
    path.write_text(f"# comment\n{key}\n\n{broken}\n")
    with pytest.raises(AgeError) as info:
        age.load_identities(path)
    message = str(info.value)
    assert message.startswith(f"{path}:4: ") and "checksum" in message
    assert broken not in message and key[20:40] not in message

    path.write_text("# only comments\n\n")
    with pytest.raises(AgeError, match="no identities"):
        age.load_identities(path)
    pq_identity = "AGE-SECRET-KEY-PQ-1XX76JRALNLXDMEW0CRK45QMCCH4X06SE84UN3VPM33W6HWDX0H3SK3ZQFR"
    path.write_text(pq_identity + "\n")
    with pytest.raises(AgeError, match=r":1: unsupported identity type"):
        age.load_identities(path)
    with pytest.raises(FileNotFoundError):
        age.load_identities(tmp_path / "missing.txt")


def test_recipient_fingerprint() -> None:
    identity = age.parse_identity(SPEC_IDENTITY)
    fp = age.recipient_fingerprint(SPEC_RECIPIENT)
    assert fp == hashlib.sha256(SPEC_RECIPIENT.encode()).hexdigest()[:16]
    assert fp == age.recipient_fingerprint(identity.recipient)
    assert fp == age.recipient_fingerprint(identity)
    assert len(fp) == 16 and int(fp, 16) >= 0
    other = age.generate_identity().recipient
    assert age.recipient_fingerprint(other) != fp
    with pytest.raises(AgeError):
        age.recipient_fingerprint("age1notarecipient")
