"""Manifest signatures (issue 9, item 2): Ed25519, with the daemon's own key.

The daemon creates its key once: ``STATE_DIR/keys/manifest-signing.key`` (PKCS#8 PEM,
0600, owned by the state directory's owner), or takes it from the systemd credential
``odbackupd_signing-key`` (``LoadCredential=``). The public half is written beside it
(``manifest-signing.pub``, OpenSSH one-line format) and printed by ``odctl key export``;
the admin keeps it with the age identity, off this host.

A signed manifest carries ``"signature": {"algorithm": "ed25519", "key": FINGERPRINT,
"public_key": BASE64, "value": BASE64}`` over the canonical JSON of every other field
(sorted keys, no spaces), prefixed by a domain string. Whoever can write to the
destination can still write a manifest, but not one that verifies against the trusted
public key: ``verify``/``restore --trusted-key FILE`` (or a job's ``trusted_key``) refuse
an unsigned snapshot, one signed by another key and one altered after signing.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # cryptography is imported where it is used: odctl ls/restore of an
    # unsigned series never loads it (15 ms of every command's start-up)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

KEY_DIR = "keys"
KEY_FILE = "manifest-signing.key"
PUB_FILE = "manifest-signing.pub"
CREDENTIAL = "odbackupd_signing-key"
DOMAIN = b"odbackupd manifest signature v1\0"


class SigningError(Exception):
    """The signing key cannot be made or read (a one-line message naming the file)."""


class UntrustedSnapshot(ValueError):
    """A snapshot that does not verify against the trusted key."""


def canonical(doc: dict[str, Any]) -> bytes:
    body = {k: v for k, v in doc.items() if k != "signature"}
    return DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":"),
                               ensure_ascii=True).encode()


def _raw(pub: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(pub: Ed25519PublicKey) -> str:
    """``SHA256:…`` as ``ssh-keygen -l`` prints it for the same key."""
    blob = base64.b64decode(public_line(pub).split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def public_line(pub: Ed25519PublicKey, comment: str = "") -> str:
    from cryptography.hazmat.primitives import serialization

    line = pub.public_bytes(serialization.Encoding.OpenSSH,
                            serialization.PublicFormat.OpenSSH).decode()
    return f"{line} {comment}".rstrip()


def sign(doc: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    pub = key.public_key()
    out = dict(doc)
    out["signature"] = {
        "algorithm": "ed25519", "key": fingerprint(pub),
        "public_key": base64.b64encode(_raw(pub)).decode(),
        "value": base64.b64encode(key.sign(canonical(doc))).decode(),
    }
    return out


def signed_by(doc: dict[str, Any]) -> str | None:
    """The fingerprint a manifest says it is signed by (unchecked), or None."""
    sig = doc.get("signature")
    return str(sig.get("key")) if isinstance(sig, dict) else None


def check(doc: dict[str, Any], trusted: list[Ed25519PublicKey], what: str) -> str:
    """Raise UntrustedSnapshot unless ``doc`` is signed by one of ``trusted``; returns the
    fingerprint of the key that signed it."""
    from cryptography.exceptions import InvalidSignature

    names = ", ".join(fingerprint(k) for k in trusted)
    sig = doc.get("signature")
    if not isinstance(sig, dict):
        raise UntrustedSnapshot(
            f"{what} is not signed, and only snapshots signed by {names} are trusted "
            "(made by an older odbackupd, or its manifest was replaced)")
    try:
        raw = base64.b64decode(str(sig["public_key"]), validate=True)
        value = base64.b64decode(str(sig["value"]), validate=True)
    except (KeyError, ValueError) as e:
        raise UntrustedSnapshot(f"{what}: its signature is malformed ({e})") from None
    key = next((k for k in trusted if _raw(k) == raw), None)
    if key is None or sig.get("algorithm") != "ed25519":
        raise UntrustedSnapshot(
            f"{what} is signed by key {sig.get('key')}, not by the trusted key {names} "
            "(made by another host or key, or forged)")
    try:
        key.verify(value, canonical(doc))
    except InvalidSignature:
        raise UntrustedSnapshot(
            f"{what}: its signature does not match the manifest (the manifest was "
            "changed after it was signed)") from None
    return fingerprint(key)


# -- keys -----------------------------------------------------------------------------------------
def load_public_key(path: Path) -> Ed25519PublicKey:
    """A trusted key file: what ``odctl key export`` printed (OpenSSH line) or a PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise SigningError(f"trusted key {path}: {e.strerror}") from None
    text = data.strip()
    try:
        if text.startswith(b"ssh-ed25519 "):
            key = serialization.load_ssh_public_key(b" ".join(text.split()[:2]))
        else:
            key = serialization.load_pem_public_key(text)
    except (ValueError, TypeError) as e:
        raise SigningError(
            f"trusted key {path}: not an Ed25519 public key as 'odctl key export' prints it "
            f"({e})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningError(f"trusted key {path}: not an Ed25519 key")
    return key


def key_paths(state_dir: Path) -> tuple[Path, Path]:
    d = Path(state_dir) / KEY_DIR
    return d / KEY_FILE, d / PUB_FILE


def _credential() -> Path | None:
    d = os.environ.get("CREDENTIALS_DIRECTORY")
    p = Path(d) / CREDENTIAL if d else None
    return p if p is not None and p.exists() else None


def _read_private(path: Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as e:
        raise SigningError(f"manifest signing key {path}: {e.strerror}") from None
    except (ValueError, TypeError) as e:
        raise SigningError(
            f"manifest signing key {path}: not a PEM private key ({e}); move it aside "
            "and a new key is made (then give the new 'odctl key export' to whoever verifies)"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"manifest signing key {path}: not an Ed25519 key")
    return key


def load_or_create(state_dir: Path) -> Ed25519PrivateKey:
    """The daemon's signing key: the systemd credential, else the key file, made if absent."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    cred = _credential()
    if cred is not None:
        return _read_private(cred)
    path, pub_path = key_paths(state_dir)
    if path.exists():
        return _read_private(path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    owner = _owner(Path(state_dir))
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _chown(path.parent, owner)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        _chown(tmp, owner)
        try:
            os.link(tmp, path)  # never replaces a key another process made meanwhile
        except FileExistsError:
            return _read_private(path)
        finally:
            tmp.unlink(missing_ok=True)
        write_public(pub_path, key.public_key(), owner)
    except OSError as e:
        raise SigningError(
            f"cannot create the manifest signing key {path}: {e.strerror} (the state "
            "directory must be writable by the service's user)") from None
    return key


def write_public(path: Path, pub: Ed25519PublicKey, owner: tuple[int, int] | None = None) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(public_line(pub, f"odbackupd@{socket.gethostname()}") + "\n")
    os.chmod(tmp, 0o644)
    _chown(tmp, owner)
    os.replace(tmp, path)


def public_key(state_dir: Path) -> Ed25519PublicKey:
    """This host's public signing key (``odctl key export``), made if there is none yet."""
    cred = _credential()
    if cred is not None:
        return _read_private(cred).public_key()
    path, pub_path = key_paths(state_dir)
    if pub_path.exists():
        return load_public_key(pub_path)
    if not Path(state_dir).is_dir():
        raise SigningError(
            f"no signing key: the state directory {state_dir} does not exist (odbackupd "
            "makes the key there with its first snapshot; on a machine that only restores, "
            "use the key exported on the host that makes the snapshots)")
    return load_or_create(state_dir).public_key()


def _owner(d: Path) -> tuple[int, int] | None:
    """Files root makes in the service's state directory belong to the directory's owner."""
    if os.geteuid() != 0:
        return None
    try:
        st = d.stat()
    except OSError:
        return None
    return st.st_uid, st.st_gid


def _chown(p: Path, owner: tuple[int, int] | None) -> None:
    if owner is not None:
        os.chown(p, *owner)
