"""An in-progress snapshot whose manifest is already stored: the run that wrote it was
killed before it told the state database (issue 9, item 12).

Resuming it would write the same manifest again and report a "completed" snapshot of old
data while nothing new is backed up. Instead the snapshot is recognised as done: a
destination that lacks the manifest (the kill came between two destinations) gets the
stored copy, every volume being there already, and the run goes on with a new snapshot.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

from ..destinations.base import MANIFEST_NAME, Destination

log = logging.getLogger("odbackupd.snapshot")


def finish_if_stored(dests: Sequence[Destination], folder: str, snapshot: str) -> bool:
    """True when ``folder/snapshot`` is complete on some destination (and now on every one)."""
    have = [d for d in dests if MANIFEST_NAME in d.list_objects(folder, snapshot)]
    if not have:
        return False
    data = have[0].read_bytes(folder, snapshot, MANIFEST_NAME)
    for d in dests:
        if d not in have:
            d.put_bytes(folder, snapshot, MANIFEST_NAME, data)
    log.info("%s: snapshot %s was completed by a run that stopped before recording it; "
             "starting a new snapshot", folder, snapshot,
             extra={"journal_fields": {"SNAPSHOT": snapshot}})
    return True
