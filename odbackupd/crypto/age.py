"""The age v1 file format (https://age-encryption.org/v1, c2sp.org/age) on `cryptography`.

Every backup volume is its own age file, so a sysadmin can restore with nothing but the
``age`` CLI. This module therefore writes exactly what ``age -d`` accepts and reads
what ``age`` writes, and it is as strict as the reference implementation when reading:
the public test vectors (C2SP CCTV ``age`` testkit) are the measure.

Recipient types: X25519 (read and write); scrypt passphrases (read only, so that files
made with ``age -p`` can be opened). Unknown stanza types are ignored, as the spec
requires, so files that also carry post-quantum or plugin stanzas still open with an
X25519 identity. ASCII armor is accepted when reading; the writer emits binary only.

Streaming: `AgeWriter` and `AgeReader` hold at most one 64 KiB STREAM chunk (plus its
ciphertext) whatever the file's size. `AgeReader` hands out each chunk's plaintext only
after its tag has been checked, but a file's end is only proven when `read` returns
``b""``: truncation, trailing data or a tampered later chunk raise `AgePayloadError`
part-way through, and the caller must then discard everything it has read.

Why one module of ~1000 lines: it is one format read against one specification. The
header parser, the stanza types, the STREAM writer and reader and the armor decoder share
private framing helpers (line reading with limits, strict base64, the nonce and key
derivation), and splitting them would make those helpers public API. The public surface
stays small: the names in HACKING.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from odbackupd.crypto import bech32

__all__ = [
    "AgeArmorError",
    "AgeError",
    "AgeHeaderError",
    "AgeMACError",
    "AgeNoMatchError",
    "AgePayloadError",
    "AgeReader",
    "AgeWriter",
    "ScryptIdentity",
    "Stanza",
    "X25519Identity",
    "X25519Recipient",
    "decrypt_bytes",
    "encrypt_bytes",
    "generate_identity",
    "load_identities",
    "parse_identity",
    "parse_recipient",
    "recipient_fingerprint",
]

VERSION_LINE = b"age-encryption.org/v1\n"
_VERSION_PREFIX = b"age-encryption.org/"
CHUNK_SIZE = 64 * 1024
TAG_SIZE = 16
_ENC_CHUNK_SIZE = CHUNK_SIZE + TAG_SIZE
FILE_KEY_SIZE = 16
_NONCE_SIZE = 16
_MAX_COUNTER = 1 << 88
_MAX_HEADER_SIZE = 1 << 20  # bounds memory on hostile input; ~7000 X25519 stanzas
_COLUMNS = 64

_X25519_INFO = b"age-encryption.org/v1/X25519"
_SCRYPT_LABEL = b"age-encryption.org/v1/scrypt"
_ZERO_NONCE = bytes(12)
_RECIPIENT_HRP = "age"
_IDENTITY_HRP = "AGE-SECRET-KEY-"

_ARMOR_BEGIN = b"-----BEGIN AGE ENCRYPTED FILE-----"
_ARMOR_END = b"-----END AGE ENCRYPTED FILE-----"
_ARMOR_MAX_WHITESPACE = 1024
_WHITESPACE = b" \t\r\n\v\f"

_B64_RAW = re.compile(rb"[A-Za-z0-9+/]*")
_B64_PADDED = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_VCHAR_ARG = re.compile(rb"[\x21-\x7e]+")
_DECIMAL = re.compile(r"[1-9][0-9]*")

# cryptography >= 44 can decrypt straight into a caller's buffer; Debian 12 ships 38,
# whose AEAD also takes only ``bytes`` (a copy per chunk there, none on newer versions).
_HAS_DECRYPT_INTO = hasattr(ChaCha20Poly1305, "decrypt_into")


def _aead_takes_buffers() -> bool:
    try:
        ChaCha20Poly1305(bytes(32)).encrypt(bytes(12), memoryview(b"x"), None)
    except TypeError:
        return False
    return True


_AEAD_TAKES_BUFFERS = _aead_takes_buffers()


# --- errors -----------------------------------------------------------------------------


class AgeError(ValueError):
    """Anything wrong with an age file, key or identity file. Messages never hold secrets."""


class AgeHeaderError(AgeError):
    """The header is malformed, unsupported, or a stanza addressed to us is invalid."""


class AgeMACError(AgeError):
    """The header MAC does not match: the header was modified."""


class AgeNoMatchError(AgeError):
    """None of the given identities can unwrap the file key."""


class AgePayloadError(AgeError):
    """The encrypted payload is corrupted, truncated, or followed by trailing data."""


class AgeArmorError(AgeError):
    """The ASCII armor around the file is malformed."""


# --- base64 -----------------------------------------------------------------------------


def _b64encode(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def _b64decode(text: bytes, what: str, err: type[AgeError] = AgeHeaderError) -> bytes:
    """Decode unpadded, canonical base64, as the age header uses it."""
    if not _B64_RAW.fullmatch(text) or len(text) % 4 == 1:
        raise err(f"{what}: invalid base64")
    data = binascii.a2b_base64(text + b"=" * (-len(text) % 4))
    if _b64encode(data) != text:
        raise err(f"{what}: non-canonical base64")
    return data


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


# --- stanzas, recipients, identities ---------------------------------------------------


@dataclass(frozen=True)
class Stanza:
    """One recipient stanza: ``args[0]`` is its type, ``body`` the wrapped file key."""

    args: tuple[str, ...]
    body: bytes

    @property
    def type(self) -> str:
        return self.args[0]

    def encode(self) -> bytes:
        lines = [b"-> " + " ".join(self.args).encode("ascii") + b"\n"]
        body = _b64encode(self.body)
        for i in range(0, len(body), _COLUMNS):
            lines.append(body[i : i + _COLUMNS] + b"\n")
        if len(body) % _COLUMNS == 0:
            lines.append(b"\n")  # the body always ends with a short (here empty) line
        return b"".join(lines)


def _unwrap_file_key(wrap_key: bytes, body: bytes) -> bytes | None:
    try:
        return ChaCha20Poly1305(wrap_key).decrypt(_ZERO_NONCE, body, None)
    except InvalidTag:
        return None


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class X25519Recipient:
    """An ``age1…`` public key. Files encrypted to it open with its `X25519Identity`."""

    __slots__ = ("_public",)

    def __init__(self, public: bytes) -> None:
        if len(public) != 32:
            raise AgeError("an X25519 recipient is 32 bytes")
        self._public = bytes(public)

    @property
    def public_bytes(self) -> bytes:
        return self._public

    def wrap(self, file_key: bytes) -> Stanza:
        ephemeral = X25519PrivateKey.generate()
        share = _raw_public(ephemeral.public_key())
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(self._public))
        wrap_key = _hkdf(shared, share + self._public, _X25519_INFO)
        body = ChaCha20Poly1305(wrap_key).encrypt(_ZERO_NONCE, file_key, None)
        return Stanza(("X25519", _b64encode(share).decode("ascii")), body)

    def __str__(self) -> str:
        return bech32.encode(_RECIPIENT_HRP, self._public)

    def __repr__(self) -> str:
        return f"X25519Recipient({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, X25519Recipient) and other._public == self._public

    def __hash__(self) -> int:
        return hash(self._public)


class X25519Identity:
    """An ``AGE-SECRET-KEY-1…`` secret key. ``repr`` shows only the public recipient."""

    __slots__ = ("_key", "_recipient")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise AgeError("an X25519 identity is 32 bytes")
        self._key = X25519PrivateKey.from_private_bytes(bytes(secret))
        self._recipient = X25519Recipient(_raw_public(self._key.public_key()))

    @classmethod
    def generate(cls) -> X25519Identity:
        return cls(os.urandom(32))

    @property
    def recipient(self) -> X25519Recipient:
        return self._recipient

    def __str__(self) -> str:
        secret = self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return bech32.encode(_IDENTITY_HRP, secret)

    def __repr__(self) -> str:
        return f"X25519Identity(recipient={str(self._recipient)!r})"

    def unwrap(self, stanzas: list[Stanza]) -> bytes | None:
        """The file key if a stanza is addressed to us; ``None`` if none is.

        Every X25519 stanza is checked for well-formedness before any is tried, so a
        malformed one cannot hide behind a matching one.
        """
        ours = [s for s in stanzas if s.type == "X25519"]
        shares = []
        for s in ours:
            if len(s.args) != 2:
                raise AgeHeaderError("invalid X25519 stanza: expected exactly one argument")
            share = _b64decode(s.args[1].encode("ascii"), "X25519 stanza share")
            if len(share) != 32:
                raise AgeHeaderError("invalid X25519 stanza: the share is not 32 bytes")
            if len(s.body) != FILE_KEY_SIZE + TAG_SIZE:
                raise AgeHeaderError("invalid X25519 stanza: the body is not a 16-byte file key")
            shares.append(share)
        for s, share in zip(ours, shares, strict=True):
            try:
                shared = self._key.exchange(X25519PublicKey.from_public_bytes(share))
            except ValueError:  # OpenSSL refuses the all-zero result itself
                shared = bytes(32)
            if shared == bytes(32):
                raise AgeHeaderError("invalid X25519 stanza: low-order share (all-zero secret)")
            wrap_key = _hkdf(shared, share + self._recipient.public_bytes, _X25519_INFO)
            file_key = _unwrap_file_key(wrap_key, s.body)
            if file_key is not None:
                return file_key
        return None


class ScryptIdentity:
    """A passphrase, for reading files made with ``age -p`` (scrypt stanzas).

    ``max_work_factor`` bounds the CPU and memory a file can make us spend (2**22 × 1 KiB
    = 4 GiB at the default, age's own limit).
    """

    __slots__ = ("_passphrase", "max_work_factor")

    def __init__(self, passphrase: str | bytes, max_work_factor: int = 22) -> None:
        self._passphrase = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
        self.max_work_factor = max_work_factor

    def __repr__(self) -> str:
        return "ScryptIdentity(<passphrase>)"

    def unwrap(self, stanzas: list[Stanza]) -> bytes | None:
        ours = [s for s in stanzas if s.type == "scrypt"]
        if not ours:
            return None
        if len(stanzas) != 1:
            raise AgeHeaderError("an scrypt stanza must be the only stanza in the header")
        s = ours[0]
        if len(s.args) != 3:
            raise AgeHeaderError("invalid scrypt stanza: expected exactly two arguments")
        salt = _b64decode(s.args[1].encode("ascii"), "scrypt stanza salt")
        if len(salt) != 16:
            raise AgeHeaderError("invalid scrypt stanza: the salt is not 16 bytes")
        if not _DECIMAL.fullmatch(s.args[2]):
            raise AgeHeaderError("invalid scrypt stanza: malformed work factor")
        log_n = int(s.args[2])
        if log_n > self.max_work_factor:
            raise AgeHeaderError(
                f"scrypt work factor 2**{log_n} exceeds the limit 2**{self.max_work_factor}"
            )
        if len(s.body) != FILE_KEY_SIZE + TAG_SIZE:
            raise AgeHeaderError("invalid scrypt stanza: the body is not a 16-byte file key")
        wrap_key = Scrypt(salt=_SCRYPT_LABEL + salt, length=32, n=1 << log_n, r=8, p=1).derive(
            self._passphrase
        )
        return _unwrap_file_key(wrap_key, s.body)


class Identity(Protocol):
    def unwrap(self, stanzas: list[Stanza]) -> bytes | None: ...


RecipientLike = X25519Recipient | str
IdentityLike = X25519Identity | ScryptIdentity | Identity | str


def parse_recipient(s: str) -> X25519Recipient:
    """Parse an ``age1…`` X25519 recipient."""
    try:
        hrp, data = bech32.decode(s)
    except bech32.Bech32Error as e:
        raise AgeError(f"malformed age recipient: {e}") from None
    if hrp != _RECIPIENT_HRP:
        if hrp.lower().startswith("age1"):
            raise AgeError(f"unsupported recipient type {hrp!r} (only X25519 age1… keys)")
        raise AgeError("not an age X25519 recipient (expected lowercase age1…)")
    if len(data) != 32:
        raise AgeError("malformed age recipient: wrong key length")
    return X25519Recipient(data)


def parse_identity(s: str) -> X25519Identity:
    """Parse an ``AGE-SECRET-KEY-1…`` X25519 identity."""
    if s.upper().startswith("AGE-SECRET-KEY-PQ-"):
        raise AgeError("unsupported identity type: post-quantum (AGE-SECRET-KEY-PQ-1…)")
    if s.upper().startswith("AGE-PLUGIN-"):
        raise AgeError("unsupported identity type: age plugin identity")
    try:
        hrp, data = bech32.decode(s)
    except bech32.Bech32Error as e:
        raise AgeError(f"malformed age identity ({e}); an identity file holds "
                       "AGE-SECRET-KEY-1... lines, as age-keygen writes them") from None
    if hrp != _IDENTITY_HRP:
        raise AgeError("not an age X25519 identity (expected uppercase AGE-SECRET-KEY-1…)")
    if len(data) != 32:
        raise AgeError("malformed age identity: wrong key length")
    return X25519Identity(data)


def generate_identity() -> X25519Identity:
    return X25519Identity.generate()


def load_identities(path: str | os.PathLike[str]) -> list[X25519Identity]:
    """Read an identity file as ``age-keygen`` writes it: keys, ``#`` comments, blanks.

    ``OSError`` propagates; format problems raise `AgeError` naming the file and line.
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise AgeError(f"{path}: not a text identity file") from None
    identities = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(parse_identity(line))
        except AgeError as e:
            raise AgeError(f"{path}:{lineno}: {e}") from None
    if not identities:
        raise AgeError(f"{path}: no identities found")
    return identities


def recipient_fingerprint(r: RecipientLike | X25519Identity) -> str:
    """A short, stable, public id of a recipient (the first 16 hex digits of SHA-256 of
    its ``age1…`` string); for an identity, that of its recipient."""
    if isinstance(r, X25519Identity):
        r = r.recipient
    elif isinstance(r, str):
        r = parse_recipient(r)
    return hashlib.sha256(str(r).encode("ascii")).hexdigest()[:16]


def _as_recipients(recipients: Iterable[RecipientLike]) -> list[X25519Recipient]:
    if isinstance(recipients, (str, X25519Recipient)):
        recipients = [recipients]
    out = [parse_recipient(r) if isinstance(r, str) else r for r in recipients]
    if not out:
        raise AgeError("at least one recipient is required")
    return out


def _as_identities(identities: Iterable[IdentityLike]) -> list[Identity]:
    if isinstance(identities, (str, X25519Identity, ScryptIdentity)):
        identities = [identities]
    return [parse_identity(i) if isinstance(i, str) else i for i in identities]


# --- header -----------------------------------------------------------------------------


def _header_mac_key(file_key: bytes) -> bytes:
    return _hkdf(file_key, b"", b"header")


def _payload_aead(file_key: bytes, nonce: bytes) -> ChaCha20Poly1305:
    return ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))


