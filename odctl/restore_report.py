"""odctl restore's outcome: one summary, every problem named once, and the exit status.

A restore that did not put back everything the snapshot holds exits non-zero and says
what is missing and that the target holds a partial restore: 4 when the stored data is
damaged (refused or malformed members, a broken archive, counts that differ from the
manifest, a missing volume), 1 when this machine could not write (a full disk, a name too
long, permissions) or special files were left out without being asked, 3 when a --path
matched nothing.
"""
from __future__ import annotations

import sys
from typing import Any

from odbackupd.bus.names import EXIT_FAILED, EXIT_INTEGRITY, EXIT_NOT_FOUND, EXIT_OK

from . import render

SHOWN = 10  # problems of one kind listed by name on stderr (all of them in --json)
SPECIAL_WORDS = {"setuid": "setuid/setgid file", "capability": "capability attribute",
                 "device": "device node"}


def _special_text(counts: dict[str, int]) -> str:
    from odbackupd.config.units import plural

    return ", ".join(plural(n, SPECIAL_WORDS.get(k, k)) for k, n in sorted(counts.items()))


def exit_code(stats: Any, stopped_damaged: bool = False) -> int:
    if stats.refused or stats.damaged or stopped_damaged:
        return EXIT_INTEGRITY
    left_out = stats.special_left_out and stats.special_reason != "--no-special-files was given"
    if stats.failed or stats.stopped or left_out:
        return EXIT_FAILED
    return EXIT_NOT_FOUND if stats.unmatched else EXIT_OK


def as_json(m: Any, to: str, stats: Any, took: float) -> dict:
    return {"snapshot": m.snapshot, "to": to, "files": stats.files, "dirs": stats.dirs,
            "links": stats.links, "others": stats.others, "bytes": stats.bytes,
            "seconds": round(took, 3), "refused": stats.refused, "damaged": stats.damaged,
            "failed": stats.failed, "stopped": stats.stopped, "warnings": stats.warnings,
            "unmatched": stats.unmatched, "special": stats.special,
            "special_left_out": stats.special_left_out, "special_reason": stats.special_reason,
            "complete": stats.complete and not stats.unmatched,
            "fetched": getattr(stats, "fetched", None)}


def _listed(title: str, items: list[str], err: Any) -> None:
    if not items:
        return
    print(f"odctl: {title} ({len(items)}):", file=err)
    for it in items[:SHOWN]:
        print(f"  {it}", file=err)
    if len(items) > SHOWN:
        print(f"  ... and {len(items) - SHOWN} more (--json lists them all)", file=err)


def report(args: Any, m: Any, stats: Any, took: float, stopped_damaged: bool = False,
           chain: list[str] | None = None) -> int:
    """Print the outcome of a restore of ``m`` (finished or stopped) and return the exit code;
    ``chain``: the snapshots an incremental's restore applied, oldest first."""
    from odbackupd.config.units import plural

    code = exit_code(stats, stopped_damaged)
    to = str(args.to)
    if args.json:
        out = as_json(m, to, stats, took)
        out["chain"] = chain or [m.snapshot]
        out["exit"] = code
        render.out_json(out)
    err = sys.stderr
    if not args.json:
        for w in stats.warnings:
            print(f"warning: {w}", file=err)
        nothing = stats.unmatched and not (stats.files or stats.dirs or stats.links
                                           or stats.others)
        if not args.quiet and not nothing:  # a --path matching nothing restored nothing
            special = f"; special files: {_special_text(stats.special)}" if stats.special else ""
            print(f"restored {m.snapshot} to {to}: {plural(stats.files, 'file')}, "
                  f"{stats.dirs} {'directory' if stats.dirs == 1 else 'directories'}, "
                  f"{render.size(stats.bytes)} in {took:.1f}s{special}")
            if getattr(stats, "fetched", None) is not None:
                from .browse import fetched_text

                f = stats.fetched
                from odbackupd.config.units import plural

                whole = plural(f.get("stored_volumes", len(m.volumes)), "volume")
                print(f"{fetched_text(f)}, of the {whole} "
                      f"({render.size(f.get('stored_bytes', m.stored_bytes))}) a whole "
                      "restore reads")
    for p in stats.unmatched:
        example = str(m.sources[0]).strip("/") if m.sources else "etc/ssh"
        print(f"odctl: --path {p}: nothing in snapshot {m.snapshot} is at that path (paths are as "
              f"archived, without the leading '/', e.g. {example})", file=err)
    if stats.refused:  # each is named in its warning above
        print(f"odctl: {len(stats.refused)} members refused (named above): each would have been "
              "written outside the target or through a symbolic link (the archive asks for it, or "
              "someone changed the target during the restore), or its name is malformed", file=err)
    _listed("members with malformed metadata (the stored archive is damaged)", stats.damaged, err)
    _listed("members that could not be written here", stats.failed, err)
    if stats.stopped:
        print("odctl: the restore stopped before the end of the snapshot: "
              f"{stats.stopped}; every member after that point is missing", file=err)
    if stats.special_left_out:
        left = _special_text(stats.special_left_out)
        if stats.special_reason == "--no-special-files was given":
            print(f"odctl: left out as asked (--no-special-files): {left}", file=err)
        else:
            print(f"odctl: left out {left}: {stats.special_reason}, and as root they would let "
                  "whoever can write to the destination plant a setuid program, a capability or a "
                  "device node; check the snapshot, then run again with --special-files to restore "
                  "them, or with --no-special-files to accept the restore without them", file=err)
    if code in (EXIT_INTEGRITY, EXIT_FAILED):
        print(f"odctl: {to} holds a PARTIAL restore of {m.snapshot} "
              f"({stats.files + stats.links} of {m.files} files, {render.size(stats.bytes)} of "
              f"{render.size(m.data_bytes)}); what is listed above is missing or incomplete",
              file=err)
    return code
