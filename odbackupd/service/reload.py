"""What a reload changes: the difference between the running configuration and the one
just read, as a plan the controller carries out (pure: no I/O, no loop)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .triggers import trigger_key

#: [daemon] settings that only a restart applies (the open state database, the spool)
RESTART_ONLY = ("state_dir", "spool_dir")


@dataclass
class ReloadPlan:
    config: Any  # the new configuration, with the settings only a restart changes kept
    added: list[str]
    removed: list[str]
    changed: list[str]
    retrigger: list[str]  # changed jobs whose watch or drop directory must be rebuilt
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = (("added", self.added), ("removed", self.removed), ("changed", self.changed))
        return "; ".join(f"{what}: {', '.join(names) or 'none'}" for what, names in parts)


def plan_reload(old: Any, new: Any) -> ReloadPlan:
    warnings = list(new.warnings)
    for key in RESTART_ONLY:
        if getattr(new.daemon, key) != getattr(old.daemon, key):
            warnings.append(f"[daemon] {key} changes take effect at the next start; "
                            f"still using {getattr(old.daemon, key)}")
    kept = dataclasses.replace(new, daemon=dataclasses.replace(
        new.daemon, **{k: getattr(old.daemon, k) for k in RESTART_ONLY}))
    changed = sorted(n for n in set(old.jobs) & set(new.jobs) if old.jobs[n] != new.jobs[n])
    return ReloadPlan(
        config=kept,
        added=sorted(set(new.jobs) - set(old.jobs)),
        removed=sorted(set(old.jobs) - set(new.jobs)),
        changed=changed,
        # watches are re-walked only when what they watch changed (a big tree takes a
        # second per 50,000 directories, in batches between the loop's other work)
        retrigger=[n for n in changed if trigger_key(old.jobs[n]) != trigger_key(new.jobs[n])],
        warnings=warnings,
    )
