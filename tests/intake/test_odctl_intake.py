"""``odctl intake add-user``: the token is printed once, only its hash is written, and the
service accepts exactly the new token."""
from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

from .conftest import TOKENS, Intake


def odctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "odctl.cli", *args], capture_output=True,
                          text=True, timeout=60)


def test_add_user_writes_the_hash_the_service_accepts(tmp_path: Path) -> None:
    svc = Intake(tmp_path)
    hash_file = tmp_path / "alice.sha256"  # what [intake.user.alice] token_file names
    r = odctl("--config", str(svc.config), "intake", "add-user", "alice")
    assert r.returncode == 2 and "has a token already" in r.stderr and "--replace" in r.stderr
    r = odctl("--config", str(svc.config), "--json", "intake", "add-user", "alice", "--replace")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    token = out["token"]
    assert out["hash_file"] == str(hash_file) and len(token) >= 40
    text = hash_file.read_text()
    assert token not in text and len(text.strip()) == 64
    assert stat.S_IMODE(hash_file.stat().st_mode) == 0o600
    svc.start()
    try:
        assert svc.put("a.bin", b"old token", token=TOKENS["alice"])[0] == 401
        assert svc.put("a.bin", b"new token", token=token)[0] == 201
        assert svc.waiting() == {"a.bin": b"new token"}
    finally:
        svc.close()


def test_add_user_for_an_unconfigured_user_uses_the_credential_directory(tmp_path: Path) -> None:
    r = odctl("--config", str(tmp_path / "absent.toml"), "intake", "add-user", "laptop",
              "--token-dir", str(tmp_path / "intake"))
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert token and token not in r.stderr and '[intake.user.laptop]' in r.stderr
    assert (tmp_path / "intake" / "laptop").read_text().strip() != token


def test_check_config_checks_without_creating_anything(tmp_path: Path) -> None:
    svc = Intake(tmp_path)
    cmd = [sys.executable, "-m", "odbackupd.intake.main", "--config", str(svc.config),
           "--check-config"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "OK, 2 intake users" in r.stdout, r.stderr
    assert not svc.state.exists() and not svc.partial["alice"].exists()
    (tmp_path / "bob.sha256").write_text("the token itself, by mistake\n")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert (r.returncode == 2 and "intake user 'bob'" in r.stderr
            and "must hold one SHA-256" in r.stderr)
    svc.drop["alice"].rmdir()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "intake user 'alice'" in r.stderr and "Traceback" not in r.stderr
