"""odctl's one error type: a message for stderr and the exit code (odbackupd/bus/names.py).

A module of its own so that helpers (odctl/trust.py) raise the class ``main()`` catches,
also when cli.py runs as ``python -m odctl.cli`` (then it is ``__main__``, not odctl.cli)."""
from __future__ import annotations

from odbackupd.bus.names import EXIT_FAILED


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code
