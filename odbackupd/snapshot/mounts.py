"""Is a source's filesystem there? An unmounted disk leaves an empty directory behind, and
an empty "successful" snapshot of it would count for retention and push the good ones out.

The rule is deterministic: a source below a mount point listed in ``/etc/fstab`` (the
longest such prefix) needs that mount point to be mounted now (``/proc/self/mountinfo``).
Swap, pseudo-filesystems and ``/`` are ignored.
"""
from __future__ import annotations

import os
from pathlib import Path

FSTAB = Path("/etc/fstab")
MOUNTINFO = Path("/proc/self/mountinfo")
_IGNORED_TYPES = {"swap", "none", "proc", "sysfs", "devpts", "tmpfs", "devtmpfs"}


def _unescape(field: str) -> str:
    """fstab and mountinfo write space, tab, newline and backslash as octal escapes."""
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            .replace("\\134", "\\"))


def fstab_mount_points(fstab: Path = FSTAB) -> set[str]:
    try:
        text = fstab.read_text(errors="replace")
    except OSError:
        return set()
    points = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[0].startswith("#"):
            continue
        point, fstype = _unescape(fields[1]), fields[2]
        if point.startswith("/") and point != "/" and fstype not in _IGNORED_TYPES:
            points.add(os.path.normpath(point))
    return points


def mounted_points(mountinfo: Path = MOUNTINFO) -> set[str]:
    try:
        text = mountinfo.read_text(errors="replace")
    except OSError:
        return set()
    return {os.path.normpath(_unescape(line.split()[4]))
            for line in text.splitlines() if len(line.split()) > 4}


def unmounted_sources(sources: list[Path] | tuple[Path, ...], fstab: Path = FSTAB,
                      mountinfo: Path = MOUNTINFO) -> list[tuple[str, str]]:
    """(source, the fstab mount point it lives under that is not mounted) for each such source."""
    points = fstab_mount_points(fstab)
    if not points:
        return []
    mounted = mounted_points(mountinfo)
    out = []
    for src in sources:
        s = os.path.normpath(os.path.abspath(src))
        under = [p for p in points if s == p or s.startswith(p + "/")]
        if under:
            point = max(under, key=len)
            if point not in mounted:
                out.append((str(src), point))
    return out
