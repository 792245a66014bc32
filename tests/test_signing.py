"""The daemon's manifest signing key: made once, 0600, or taken from the systemd credential."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from odbackupd import signing


def test_key_is_made_once_private_and_exported(tmp_path):
    key = signing.load_or_create(tmp_path)
    path, pub = signing.key_paths(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = signing.load_or_create(tmp_path)
    assert signing.public_line(again.public_key()) == signing.public_line(key.public_key())
    exported = signing.public_key(tmp_path)
    assert signing.fingerprint(exported) == signing.fingerprint(key.public_key())
    assert signing._raw(signing.load_public_key(pub)) == signing._raw(key.public_key())
    if shutil.which("ssh-keygen"):  # the fingerprint is the one ssh-keygen -l shows for the file
        out = subprocess.run(["ssh-keygen", "-l", "-f", str(pub)],
                             capture_output=True, text=True, check=True)
        assert signing.fingerprint(exported) in out.stdout


def test_systemd_credential_wins(tmp_path, monkeypatch):
    creds = tmp_path / "creds"
    creds.mkdir()
    key = Ed25519PrivateKey.generate()
    (creds / signing.CREDENTIAL).write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    got = signing.load_or_create(tmp_path / "state")
    assert signing._raw(got.public_key()) == signing._raw(key.public_key())
    assert not (tmp_path / "state").exists()  # nothing made under the state directory


def test_signature_covers_every_field(tmp_path):
    key = signing.load_or_create(tmp_path)
    doc = signing.sign({"snapshot": "s", "volumes": [{"name": "v", "sha256": "00"}],
                        "future_field": 1}, key)
    assert signing.check(doc, [key.public_key()], "s") == signing.fingerprint(key.public_key())
    for changed in ({**doc, "future_field": 2}, {**doc, "volumes": []}):
        with pytest.raises(signing.UntrustedSnapshot, match="does not match"):
            signing.check(changed, [key.public_key()], "s")


def test_a_bad_key_file_is_one_line(tmp_path):
    path, _ = signing.key_paths(tmp_path)
    path.parent.mkdir()
    path.write_text("garbage\n")
    os.chmod(path, 0o600)
    with pytest.raises(signing.SigningError, match=str(path)):
        signing.load_or_create(tmp_path)


def test_export_does_not_make_a_state_directory(tmp_path):
    with pytest.raises(signing.SigningError, match="does not exist"):
        signing.public_key(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()
