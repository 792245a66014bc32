"""Landing a finished upload in a drop directory: atomic, never overwriting.

The upload was streamed into a partial file outside the drop directory on the same file
system and fsynced. :func:`land` renames it in with ``renameat2(RENAME_NOREPLACE)`` (the
kernel refuses with EEXIST instead of replacing, so a file the daemon has not stored yet is
never lost), tries ``name-2.ext``, ``name-3.ext``… on a clash, and fsyncs the directory (or,
in a write-only one, the file) so the new entry survives a crash. The daemon's drop watcher
sees one ``IN_MOVED_TO`` of a complete file. The intake needs no read permission on the drop
directory (mode 1730 is enough): it never lists it, only tries names.
"""
from __future__ import annotations

import ctypes
import errno
import os
import unicodedata
from pathlib import Path

from ..service.droppolicy import is_temporary_name

__all__ = ["MAX_NAME_BYTES", "land", "rename_noreplace", "sanitize_name"]

AT_FDCWD = -100
RENAME_NOREPLACE = 1
MAX_NAME_BYTES = 200  # leaves room for a clash suffix under NAME_MAX (255)
MAX_CLASH = 10000

_libc = ctypes.CDLL(None, use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)
if _renameat2 is not None:
    _renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                           ctypes.c_uint]
    _renameat2.restype = ctypes.c_int


def rename_noreplace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Rename *src* to *dst*, failing with FileExistsError if *dst* exists (atomically)."""
    if _renameat2 is None:  # glibc < 2.28
        raise OSError(errno.ENOSYS, "renameat2() is not available in this C library")
    if _renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), RENAME_NOREPLACE) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(dst))


def sanitize_name(raw: str) -> str:
    """A safe, final file name from what the client sent.

    Only the last path component counts (``../../etc/passwd`` -> ``passwd``; a browser's
    ``C:\\Users\\me\\x.txt`` -> ``x.txt``); control characters become ``_``; leading dots go
    (a hidden name would be taken for a temporary one and never stored), as does a
    temporary suffix (``.part``, ``.tmp``, ``~`` get a trailing ``_``); the length is capped;
    nothing left becomes ``upload``.
    """
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFC", name)
    name = "".join("_" if unicodedata.category(c)[0] == "C" else c for c in name)
    name = name.strip().lstrip(".").strip()
    if is_temporary_name(name):
        name += "_"
    encoded = name.encode("utf-8", "replace")
    if len(encoded) > MAX_NAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        keep_ext = "." + ext if dot and 0 < len(ext.encode()) <= 16 else ""
        budget = MAX_NAME_BYTES - len(keep_ext.encode())
        head = (stem if keep_ext else name).encode()[:budget].decode("utf-8", "ignore")
        name = head + keep_ext
    return name or "upload"


def _candidate(name: str, n: int) -> str:
    if n == 1:
        return name
    stem, dot, rest = name.partition(".")
    if not stem:  # cannot happen after sanitize_name, but never produce a hidden name
        return f"{name}-{n}"
    return f"{stem}-{n}{dot}{rest}"


def fsync_entry(directory: Path, name: str) -> None:
    """Make the new directory entry durable. fsync of the directory needs it opened for
    reading, which a write-only drop directory (mode 1730) refuses; then fsync the renamed
    file itself, which on ext4, XFS and btrfs also commits its rename (they journal it in
    the same transaction)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except PermissionError:
        fd = os.open(directory / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def land(partial: Path, drop_dir: Path, name: str) -> str:
    """Move the (fsynced) *partial* file into *drop_dir* as *name* or a free variant of it;
    returns the name it got. Nothing is ever replaced."""
    for n in range(1, MAX_CLASH + 1):
        final = _candidate(name, n)
        try:
            rename_noreplace(partial, drop_dir / final)
        except FileExistsError:
            continue
        fsync_entry(drop_dir, final)
        return final
    raise OSError(errno.EEXIST, f"{MAX_CLASH} files named like '{name}' are waiting", str(drop_dir))
