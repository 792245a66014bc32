"""Child processes of the test run that must not outlive it."""
from __future__ import annotations

import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn`` for long-lived helpers (dbus-daemon, the daemon under test): the kernel
    sends them SIGTERM when the test process dies, so a pytest killed by a CI timeout or a
    SIGTERM, which runs no fixture finalizers, leaves no bus or daemon behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
