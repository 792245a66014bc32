"""Reading a snapshot's tar stream strictly: damage is never taken for the end of the archive.

Python's tarfile stops quietly at a header that does not parse (after the first) and
ignores whatever follows the end-of-archive marker; for a restore that would be the rest
of the snapshot missing with exit 0. Here both are :class:`IntegrityError`. restore and
``verify --download`` read through the same functions.
"""
from __future__ import annotations

import tarfile
from collections.abc import Iterator
from typing import BinaryIO

from .restore_errors import IntegrityError


class _StrictTarInfo(tarfile.TarInfo):
    """A header that does not parse after the first is damage, not the end of the archive
    (tarfile's default: the rest of the snapshot would be silently dropped)."""

    @classmethod
    def fromtarfile(cls, tf: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tf)
        except (tarfile.InvalidHeaderError, tarfile.TruncatedHeaderError) as e:
            raise tarfile.SubsequentHeaderError(
                f"bad header at archive offset {tf.offset}: {e}"
            ) from None
        except tarfile.EmptyHeaderError:
            raise tarfile.SubsequentHeaderError(
                f"the archive ends at offset {tf.offset} "
                "without its end-of-archive blocks (truncated)"
            ) from None


def open_tar(stream: BinaryIO) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=stream, mode="r|", encoding="utf-8", errors="surrogateescape",
                            tarinfo=_StrictTarInfo)
    except tarfile.TarError as e:
        raise IntegrityError(f"not a tar stream: {e}") from e


def read_members(tf: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """Every member, then a check that only zeros follow the end-of-archive marker."""
    while True:
        try:
            ti = tf.next()
        except tarfile.TarError as e:
            raise IntegrityError(f"corrupt tar stream: {e}") from e
        except (ValueError, OverflowError) as e:  # malformed numbers in PAX records
            raise IntegrityError(f"corrupt tar header at archive offset {tf.offset}: {e}") from e
        if ti is None:
            break
        tf.members.clear()  # stream mode: keep memory flat
        yield ti
    end = tf.offset
    while True:
        b = tf.fileobj.read(1 << 20)  # type: ignore[union-attr]
        if not b:
            return
        if b.count(0) != len(b):
            raise IntegrityError(f"the archive's end-of-archive marker at offset {end} is "
                                 "followed by more data: a damaged header; "
                                 "the members after it were not read")