def _chunk_nonce(counter: int, last: bool) -> bytes:
    if counter >= _MAX_COUNTER - 1:
        raise AgeError("the age STREAM chunk counter would overflow")
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class _LineTooLong(Exception):
    pass


class _Source:
    """Read-ahead over a binary stream: lines for the header, exact reads after it."""

    _BLOCK = 16 * 1024

    def __init__(self, raw: BinaryIO | _ArmorDecoder) -> None:
        self._raw = raw
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._readinto = getattr(raw, "readinto", None)

    def _avail(self) -> int:
        return len(self._buf) - self._pos

    def _more(self) -> bool:
        if self._eof:
            return False
        data = self._raw.read(self._BLOCK)
        if not data:
            self._eof = True
            return False
        self._buf = self._buf[self._pos :] + bytes(data)
        self._pos = 0
        return True

    def peek(self, n: int) -> bytes:
        while self._avail() < n and self._more():
            pass
        return self._buf[self._pos : self._pos + n]

    def skip(self, n: int) -> None:
        self._pos += min(n, self._avail())

    def readline(self, limit: int) -> bytes:
        """A line with its ``\\n`` (at most ``limit`` bytes); at EOF whatever is left."""
        while True:
            i = self._buf.find(b"\n", self._pos, self._pos + limit)
            if i >= 0:
                line = self._buf[self._pos : i + 1]
                self._pos = i + 1
                return line
            if self._avail() >= limit:
                raise _LineTooLong
            if not self._more():
                line = self._buf[self._pos :]
                self._pos = len(self._buf)
                return line

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes, fewer only at EOF."""
        while self._avail() < n and self._more():
            pass
        data = self._buf[self._pos : self._pos + n]
        self._pos += len(data)
        return data

    def readinto_full(self, mv: memoryview) -> int:
        """Fill ``mv`` completely unless EOF comes first; return the count."""
        n = 0
        if self._avail():
            n = min(len(mv), self._avail())
            mv[:n] = self._buf[self._pos : self._pos + n]
            self._pos += n
            if not self._avail():
                self._buf, self._pos = b"", 0
        while n < len(mv) and not self._eof:
            if self._readinto is not None:
                got = self._readinto(mv[n:])
            else:
                data = self._raw.read(len(mv) - n)
                got = len(data) if data else 0
                mv[n : n + got] = data or b""
            if not got:
                self._eof = True
                break
            n += got
        return n


class _ArmorDecoder:
    """Strict reader of the PEM-like armor (RFC 7468 strict, label AGE ENCRYPTED FILE).

    Accepts LF or CRLF, whitespace before and after the block, and nothing else: no
    headers, no blank lines, every data line 64 columns but the last, padded canonical
    base64. Yields the binary age file.
    """

    def __init__(self, src: _Source) -> None:
        self._src = src
        self._started = False
        self._done = False
        self._pending = b""

    def _line(self, what: str) -> bytes:
        try:
            line = self._src.readline(80)
        except _LineTooLong:
            raise AgeArmorError("armor: line longer than 64 columns") from None
        if not line:
            raise AgeArmorError(f"armor: file ends before the {what}")
        if line.endswith(b"\n"):
            line = line[:-1]
            if line.endswith(b"\r"):
                line = line[:-1]
        return line

    def _start(self) -> None:
        skipped = 0
        while True:
            c = self._src.peek(1)
            if not c or c not in _WHITESPACE:
                break
            self._src.skip(1)
            skipped += 1
            if skipped > _ARMOR_MAX_WHITESPACE:
                raise AgeArmorError("armor: too much leading whitespace")
        if self._line("BEGIN line") != _ARMOR_BEGIN:
            raise AgeArmorError("armor: the first line is not -----BEGIN AGE ENCRYPTED FILE-----")
        self._started = True

    def _finish(self) -> None:
        trailing = self._src.read(_ARMOR_MAX_WHITESPACE + 1)
        if trailing.strip(_WHITESPACE):
            raise AgeArmorError("armor: data after the END line")
        if len(trailing) > _ARMOR_MAX_WHITESPACE:
            raise AgeArmorError("armor: too much trailing whitespace")
        self._done = True

    def _next(self) -> bytes:
        if not self._started:
            self._start()
        line = self._line("END line")
        if line == _ARMOR_END:
            self._finish()
            return b""
        if not line:
            raise AgeArmorError("armor: empty line")
        if len(line) > _COLUMNS:
            raise AgeArmorError("armor: line longer than 64 columns")
        if len(line) % 4 or not _B64_PADDED.fullmatch(line):
            raise AgeArmorError("armor: invalid base64")
        data = binascii.a2b_base64(line)
        if base64.b64encode(data) != line:
            raise AgeArmorError("armor: non-canonical base64")
        if len(line) < _COLUMNS or line.endswith(b"="):
            if self._line("END line") != _ARMOR_END:
                raise AgeArmorError("armor: a short line that is not followed by the END line")
            self._finish()
        return data

    def read(self, n: int) -> bytes:
        parts = [self._pending]
        have = len(self._pending)
        while have < n and not self._done:
            data = self._next()
            parts.append(data)
            have += len(data)
        data = b"".join(parts)
        self._pending = data[n:]
        return data[:n]


def _open_source(raw: BinaryIO) -> _Source:
    """Binary age files start with the version line; anything else must be armor."""
    src = _Source(raw)
    head = src.peek(len(_VERSION_PREFIX))
    if _VERSION_PREFIX.startswith(head):
        return src
    return _Source(_ArmorDecoder(src))


def _parse_header(src: _Source) -> tuple[list[Stanza], bytes, bytes]:
    """Return ``(stanzas, the MAC'd bytes, mac)``."""
    header = bytearray()

    def line() -> bytes:
        try:
            data = src.readline(_MAX_HEADER_SIZE - len(header))
        except _LineTooLong:
            raise AgeHeaderError("header too large") from None
        if not data.endswith(b"\n"):
            raise AgeHeaderError("header truncated" if data or header else "empty file")
        header.extend(data)
        return data[:-1]

    version = line()
    if not version.startswith(_VERSION_PREFIX):
        raise AgeHeaderError("not an age file (no age-encryption.org/ version line)")
    if version + b"\n" != VERSION_LINE:
        raise AgeHeaderError("unsupported age format version")

    stanzas: list[Stanza] = []
    while True:
        text = line()
        if text.startswith(b"--- "):
            if not stanzas:
                raise AgeHeaderError("header has no recipient stanzas")
            mac = _b64decode(text[4:], "header MAC")
            if len(mac) != 32:
                raise AgeHeaderError("header MAC: wrong length")
            return stanzas, bytes(header[: len(header) - len(text) - 1 + 3]), mac
        if not text.startswith(b"-> "):
            raise AgeHeaderError("malformed header: expected a stanza (->) or the MAC (---)")
        args = text[3:].split(b" ")
        if not all(_VCHAR_ARG.fullmatch(a) for a in args):
            raise AgeHeaderError("malformed stanza: empty argument or invalid character")
        body_lines = []
        while True:
            b = line()
            if len(b) > _COLUMNS:
                raise AgeHeaderError("malformed stanza: body line longer than 64 columns")
            body_lines.append(b)
            if len(b) < _COLUMNS:
                break
        body = _b64decode(b"".join(body_lines), "stanza body")
        stanzas.append(Stanza(tuple(a.decode("ascii") for a in args), body))


def _read_header(src: _Source, ids: list[Identity]) -> tuple[ChaCha20Poly1305, int]:
    """Parse the header at the start of ``src``, unwrap the file key with the first identity
    that can, check the header MAC and read the payload nonce. Returns the payload's AEAD and
    the header's length with the nonce: where the first STREAM chunk starts (agerange.py)."""
    stanzas, header, mac = _parse_header(src)
    file_key = None
    for identity in ids:
        file_key = identity.unwrap(stanzas)
        if file_key is not None:
            break
    if file_key is None:
        types = ", ".join(sorted({s.type for s in stanzas}))
        raise AgeNoMatchError(
            f"no identity matched any of the file's {len(stanzas)} recipient stanza(s) "
            f"(types: {types}; {len(ids)} identit{'y' if len(ids) == 1 else 'ies'} tried)"
        )
    if len(file_key) != FILE_KEY_SIZE:
        raise AgeHeaderError("unwrapped file key is not 16 bytes")
    h = hmac.HMAC(_header_mac_key(file_key), hashes.SHA256())
    h.update(header)
    try:
        h.verify(mac)
    except InvalidSignature:
        raise AgeMACError("header MAC mismatch: the header was modified") from None
    nonce = src.read(_NONCE_SIZE)
    if len(nonce) != _NONCE_SIZE:
        raise AgeHeaderError("file ends inside the payload nonce")
    # what _parse_header consumed: the MAC'd bytes, then " " + the canonical MAC + "\n"
    length = len(header) + 1 + len(_b64encode(mac)) + 1 + _NONCE_SIZE
    return _payload_aead(file_key, nonce), length


# --- writer -----------------------------------------------------------------------------


class AgeWriter:
    """Encrypt a stream to one or more recipients, writing the age file to ``sink``.

    Feed it with `write` in any sizes; `close` writes the final chunk (the file is only
    valid after it) but leaves ``sink`` open. Used as a context manager, an exception
    inside the block aborts instead, so an interrupted stream never ends in a valid file.
    ``bytes_written`` counts the ciphertext bytes given to ``sink`` so far.
    """

    def __init__(self, sink: BinaryIO, recipients: Iterable[RecipientLike]) -> None:
        self._sink = sink
        file_key = os.urandom(FILE_KEY_SIZE)
        stanzas = [r.wrap(file_key) for r in _as_recipients(recipients)]
        header = VERSION_LINE + b"".join(s.encode() for s in stanzas) + b"---"
        h = hmac.HMAC(_header_mac_key(file_key), hashes.SHA256())
        h.update(header)
        nonce = os.urandom(_NONCE_SIZE)
        # what precedes the payload's chunks: the header and the payload nonce
        self.prefix = header + b" " + _b64encode(h.finalize()) + b"\n" + nonce
        self._header: bytes | None = self.prefix
        self._aead = _payload_aead(file_key, nonce)
        self._buf = bytearray(CHUNK_SIZE)
        self._fill = 0
        self._counter = 0
        self.bytes_written = 0
        self.closed = False

    def _emit(self, data: bytes) -> None:
        try:
            n = self._sink.write(data)
            if n is not None and n < len(data):  # a raw sink took part of it
                view = memoryview(data)[n:]
                while view:
                    n = self._sink.write(view)
                    if n is None:  # file-likes that return nothing wrote everything
                        break
                    if n == 0:
                        raise OSError("age output sink accepted no data")
                    view = view[n:]
        except BaseException:
            self.abort()  # the stream has a hole: never let close() finish it
            raise
        self.bytes_written += len(data)

    def _seal(self, plaintext: bytearray | memoryview, last: bool) -> None:
        nonce = _chunk_nonce(self._counter, last)
        self._counter += 1
        if not _AEAD_TAKES_BUFFERS:
            plaintext = bytes(plaintext)
        # A fresh bytes object per chunk: sinks may keep what they are given.
        self._emit(self._aead.encrypt(nonce, plaintext, None))

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self.closed:
            raise ValueError("write to a closed AgeWriter")
        if self._header is not None:
            self._emit(self._header)
            self._header = None
        mv = memoryview(data).cast("B")
        n = len(mv)
        pos = 0
        while pos < n:
            # A full buffered chunk is sealed only once more data proves it is not last.
            if self._fill == CHUNK_SIZE:
                self._seal(self._buf, last=False)
                self._fill = 0
            if self._fill == 0 and n - pos > CHUNK_SIZE:
                self._seal(mv[pos : pos + CHUNK_SIZE], last=False)
                pos += CHUNK_SIZE
                continue
            take = min(CHUNK_SIZE - self._fill, n - pos)
            self._buf[self._fill : self._fill + take] = mv[pos : pos + take]
            self._fill += take
            pos += take
        return n

    def flush(self) -> None:
        """Flush ``sink``; the partial chunk stays buffered (STREAM seals whole chunks)."""
        flush = getattr(self._sink, "flush", None)
        if flush is not None:
            flush()

    def close(self) -> None:
        """Write the final chunk (and the header if nothing was written). Idempotent."""
        if self.closed:
            return
        if self._header is not None:
            self._emit(self._header)
            self._header = None
        self._seal(memoryview(self._buf)[: self._fill], last=True)
        self.closed = True
        self._buf = bytearray()

    def abort(self) -> None:
        """Stop without the final chunk: what was written is not a valid age file."""
        self.closed = True
        self._buf = bytearray()

    def __enter__(self) -> AgeWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# --- reader -----------------------------------------------------------------------------


class AgeReader(io.RawIOBase):
    """Decrypt an age file (binary or armored) from ``src`` with the first identity that
    matches. The header is read and checked in the constructor, which raises
    `AgeHeaderError`, `AgeNoMatchError`, `AgeMACError` or `AgeArmorError`.

    `read` and `readinto` return plaintext only from authenticated chunks; a damaged,
    truncated or extended payload raises `AgePayloadError` once the good data before it
    has been returned. Closing the reader does not close ``src``.
    """

    def __init__(self, src: BinaryIO, identities: Iterable[IdentityLike]) -> None:
        super().__init__()
        self._src = _open_source(src)
        self._aead, _ = _read_header(self._src, _as_identities(identities))
        self._ct = bytearray(_ENC_CHUNK_SIZE)
        self._ct_view = memoryview(self._ct)
        self._plain = memoryview(b"")
        self._counter = 0
        self._eof = False
        self._error: AgeError | None = None

    def readable(self) -> bool:
        return True

    def _open_chunk(self, data: memoryview, last: bool, dest: memoryview | None) -> memoryview:
        nonce = _chunk_nonce(self._counter, last)
        if dest is not None:
            self._aead.decrypt_into(nonce, data, None, dest[: len(data) - TAG_SIZE])
            return dest[: len(data) - TAG_SIZE]
        return memoryview(self._aead.decrypt(nonce, data, None))

    def _next_chunk(self, dest: memoryview | None = None) -> memoryview | None:
        """Decrypt the next chunk (into ``dest`` when given, which must hold a full chunk).

        Returns ``None`` at the proven end of the file; raises on failure.
        """
        if self._error is not None:
            raise self._error
        if self._eof:
            return None
        try:
            n = self._src.readinto_full(self._ct_view)
            if n == 0:
                raise AgePayloadError(
                    "payload truncated: no chunks" if self._counter == 0
                    else f"payload truncated after chunk {self._counter}: no final chunk"
                )
            data = self._ct_view[:n] if _AEAD_TAKES_BUFFERS else bytes(self._ct_view[:n])
            last = n < _ENC_CHUNK_SIZE
            if last and n <= TAG_SIZE and (n < TAG_SIZE or self._counter > 0):
                raise AgePayloadError(
                    f"chunk {self._counter} is truncated" if n < TAG_SIZE
                    else "final chunk is empty but the payload is not"
                )
            try:
                plain = self._open_chunk(data, last, dest)
            except InvalidTag:
                if last:
                    raise AgePayloadError(
                        f"chunk {self._counter} failed authentication (corrupted or truncated)"
                    ) from None
                try:  # a full-size final chunk
                    plain = self._open_chunk(data, True, dest)
                except InvalidTag:
                    raise AgePayloadError(
                        f"chunk {self._counter} failed authentication (corrupted)"
                    ) from None
                last = True
            self._counter += 1
            if last:
                # The final chunk's plaintext is authentic: hand it out, fail afterwards.
                try:
                    extra = self._src.read(1)
                except AgeError as e:
                    self._error = e
                else:
                    if extra:
                        self._error = AgePayloadError("trailing data after the final chunk")
                    else:
                        self._eof = True
            return plain
        except AgeError as e:
            self._error = e
            raise

    def readinto(self, b: bytearray | memoryview) -> int:
        if self.closed:
            raise ValueError("read from a closed AgeReader")
        out = memoryview(b).cast("B")
        n = 0
        while n < len(out):
            if not self._plain:
                room = out[n:]
                direct = _HAS_DECRYPT_INTO and len(room) >= CHUNK_SIZE
                try:
                    got = self._next_chunk(room if direct else None)
                except AgeError:
                    if n:
                        break  # hand out what we have; the (sticky) error comes next call
                    raise
                if got is None:
                    break
                if direct:
                    n += len(got)
                    continue
                self._plain = got
            take = min(len(self._plain), len(out) - n)
            out[n : n + take] = self._plain[:take]
            self._plain = self._plain[take:]
            n += take
        return n

    def read(self, n: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("read from a closed AgeReader")
        if n is None or n < 0:
            return self.readall()
        parts = []
        have = 0
        while have < n:
            if not self._plain:
                try:
                    got = self._next_chunk()
                except AgeError:
                    if have:
                        break  # the error is sticky: raised on the next call
                    raise
                if got is None:
                    break
                self._plain = got
            take = min(len(self._plain), n - have)
            parts.append(self._plain[:take])
            self._plain = self._plain[take:]
            have += take
        if len(parts) == 1 and isinstance(parts[0].obj, bytes):
            whole = parts[0].obj
            if len(whole) == len(parts[0]):
                return whole  # a whole decrypted chunk: no copy
        return b"".join(parts)

    def readall(self) -> bytes:
        parts = []
        while True:
            data = self.read(1 << 20)
            if not data:
                return b"".join(parts)
            parts.append(data)


# --- helpers ----------------------------------------------------------------------------


class _BytesSink:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.parts.append(bytes(data))
        return len(data)


def encrypt_bytes(data: bytes, recipients: Iterable[RecipientLike]) -> bytes:
    sink = _BytesSink()
    w = AgeWriter(sink, recipients)
    w.write(data)
    w.close()
    return b"".join(sink.parts)


def decrypt_bytes(data: bytes, identities: Iterable[IdentityLike]) -> bytes:
    return AgeReader(io.BytesIO(data), identities).read()
