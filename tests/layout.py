"""Where the tests find a series' snapshot folders on a local destination."""
from __future__ import annotations

import socket
from pathlib import Path


def series_dir(root: Path, series: str = "t", host: str | None = None) -> Path:
    """``ROOT/HOST/SERIES``: the folder holding one host's snapshot folders of ``series``
    (HOST defaults to this machine's name, the default of ``[daemon] hostname``)."""
    return Path(root) / (host or socket.gethostname()) / series

HOST = socket.gethostname()  # the default [daemon] hostname, which the tests' configs keep
