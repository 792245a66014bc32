"""``python -m tests.killpoint POINT odbackupd-args...``: run odbackupd and SIGKILL it at
exactly one point of its code, for the crash tests that must hit a window a random kill
hits once in twenty runs.

Points:

``after-manifest``  the manifest is on the destination, the state database not yet told
                    (the run's next step would be ``state.forget``).
``after-session``   OneDrive accepted ``createUploadSession`` and answered with the upload
                    URL; the session is not yet saved in the state database.

The kill is a real SIGKILL of this process (no clean-up runs, as with ``kill -9``); the
code around the point is the shipped code, wrapped, not replaced.
"""
from __future__ import annotations

import functools
import os
import signal
import sys


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _after_manifest() -> None:
    from odbackupd.destinations.base import MANIFEST_NAME
    from odbackupd.destinations.local import LocalDestination
    from odbackupd.destinations.onedrive import OneDriveDestination

    for cls in (LocalDestination, OneDriveDestination):
        orig = cls.put_bytes

        @functools.wraps(orig)
        def put_bytes(self, job, snapshot, name, data, _orig=orig):  # noqa: ANN001, ANN202
            out = _orig(self, job, snapshot, name, data)
            if name == MANIFEST_NAME:
                _die()
            return out

        cls.put_bytes = put_bytes  # type: ignore[method-assign]


def _after_session() -> None:
    from odbackupd.graph.upload import Uploader

    orig = Uploader._save

    def _save(self, remote, rec):  # noqa: ANN001, ANN202
        if rec.get("offset") == 0:  # the save right after createUploadSession answered
            _die()
        return orig(self, remote, rec)

    Uploader._save = _save  # type: ignore[method-assign]


POINTS = {"after-manifest": _after_manifest, "after-session": _after_session}


if __name__ == "__main__":
    POINTS[sys.argv[1]]()
    from odbackupd.main import main

    sys.exit(main(sys.argv[2:]))
