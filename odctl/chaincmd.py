"""odctl's side of incremental chains: which snapshots a restore or a verify needs."""
from __future__ import annotations

from pathlib import Path

from odbackupd.bus.names import EXIT_INTEGRITY, EXIT_USAGE


def restore_chain_of(found, m, to: Path, allow_nonempty: bool, error):  # noqa: ANN001, ANN201
    """The chain a restore of ``m`` applies (None for a full, restored on its own), its bases
    read from ``found`` (the series' ``catalog.Series``: only the chain's manifests, or none
    again when the command read every one to find ``m``).

    ``error(message, code)`` builds the CliError to raise."""
    if m.kind != "incremental":
        return None
    from odbackupd.snapshot.chainrestore import is_empty_dir
    from odbackupd.snapshot.incchain import BrokenChain, chain_of

    try:
        chain = chain_of(m, found.bases())
    except BrokenChain as e:
        raise error(f"cannot restore {m.snapshot}: {e}; an older snapshot whose chain is "
                    "complete may still restore (odctl verify JOB all)", EXIT_INTEGRITY) from e
    if not allow_nonempty and not is_empty_dir(to):
        raise error(
            f"{to} is not empty: {m.snapshot} is an incremental snapshot (a chain of "
            f"{len(chain)}), and what DIR already holds that the snapshot does not would be left "
            "mixed in with it (GNU tar -G would delete it). Restore into an empty directory, or "
            "give --allow-nonempty", EXIT_USAGE)
    return chain

