"""What a restore put back, and whether that is everything the snapshot holds."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RestoreStats:
    files: int = 0
    dirs: int = 0
    links: int = 0
    others: int = 0
    skipped: int = 0  # members not made on purpose (devices as non-root or left out, unknown types)
    bytes: int = 0
    refused: list[str] = field(default_factory=list)  # members the archive must not contain
    damaged: list[str] = field(default_factory=list)  # "member: what is malformed"
    failed: list[str] = field(default_factory=list)  # "member: why it could not be written"
    warnings: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)  # --path arguments no member matched
    special: dict[str, int] = field(default_factory=dict)  # setuid, capability, device: seen
    special_left_out: dict[str, int] = field(default_factory=dict)
    special_reason: str = ""  # why they were left out ("" = not left out)
    stopped: str = ""  # why extraction ended before the end of the archive
    # what a restore of some paths downloaded (snapshot/partial.py): volumes, volume_bytes,
    # indexes, index_bytes; None for a restore that streams whole snapshots
    fetched: dict[str, int] | None = None

    @property
    def complete(self) -> bool:
        return not (self.refused or self.damaged or self.failed or self.stopped
                    or self.special_left_out)



def special_policy(authentic: bool, special_files: bool | None) -> tuple[bool, str]:
    """Whether setuid/setgid files, capabilities and device nodes are restored, and if not, why.

    Root restoring a snapshot that nobody proved authentic would otherwise hand whoever can
    write to the destination a setuid-root shell or a raw disk device. ``special_files``
    is the operator's explicit choice (--special-files / --no-special-files)."""
    if special_files is not None:
        return special_files, "" if special_files else "--no-special-files was given"
    if authentic or os.geteuid() != 0:
        return True, ""
    return False, ("the snapshot is not verified authentic "
                   "(no --trusted-key or trusted_key checked its signature)")


def compare_with_manifest(
    stats: RestoreStats, manifest: Any, tar_bytes: int, *, selective: bool
) -> None:
    """The manifest's counts against what the archive held (a damaged or doctored snapshot
    whose volumes still match their hashes is caught here)."""
    if tar_bytes != manifest.tar_bytes:
        stats.damaged.append(f"(archive): {tar_bytes} bytes of tar stream, "
                             f"the manifest says {manifest.tar_bytes}")
    if selective or stats.stopped or stats.refused or stats.failed or stats.damaged:
        return  # the counts below only add up for a complete, full restore
    files = stats.files + stats.links
    if files != manifest.files or stats.bytes != manifest.data_bytes:
        stats.damaged.append(f"(archive): {files} files with {stats.bytes} bytes, "
                             f"the manifest says {manifest.files} files with "
                             f"{manifest.data_bytes} bytes")
    elif stats.others + stats.skipped + stats.dirs < manifest.others + manifest.dirs:
        stats.damaged.append(f"(archive): {stats.dirs} directories and "
                             f"{stats.others + stats.skipped} other members, "
                             f"the manifest says {manifest.dirs} and {manifest.others}")
