"""contrib/ansible: the playbook passes Debian's ansible-playbook --syntax-check, and its
drop-in tasks, run for real on this machine, validate the whole staged configuration with
odbackupd --check-config before anything takes effect."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "contrib" / "ansible" / "site.yml"


def playbook(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    inv = tmp_path / "inventory"
    inv.write_text("[backup_clients]\n"
                   f"web1 ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
           "ANSIBLE_REMOTE_TEMP": str(tmp_path / "ansible-tmp"), "ANSIBLE_RETRY_FILES_ENABLED": "0"}
    return subprocess.run(["ansible-playbook", "-i", str(inv), str(SITE), *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_playbook_syntax(tmp_path):
    r = playbook(tmp_path, "--syntax-check")
    assert r.returncode == 0, r.stdout + r.stderr


def test_dropins_are_validated_before_they_take_effect(tmp_path):
    etc = tmp_path / "etc"
    (etc / "odbackupd.toml.d").mkdir(parents=True)
    (etc / "odbackupd.toml").write_text(f'[daemon]\nstate_dir = "{tmp_path}/state"\n'
                                        f'spool_dir = "{tmp_path}/spool"\n')
    src = tmp_path / "srv"
    src.mkdir()
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    common = ["--tags", "dropins", "-e", f"odbackupd_config_dir={etc}",
              "-e", "odbackupd_reload=false", "-e", "ansible_become=false",
              "-e", json.dumps({"odbackupd_check_command": f"{sys.executable} -m odbackupd.main"}),
              "-e", f"odbackupd_metrics_file={textfile}/odbackupd.prom"]
    jobs = {"etc": {"sources": [str(src)], "schedule": "30 2 * * *"}}
    r = playbook(tmp_path, *common, "-e", json.dumps({"odbackupd_jobs": jobs}))
    assert r.returncode == 0, r.stdout + r.stderr
    dropin = etc / "odbackupd.toml.d" / "50-fleet.toml"
    text = dropin.read_text()
    assert 'hostname = "web1"' in text and 'random_delay = "30min"' in text
    assert f"{textfile}/odbackupd.prom" in text
    check = subprocess.run([sys.executable, "-m", "odbackupd.main",
                            "--config", str(etc / "odbackupd.toml"), "--check-config"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr

    bad = {"etc": {"sources": [str(src)], "schedule": "every night"}}  # not cron: must never land
    r = playbook(tmp_path, *common, "-e", json.dumps({"odbackupd_jobs": bad}))
    assert r.returncode != 0
    assert "job.etc.schedule" in r.stdout  # odbackupd --check-config's own words
    assert dropin.read_text() == text  # the running configuration is untouched
    assert sorted(p.name for p in (etc / "odbackupd.toml.d").iterdir()) == ["50-fleet.toml"]
