"""Intake bearer tokens: made here, shown once, stored only as their SHA-256.

A token is 32 random bytes (URL-safe base64). The server keeps ``sha256(token)`` in hex,
one line in the user's ``token_file`` (a systemd credential or a path), so a leaked
configuration or credential file lets nobody upload. Lookup hashes the presented token
and compares it with every user's hash in constant time; the user's identity comes from
that match alone, never from the URL.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from pathlib import Path

from ..credentials import resolve_credential

__all__ = ["UNIT_CREDENTIALS", "TokenError", "hash_token", "load_hashes", "new_token", "Tokens"]

#: The packaged odbackupd-intake.service has ``LoadCredential=intake:/etc/odbackupd/intake``:
#: the file /etc/odbackupd/intake/NAME is the credential intake_NAME.
UNIT_CREDENTIALS = ("intake_", Path("/etc/odbackupd/intake"))
_HEX = re.compile(r"[0-9a-f]{64}")


class TokenError(ValueError):
    pass


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def read_hash(token_file: Path) -> str:
    """The hex SHA-256 in *token_file* (a credential name or path); TokenError says why not."""
    try:
        path = resolve_credential(token_file, UNIT_CREDENTIALS)
        text = path.read_text(encoding="ascii", errors="replace")
    except (OSError, FileNotFoundError) as e:
        raise TokenError(f"token_file '{token_file}': {e.strerror or e}") from None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if len(lines) != 1 or not _HEX.fullmatch(lines[0].lower()):
        raise TokenError(f"token_file '{token_file}' ({path}) must hold one SHA-256 in hex, "
                         "the hash of the token (odctl intake add-user writes it), not the token")
    return lines[0].lower()


def load_hashes(users: dict) -> dict[str, str]:  # users: name -> IntakeUserConfig
    """user -> token hash; TokenError lists every unreadable token file."""
    out, problems = {}, []
    for name, user in users.items():
        try:
            out[name] = read_hash(user.token_file)
        except TokenError as e:
            problems.append(f"intake user '{name}': {e}")
    if problems:
        raise TokenError("\n".join(problems))
    return out


class Tokens:
    def __init__(self, hashes: dict[str, str]) -> None:
        self._hashes = {u: bytes.fromhex(h) for u, h in hashes.items()}

    def identify(self, authorization: str | None) -> str | None:
        """The user whose token is in an ``Authorization: Bearer …`` header, or None."""
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        digest = hashlib.sha256(token.strip().encode("utf-8", "surrogateescape")).digest()
        found = None
        for user, h in self._hashes.items():  # every comparison, whatever matches
            if hmac.compare_digest(digest, h):
                found = user
        return found
