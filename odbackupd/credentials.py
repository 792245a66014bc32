"""Secrets named in the configuration: a systemd credential name or an absolute path.

A bare name is a systemd credential: ``$CREDENTIALS_DIRECTORY/NAME`` inside a service
(``LoadCredential=``); outside it (odctl from a shell) the places systemd itself loads
credentials from, ``/etc/credstore`` and friends, and the directory a packaged unit loads
with ``LoadCredential=PREFIX:DIR`` (each file there becomes ``PREFIX_<file>``).
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CREDSTORE_DIRS", "resolve_credential"]

CREDSTORE_DIRS = ("/etc/credstore", "/run/credstore", "/usr/lib/credstore")


def resolve_credential(path: Path, unit_credentials: tuple[str, Path] | None = None) -> Path:
    """The file behind a credential setting; ``unit_credentials`` = (prefix, directory) of
    the unit's directory-wide ``LoadCredential=``. Raises FileNotFoundError saying where
    it looked and what to do."""
    if path.is_absolute():
        return path
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    dirs = [creds] if creds else list(CREDSTORE_DIRS)
    for d in dirs:
        candidate = Path(d) / path
        if candidate.exists():
            return candidate
    if unit_credentials is not None and not creds:
        prefix, unit_dir = unit_credentials
        if path.name.startswith(prefix) and (unit_dir / path.name[len(prefix):]).exists():
            return unit_dir / path.name[len(prefix):]
    where = f"$CREDENTIALS_DIRECTORY ({creds})" if creds else \
        "$CREDENTIALS_DIRECTORY (not set: not running under systemd) nor " + \
        ", ".join(CREDSTORE_DIRS)
    raise FileNotFoundError(
        f"systemd credential '{path}' is not in {where}; add LoadCredential={path}:/path/to/"
        f"file to the unit, put it in /etc/credstore/, or configure an absolute path")
