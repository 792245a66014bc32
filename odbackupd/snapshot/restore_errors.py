"""The exceptions of restore and verify, shared by restore.py, extract.py and target.py.

A failure that stops a restore after something was written carries the statistics of what
was put back (``stats``), so the caller can say what the target now holds: a partial
restore is never reported as if nothing had happened, nor as if everything had.
"""
from __future__ import annotations

from typing import Any


class RestoreError(Exception):
    stats: Any = None  # RestoreStats when the target already holds part of the restore


class IntegrityError(RestoreError):
    """The stored data is damaged: a bad volume, a missing volume, a broken archive (exit 4)."""


class WrongIdentity(RestoreError):
    """None of the --identity keys opens the snapshot: the caller's mistake, not damage."""


class RestoreStopped(RestoreError):
    """Writing had to stop (the target's file system is full or read-only)."""


class BadTarget(RestoreError):
    """The --to directory or a --path argument cannot be used as given (exit 2)."""
