"""Volumes bound together inside the data (issue 9, item 2).

Each volume's plaintext (what age encrypts) starts with a zstd *skippable frame* holding
the series, the snapshot id, the volume's number, its tar offset and the SHA-256 of the
previous volume's whole plaintext (which holds the header before it, so the hash covers
everything before this volume). The last volume ends with a second skippable frame, the
end marker, naming the number of volumes and the tar stream's length. Stock ``zstd -d``
skips both frames: ``for v in vol.*; do age -d -i key "$v"; done | zstd -d | tar -x``
still restores.

What it defends: volumes dropped, swapped, replayed (from this snapshot or another one)
or re-ordered by someone who can write to the destination, with the manifest fixed up to
match. Each of these breaks a number, a snapshot id, a hash or the end marker, and restore
and ``verify --download`` stop with an IntegrityError naming the volume. It does not stop
someone who writes a whole new snapshot (anyone can make age files for a public
recipient): that is what the manifest signature (odbackupd/signing.py) is for.
"""
from __future__ import annotations

import hashlib
import json
import struct
from typing import Any, BinaryIO

from .manifest import Manifest

MAGIC = 0x184D2A5B  # one of zstd's 16 skippable-frame magic numbers (0x184D2A50..5F)
FORMAT = "odbackupd-chain-v1"
ZERO = "0" * 64  # the "previous volume" of the first one
END_PAYLOAD = 256  # the end marker's payload is padded to this size, so it is found from the end
END_SIZE = 8 + END_PAYLOAD
MAX_HEADER = 4096


AGE_MAGIC = b"age-encryption.org/v1\n"


class FirstBytes:
    """A read-through wrapper that keeps a stream's first bytes (is it an age file?)."""

    def __init__(self, f: BinaryIO, n: int = len(AGE_MAGIC)) -> None:
        self._f, self._n, self.head = f, n, b""

    def read(self, size: int = -1) -> bytes:
        b = self._f.read(size)
        if len(self.head) < self._n:
            self.head += b[: self._n - len(self.head)]
        return b


def kind_problem(name: str, head: bytes, encrypted: bool) -> str | None:
    """Whether a stored volume is what the manifest says (an age file, or not)."""
    age = head.startswith(AGE_MAGIC)
    if encrypted and not age:
        return f"{name}: not an age file, though the manifest says the snapshot is encrypted"
    if not encrypted and age:
        return f"{name}: an age file, though the manifest says the snapshot is not encrypted"
    return None


class ChainError(ValueError):
    """A volume does not belong where the manifest puts it."""


def _frame(payload: bytes) -> bytes:
    return struct.pack("<II", MAGIC, len(payload)) + payload


def volume_header(series: str, snapshot: str, index: int, tar_start: int, prev: str) -> bytes:
    return _frame(json.dumps({
        "odbackupd": "volume", "format": FORMAT, "job": series, "snapshot": snapshot,
        "index": index, "tar_start": tar_start, "prev": prev,
    }, separators=(",", ":")).encode())


def end_marker(series: str, snapshot: str, volumes: int, tar_bytes: int) -> bytes:
    payload = json.dumps({
        "odbackupd": "end", "format": FORMAT, "job": series, "snapshot": snapshot,
        "volumes": volumes, "tar_bytes": tar_bytes,
    }, separators=(",", ":")).encode()
    if len(payload) > END_PAYLOAD:
        raise ValueError("series or snapshot name too long for the end marker")
    return _frame(payload.ljust(END_PAYLOAD))


def manifest_field() -> dict[str, Any]:
    return {"format": FORMAT}


def _parse_end(tail: bytes) -> dict | None:
    if len(tail) < END_SIZE:
        return None
    frame = tail[-END_SIZE:]
    magic, size = struct.unpack("<II", frame[:8])
    if magic != MAGIC or size != END_PAYLOAD:
        return None
    try:
        d = json.loads(frame[8:])
    except ValueError:
        return None
    return d if isinstance(d, dict) and d.get("odbackupd") == "end" else None


