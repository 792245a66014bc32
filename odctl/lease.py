"""odctl restore/verify hold a lease on the snapshot they read (odbackupd/snapshot/leases.py):
retention on this host defers deleting it until they are done."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from odbackupd.bus.names import EXIT_NOT_FOUND
from odbackupd.destinations.base import MANIFEST_NAME
from odbackupd.snapshot import leases

from .errors import CliError


@contextmanager
def reading(cfg, dest, series: str, m, quiet: bool = False) -> Iterator[None]:  # noqa: ANN001
    with leases.reading(cfg.daemon.state_dir, series, m.snapshot) as held:
        if not held and not quiet and cfg.daemon.state_dir.is_dir():
            print(f"odctl: warning: no lease on snapshot {m.snapshot} (cannot write to "
                  f"{cfg.daemon.state_dir}): a prune on this host may delete it while it is read; "
                  "run odctl as root or the service's user to prevent that", file=sys.stderr)
        if held and MANIFEST_NAME not in dest.list_objects(m.location, m.snapshot):
            raise CliError(f"snapshot {m.snapshot} was pruned just now, before it could be read",
                           EXIT_NOT_FOUND)
        yield
