"""Random access to one encrypted volume on a destination, pinned by its index.

The index records the SHA-256 of the volume's age header and payload nonce (frames.py).
The header is fetched first and checked against it: it determines the file key, so every
STREAM chunk that then authenticates (crypto/agerange.py) is the one this volume was built
with, at its place. A volume replaced by one encrypted anew to the same recipient has
another header and is refused before anything of it is used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from ..crypto.age import AgeError, AgeNoMatchError
from ..destinations.base import Destination
from .frames import FrameTable
from .manifest import Manifest
from .restore_errors import IntegrityError, RestoreError, WrongIdentity


class AgeVolume:
    """Plaintext ranges of one encrypted volume; ``fetched``: stored bytes read so far."""

    def __init__(self, dest: Destination, m: Manifest, vol: dict, table: FrameTable,
                 identities: Sequence[object] | None) -> None:
        from ..crypto.agerange import AgeRange

        self.name = f"{m.snapshot}/{vol['name']}"
        if not identities:
            raise RestoreError("this snapshot is encrypted: give the identity file with --identity")
        self.fetched = 0

        def fetch(start: int, length: int) -> bytes:
            data = dest.read_range(m.location, m.snapshot, vol["name"], start, length)
            self.fetched += len(data)
            return data

        start = table.age_payload_start or 0
        prefix = fetch(0, start)
        if hashlib.sha256(prefix).hexdigest() != table.age_prefix_sha256:
            raise IntegrityError(f"{self.name}: its age header is not the one the index names "
                                 "(the volume was replaced)")

        def after_prefix(at: int, length: int) -> bytes:
            if at + length <= len(prefix):
                return prefix[at : at + length]
            return fetch(at, length)

        try:
            self._r = AgeRange(after_prefix, int(vol["size"]), list(identities),
                               payload_start=start)
        except AgeNoMatchError as e:
            raise WrongIdentity(f"{vol['name']}: none of the --identity keys opens it ({e})"
                                ) from e
        except AgeError as e:
            raise IntegrityError(f"{self.name}: not a readable age file: {e}") from e
        if self._r.payload_start != start:
            raise IntegrityError(f"{self.name}: its age header is not the one the index names")

    def read(self, start: int, length: int) -> bytes:
        try:
            return self._r.read(start, length)
        except AgeError as e:
            raise IntegrityError(f"{self.name}: {e}") from e