class _VolumeReader:
    """A volume's plaintext for the decompressor, after its header; hashes all of it."""

    def __init__(self, f: BinaryIO, name: str) -> None:
        self._f = f
        self.name = name
        self.sha = hashlib.sha256()
        self.tail = b""
        self.header: dict | None = None
        self._pushback = b""
        first = self._take(8)
        if len(first) == 8 and struct.unpack("<I", first[:4])[0] == MAGIC:
            size = struct.unpack("<I", first[4:])[0]
            if size > MAX_HEADER:
                raise ChainError(
                    f"{name}: its volume header is {size} bytes long (damaged or not ours)"
                )
            payload = self._take(size)
            try:
                h = json.loads(payload)
            except ValueError as e:
                raise ChainError(f"{name}: its volume header does not parse ({e})") from None
            if isinstance(h, dict) and h.get("odbackupd") == "volume":
                self.header = h
            else:
                self._pushback = first + payload  # someone else's skippable frame: zstd skips it
        else:
            self._pushback = first

    def _take(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            b = self._f.read(n - len(out))
            if not b:
                break
            out += b
        self._seen(out)
        return out

    def _seen(self, b: bytes) -> None:
        self.sha.update(b)
        self.tail = (self.tail + b)[-END_SIZE:]

    def read(self, n: int = -1) -> bytes:
        if self._pushback:
            b, self._pushback = (self._pushback, b"") if n < 0 or n >= len(self._pushback) else \
                (self._pushback[:n], self._pushback[n:])
            return b
        b = self._f.read(n)
        self._seen(b)
        return b

    def readinto(self, buf) -> int:  # noqa: ANN001
        b = self.read(len(buf))
        buf[: len(b)] = b
        return len(b)

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    def close(self) -> None:
        pass

    @property
    def closed(self) -> bool:
        return False

    def readable(self) -> bool:
        return True


class ChainChecker:
    """Checks, volume by volume, that the stream is the one the manifest describes."""

    def __init__(self, manifest: Manifest, first: int = 0) -> None:
        """``first``: how many volumes come before the first one read (a partial read,
        snapshot/view.py): the first one's link to the volume before it cannot be checked
        (its SHA-256 against the manifest is what binds it), every later one's is; its
        number, snapshot and tar offset are checked as for a whole read."""
        self.m = manifest
        self.required = bool(manifest.chain)
        self.position = first
        self.prev: str | None = ZERO if first == 0 else None
        self.end: dict | None = None
        self.headers = 0
        self._cur: _VolumeReader | None = None

    def open(self, vol: dict, f: BinaryIO) -> BinaryIO:
        """Wrap volume ``vol``'s plaintext (decrypted) before it is decompressed."""
        self.position += 1
        name = vol["name"]
        if self.end is not None:
            raise ChainError(f"{name}: comes after the snapshot's end marker "
                             f"(volume {self.end.get('volumes')}); "
                             "volumes were added or re-ordered")
        r = _VolumeReader(f, name)
        h = r.header
        if h is None:
            if self.required or self.headers:
                raise ChainError(f"{name}: has no volume header, though the snapshot's volumes "
                                 "carry one (replaced by a volume not made for this snapshot)")
        else:
            self.headers += 1
            if h.get("snapshot") != self.m.snapshot or h.get("job") != self.m.job:
                raise ChainError(f"{name}: belongs to snapshot {h.get('job')}/{h.get('snapshot')}, "
                                 f"not {self.m.job}/{self.m.snapshot} "
                                 "(a volume replayed from another snapshot)")
            if h.get("index") != self.position:
                raise ChainError(f"{name}: is volume {h.get('index')} of the snapshot but stands "
                                 f"at place {self.position} "
                                 "(volumes dropped, swapped, duplicated or re-ordered)")
            if "tar_start" in vol and h.get("tar_start") != vol["tar_start"]:
                raise ChainError(f"{name}: its volume header puts it at archive offset "
                                 f"{h.get('tar_start')}, the manifest at {vol['tar_start']} "
                                 "(a volume re-ordered or replaced)")
            if self.prev is not None and h.get("prev") != self.prev:
                raise ChainError(f"{name}: does not follow the volume before it (hash chain "
                                 "broken: a volume before it was dropped or replaced)")
        self._cur = r
        return r  # type: ignore[return-value]

    def close_volume(self) -> None:
        """The decompressor reached the volume's end: read what is left, note its hash."""
        r, self._cur = self._cur, None
        if r is None:
            return
        r.drain()
        self.prev = r.sha.hexdigest()
        end = _parse_end(r.tail) if r.header is not None else None
        if end is not None:
            if end.get("snapshot") != self.m.snapshot or end.get("job") != self.m.job:
                raise ChainError(
                    f"{r.name}: its end marker belongs to snapshot {end.get('snapshot')}"
                )
            self.end = end

    def finish(self, tar_bytes: int) -> None:
        """Every volume is read: the last one must have carried the end marker."""
        if not self.headers:
            return  # a snapshot made before volumes carried headers
        if self.end is None:
            raise ChainError(
                f"the snapshot ends after volume {self.position} without its end marker: "
                "volumes are missing at the end (dropped, with the manifest fixed up)")
        if self.end.get("volumes") != self.position:
            raise ChainError(f"the end marker says {self.end.get('volumes')} volumes, "
                             f"{self.position} were read")
        if self.end.get("tar_bytes") != tar_bytes:
            raise ChainError(f"the end marker says {self.end.get('tar_bytes')} archive bytes, "
                             f"{tar_bytes} were read")
