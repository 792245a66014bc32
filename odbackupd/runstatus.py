"""The statuses a run goes through, named once.

They are the words the state database's ``runs`` table, the D-Bus ``RunFinished``
dictionaries, ``odctl`` and the metrics use; a ``StrEnum`` so that they are stored and sent
as those plain strings (``RunStatus.COMPLETED == "completed"``).
"""
from __future__ import annotations

import enum


class RunStatus(enum.StrEnum):
    QUEUED = "queued"  # recorded, waiting for its turn (the daemon hands out its id at once)
    RUNNING = "running"
    COMPLETED = "completed"
    COMPLETED_WITH_WARNINGS = "completed with warnings"
    FAILED = "failed"
    CANCELLED = "cancelled"  # checkpointed: the next run resumes it
    INTERRUPTED = "interrupted"  # left running or queued by a daemon that is gone

    @property
    def ok(self) -> bool:
        """A snapshot was made (warnings or not)."""
        return self in (RunStatus.COMPLETED, RunStatus.COMPLETED_WITH_WARNINGS)


def is_ok(status: str) -> bool:
    """Whether a status string read back (state row, D-Bus reply) is a made snapshot."""
    return status in (RunStatus.COMPLETED, RunStatus.COMPLETED_WITH_WARNINGS)
