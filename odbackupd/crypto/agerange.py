"""Random access into one age file: plaintext bytes ``[a, a+n)`` from two reads of the
stored file, so that restoring one file needs a few MiB of a volume, not all of it (issue 11).

An age payload is STREAM: chunks of 64 KiB of plaintext, each sealed with its own 16-byte
tag under the nonce (chunk counter, last-chunk flag), so any chunk opens on its own once the
header has given the payload key. `AgeRange` reads and checks the header once, with age.py's
parser and the same checks as `AgeReader` (identities, header MAC, payload nonce); then each
`AgeRange.read` fetches, in one call, exactly the chunks that cover the range and
authenticates every one of them before any of its plaintext is returned.

What a read proves: that each chunk it covers is the one written at that position of this
file, opened with the right last-chunk flag (a changed, moved or swapped chunk fails its
tag). The stored size says which chunk is the last one; a file cut or extended at a chunk
boundary therefore fails only when a read covers its (new) last chunk. Reads elsewhere say
nothing about chunks they do not cover: the caller checks what it reads against the
index's SHA-256 of the frame as well. Binary age files only (our volumes); armor has no
byte offsets to seek to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from cryptography.exceptions import InvalidTag

from .age import (
    _AEAD_TAKES_BUFFERS,
    CHUNK_SIZE,
    TAG_SIZE,
    AgeError,
    AgeHeaderError,
    AgePayloadError,
    IdentityLike,
    _as_identities,
    _chunk_nonce,
    _read_header,
    _Source,
)

__all__ = ["FIRST_SLICE", "AgeRange", "Fetch"]

#: ``fetch(start, length) -> bytes``: that many bytes of the stored age file from ``start``
#: (``Destination.read_range`` bound to one object, or ``os.pread`` on a file).
Fetch = Callable[[int, int], bytes]

#: The first read of the header: an X25519 stanza is ~110 bytes, so this holds ~35 of them.
FIRST_SLICE = 4096

_ENC_CHUNK = CHUNK_SIZE + TAG_SIZE


def _fetch_exact(fetch: Fetch, start: int, length: int, err: type[AgeError]) -> bytes:
    data = fetch(start, length)
    if len(data) != length:
        raise err(f"the age file gave {len(data)} bytes at offset {start} where {length} "
                  "were asked for: it is shorter than its stored size says (truncated?)")
    return data


class _Slices:
    """The stored file from its start as a stream for age.py's header parser: the first
    read fetches ``first`` bytes, each later one twice as many as the one before (any
    ``n`` asked for is only a hint, which ``_Source`` allows), never beyond ``size``."""

    def __init__(self, fetch: Fetch, size: int, first: int) -> None:
        self._fetch, self._size, self._want, self._pos = fetch, size, max(1, first), 0

    def read(self, n: int) -> bytes:
        take = min(self._want, self._size - self._pos)
        if take <= 0:
            return b""
        data = _fetch_exact(self._fetch, self._pos, take, AgeHeaderError)
        self._pos += take
        self._want *= 2
        return data


class AgeRange:
    """Plaintext ranges of one binary age file of ``size`` stored bytes, read through
    ``fetch``. The constructor reads the header (``payload_start`` bytes: give that back
    as ``payload_start=`` the next time to fetch exactly it in one read) and raises
    `AgeHeaderError`, `AgeNoMatchError`, `AgeMACError`, or `AgePayloadError` when the
    stored size cannot be a STREAM payload. ``plain_size`` is the plaintext's length.
    Whatever ``fetch`` raises (a DestinationError) goes up unchanged; a fetch that returns
    fewer bytes than asked is a short file: `AgeHeaderError` or `AgePayloadError`."""

    def __init__(self, fetch: Fetch, size: int, identities: Iterable[IdentityLike], *,
                 payload_start: int | None = None) -> None:
        if size < 0:
            raise ValueError(f"negative age file size {size}")
        self._fetch = fetch
        self.size = size
        source = _Source(_Slices(fetch, size, payload_start or FIRST_SLICE))
        self._aead, self.payload_start = _read_header(source, _as_identities(identities))
        payload = size - self.payload_start
        self.chunks = -(-payload // _ENC_CHUNK)
        if self.chunks == 0:
            raise AgePayloadError("payload truncated: no chunks")
        final = payload - (self.chunks - 1) * _ENC_CHUNK
        if final < TAG_SIZE:
            raise AgePayloadError(f"chunk {self.chunks - 1} is truncated")
        if final == TAG_SIZE and self.chunks > 1:
            raise AgePayloadError("final chunk is empty but the payload is not")
        self.plain_size = payload - self.chunks * TAG_SIZE

    def stored_range(self, plain_start: int, plain_length: int) -> tuple[int, int]:
        """``(start, length)`` of the stored bytes (whole chunks) that hold the plaintext
        range; ``ValueError`` for a negative one, `AgePayloadError` for one past the end."""
        if plain_start < 0 or plain_length < 0:
            raise ValueError(f"negative range {plain_start}+{plain_length}")
        if plain_start + plain_length > self.plain_size:
            raise AgePayloadError(
                f"plaintext bytes {plain_start}-{plain_start + plain_length - 1} are beyond "
                f"the end of the age payload ({self.plain_size} bytes)")
        if not plain_length:
            return self.payload_start, 0
        first = plain_start // CHUNK_SIZE
        stop = (plain_start + plain_length - 1) // CHUNK_SIZE + 1
        start = self.payload_start + first * _ENC_CHUNK
        return start, min(self.payload_start + stop * _ENC_CHUNK, self.size) - start

    def read(self, plain_start: int, plain_length: int) -> bytes:
        """The plaintext bytes ``[plain_start, plain_start + plain_length)``: one fetch of
        the chunks that hold them, each authenticated (`AgePayloadError` if one fails)."""
        start, length = self.stored_range(plain_start, plain_length)
        if not length:
            return b""
        data = memoryview(_fetch_exact(self._fetch, start, length, AgePayloadError))
        first = (start - self.payload_start) // _ENC_CHUNK
        plain = bytearray()
        for at in range(0, length, _ENC_CHUNK):
            counter = first + at // _ENC_CHUNK
            sealed = data[at : at + _ENC_CHUNK]
            try:
                plain += self._aead.decrypt(
                    _chunk_nonce(counter, counter == self.chunks - 1),
                    sealed if _AEAD_TAKES_BUFFERS else bytes(sealed), None)
            except InvalidTag:
                raise AgePayloadError(
                    f"chunk {counter} failed authentication (corrupted, moved, or the file "
                    "was truncated or extended)") from None
        skip = plain_start - first * CHUNK_SIZE
        return bytes(memoryview(plain)[skip : skip + plain_length])
