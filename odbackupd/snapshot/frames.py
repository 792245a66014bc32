"""The frame table of a volume: where each independent zstd frame of it is.

A volume's plaintext (what age encrypts; for an unencrypted volume, the file as stored) is
its chain header (a skippable frame, chain.py), then independent zstd frames of about
``FRAME_SIZE`` tar bytes each, then for the snapshot's last volume the end marker. A frame
decodes on its own, so a reader that wants one member of a 64 MiB volume fetches the few
MiB of the frames that hold it, not the volume (``odctl restore --path``, ``odctl mount``).

The table is recorded per volume while it is built (state database, so a resumed run keeps
it) and stored in the snapshot's index header (``incremental.py``), never in the plain-text
manifest: a frame's hash and length would let anyone holding a candidate file confirm that
an encrypted snapshot holds it.

What pins a partial read to the snapshot (the index is pinned by the manifest):
- unencrypted: the SHA-256 of every frame's bytes;
- encrypted: the SHA-256 of the volume's age header and payload nonce (``"a"``). The header
  determines the file key, and every 64 KiB STREAM chunk is authenticated under it with its
  position in the file, so a chunk that decrypts is the one this volume was built with.

JSON form (one per volume): ``{"z": offset of the first frame in the plaintext, "t":
base64 of the packed frames}`` plus, when encrypted, ``"a"`` (hex) and ``"p"`` (the
header's length: where the payload's chunks start). A packed frame is ``<II`` (tar bytes,
compressed bytes) followed, when unencrypted, by its 32-byte SHA-256.
"""

from __future__ import annotations

import base64
import bisect
import struct
from dataclasses import dataclass

# tar bytes per frame at most (a tar chunk that does not fit starts the next). Measured on
# the 1.1 GB bench tree against one zstd frame per volume (zstd's own workers): 1 MiB
# frames +3.2 % stored bytes, 2 MiB +1.7 %, 4 MiB +0.9 %, at the same CPU time. A one-file
# read fetches about one frame's compressed bytes.
FRAME_SIZE = 4 << 20

_PLAIN = struct.Struct("<II32s")
_AGE = struct.Struct("<II")


@dataclass(frozen=True)
class Frame:
    tar_start: int  # offset in the snapshot's tar stream of its first byte
    tar_len: int
    z_start: int  # offset in the volume's plaintext
    z_len: int
    sha256: bytes | None  # of its compressed bytes (unencrypted volumes)


@dataclass(frozen=True)
class FrameTable:
    """One volume's frames, in order."""

    frames: tuple[Frame, ...]
    age_prefix_sha256: str | None = None  # encrypted: SHA-256 of the age header + nonce
    age_payload_start: int | None = None

    def to_json(self) -> dict:
        encrypted = self.age_prefix_sha256 is not None
        packer = _AGE if encrypted else _PLAIN
        packed = b"".join(
            packer.pack(f.tar_len, f.z_len, *(() if encrypted else (f.sha256 or b"",)))
            for f in self.frames
        )
        out: dict = {"z": self.frames[0].z_start if self.frames else 0,
                     "t": base64.b64encode(packed).decode("ascii")}
        if encrypted:
            out["a"], out["p"] = self.age_prefix_sha256, self.age_payload_start
        return out

    @classmethod
    def from_json(cls, d: dict, tar_start: int) -> FrameTable:
        """The table of a volume whose first tar byte is ``tar_start``; ValueError (or
        TypeError/KeyError) for a malformed one."""
        encrypted = "a" in d
        packer = _AGE if encrypted else _PLAIN
        raw = base64.b64decode(d["t"], validate=True)
        if len(raw) % packer.size:
            raise ValueError("frame table length is not a whole number of frames")
        frames = []
        t, z = int(tar_start), int(d["z"])
        for fields in packer.iter_unpack(raw):
            tar_len, z_len = fields[0], fields[1]
            if tar_len <= 0 or z_len <= 0:
                raise ValueError("a frame of no bytes")
            frames.append(Frame(t, tar_len, z, z_len, None if encrypted else fields[2]))
            t += tar_len
            z += z_len
        if encrypted:
            sha, start = str(d["a"]), int(d["p"])
            if len(sha) != 64 or start <= 0:
                raise ValueError("bad age header pin")
            return cls(tuple(frames), sha, start)
        return cls(tuple(frames))

    @property
    def tar_end(self) -> int:
        return self.frames[-1].tar_start + self.frames[-1].tar_len if self.frames else 0

    def first_at(self, tar_offset: int) -> int:
        """The number of the frame holding ``tar_offset`` (which must be in this volume)."""
        starts = [f.tar_start for f in self.frames]
        i = bisect.bisect_right(starts, tar_offset) - 1
        if i < 0 or tar_offset >= self.tar_end:
            raise ValueError(f"tar offset {tar_offset} is not in this volume's frames")
        return i
