"""Whether a snapshot may be trusted before anything of it is restored (issue 9, items 2, 3).

Two checks on the manifest, before a volume is fetched:

* **signature**: with trusted keys (``--trusted-key FILE``, a job's ``trusted_key``) the
  manifest must be signed by one of them (odbackupd/signing.py). Only then is a snapshot
  *authentic*: the restore then also recreates setuid files, capabilities and devices.
* **encryption**: a job with recipients takes only snapshots encrypted with age to its
  recipients: an unencrypted one, or one encrypted to another key, is refused unless the
  caller says ``any_encryption`` (``--any-encryption``). Whether every volume really is an
  age file is checked as it is read (restore.PlainStream).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import signing
from .manifest import Manifest

UntrustedSnapshot = signing.UntrustedSnapshot


@dataclass(frozen=True)
class Trust:
    keys: Sequence[Any] = ()  # trusted Ed25519 public keys
    recipients: Sequence[str] = ()  # the job's age recipients (age1...)
    any_encryption: bool = False
    job: str = ""


def check_snapshot(m: Manifest, trust: Trust) -> bool:
    """Raise UntrustedSnapshot (naming the cause) or return whether ``m`` is authentic."""
    what = f"snapshot {m.snapshot}"
    if trust.recipients and not trust.any_encryption:
        _check_encryption(m, trust, what)
    if not trust.keys:
        return False
    signing.check(m.raw if m.raw is not None else m.to_json(), list(trust.keys), what)
    return True


def _check_encryption(m: Manifest, trust: Trust, what: str) -> None:
    from ..crypto.age import parse_recipient, recipient_fingerprint

    job = f"job {trust.job}" if trust.job else "the job"
    hint = "; if that is expected (e.g. made before the job was encrypted), pass --any-encryption"
    enc = m.encryption
    if not enc:
        raise UntrustedSnapshot(f"{what} is not encrypted, but {job} encrypts to age recipients: "
                                f"refused (was its manifest or were its volumes replaced?){hint}")
    if not isinstance(enc, dict) or enc.get("format") != "age-v1":
        raise UntrustedSnapshot(
            f"{what} is encrypted as "
            f"{enc.get('format') if isinstance(enc, dict) else enc!r}, "
            f"not age-v1 as {job} encrypts: refused{hint}")
    wanted = {recipient_fingerprint(parse_recipient(r)) for r in trust.recipients}
    got = set(enc.get("recipients") or [])
    extra = sorted(got - wanted)
    if extra or not got:
        raise UntrustedSnapshot(
            f"{what} is encrypted to recipient fingerprint {', '.join(extra) or 'none given'}, "
            f"which is not among {job}'s recipients ({', '.join(sorted(wanted))}): refused{hint}")
