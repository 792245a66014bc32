"""Incremental chains of snapshots: which snapshots a restore needs, whether the next run is a full,
and the RESTORE.txt written into every snapshot folder.

A chain is a full snapshot and the incrementals built on it, each on the one before
(``Manifest.base``). See :mod:`.incremental` for what an incremental holds.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .manifest import Manifest, iso


class BrokenChain(LookupError):
    """A base a snapshot needs is not there (or not readable)."""


def by_id(snapshots: Sequence[Manifest]) -> dict[str, Manifest]:
    return {m.snapshot: m for m in snapshots}


def chain_of(
    target: Manifest, snapshots: Sequence[Manifest] | dict[str, Manifest]
) -> list[Manifest]:
    """The snapshots a restore of ``target`` applies, oldest (the full) first."""
    ids = snapshots if isinstance(snapshots, dict) else by_id(snapshots)
    out = [target]
    seen = {target.snapshot}
    while out[-1].kind == "incremental":
        m = out[-1]
        base = ids.get(m.base or "")
        if base is None:
            raise BrokenChain(
                f"snapshot {m.snapshot} is based on {m.base}, which is missing or unreadable"
            )
        if base.snapshot in seen or (base.sequence and m.sequence and base.sequence >= m.sequence):
            raise BrokenChain(f"snapshot {m.snapshot} names {m.base} as its base, which cannot be")
        seen.add(base.snapshot)
        out.append(base)
    out.reverse()
    return out


@dataclass(frozen=True)
class Decision:
    kind: str  # "full" or "incremental"
    base: Manifest | None
    reason: str  # why a full ("" when nothing needs saying)


def decide(
    latest: Sequence[Manifest | None],
    snapshots: Sequence[Manifest],
    *,
    full_every: int,
    full_if_older_than: float | None,
    now: float,
    sources: Sequence[str],
    encryption: dict | None,
    cache_meta: dict | None,
    cache_path: str,
) -> Decision:
    """Full or incremental, from the latest complete snapshot on each destination."""
    def full(why: str) -> Decision:
        return Decision("full", None, why)

    if full_every <= 1:
        return full("")
    if not latest or latest[0] is None:
        return full("the first snapshot of the series")
    last = latest[0]
    if any(m is None or m.snapshot != last.snapshot for m in latest[1:]):
        return full("the destinations do not hold the same latest snapshot")
    if last.index is None:
        return full(
            f"the latest snapshot {last.snapshot} has no index (made by an older odbackupd)"
        )
    try:
        chain = chain_of(last, snapshots)
    except BrokenChain as e:
        return full(f"the latest snapshot's chain is broken ({e})")
    if len(chain) >= full_every:
        return full(f"full_every = {full_every}: the chain of {chain[0].snapshot} "
                    f"has {len(chain)} snapshots")
    if full_if_older_than is not None and now - chain[0].started >= full_if_older_than:
        return full(f"full_if_older_than: the last full snapshot {chain[0].snapshot} "
                    f"is from {iso(chain[0].started)}")
    if list(last.sources) != list(sources):
        return full("the job's sources changed since the latest snapshot")
    if (last.encryption or {}).get("recipients") != (encryption or {}).get("recipients"):
        return full("the job's recipients changed since the latest snapshot")
    if cache_meta is None:
        return full(f"no local index of the latest snapshot {last.snapshot}: {cache_path} "
                    "is missing (the stored index is not read back: it may be encrypted to a "
                    "key this host does not hold)")
    if (cache_meta.get("snapshot") != last.snapshot
            or cache_meta.get("sha256") != last.index.get("sha256")):
        return full(f"the local index {cache_path} is of snapshot {cache_meta.get('snapshot')}, "
                    f"not of the latest snapshot {last.snapshot}")
    if cache_meta.get("damaged"):
        return full(
            f"the local index of the latest snapshot {last.snapshot}, {cache_path}, is damaged"
        )
    return Decision("incremental", last, "")


def restore_text(chain: Sequence[Manifest], *, encrypted: bool) -> str:
    """RESTORE.txt: how to restore this snapshot (and its chain) with stock tools."""
    m = chain[-1]
    names = " ".join(c.snapshot for c in chain)
    dec = 'age -d -i key.txt "$v"' if encrypted else 'cat "$v"'
    lines = [
        (f"odbackupd snapshot {m.snapshot} of {m.job} ({m.kind}), "
         f"made on {m.host} at {iso(m.started)}."),
        "",
    ]
    if len(chain) == 1:
        lines += [
            "It is a full snapshot: it restores on its own.",
            "In the folder that holds this snapshot folder:",
            "",
            f"  for v in {m.snapshot}/vol.*; do {dec}; done | zstd -d | tar -x -f - -C /empty/dir",
        ]
    else:
        lines += [
            (f"It is an incremental snapshot: a restore applies these {len(chain)} snapshots, "
             "in this order"),
            "(the full one first; each later one holds only what changed, and its directory lists",
            "tell GNU tar what was deleted or renamed):",
            "",
            *(f"  {i}. {c.snapshot} ({c.kind})" for i, c in enumerate(chain, 1)),
            "",
            ("In the folder that holds these snapshot folders, into an EMPTY directory "
             "(tar -G deletes"),
            "whatever a restored directory holds that the snapshot does not name):",
            "",
            f"  for s in {names}; do",
            (f"    for v in $s/vol.*; do {dec}; done "
             "| zstd -d | tar -x -G -f - -C /empty/dir || break"),
            "  done",
            "",
            ("One tar for the whole chain (tar -x -G -i) works too, "
             "except where a symlink whose target"),
            ("is absolute or contains '..' became something else later in the chain: "
             "GNU tar restores"),
            "such symlinks last, from a placeholder whose inode number the new file may reuse.",
        ]
    lines += [
        "",
        "(-G: apply the directory lists; add --xattrs --xattrs-include='*' -p to restore extended",
        "attributes and modes exactly.)",
        "Or with odbackupd: odctl restore JOB SNAPSHOT --to /empty/dir",
        "",
    ]
    return "\n".join(lines)
