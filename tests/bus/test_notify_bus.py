"""odctl notify test through the daemon: the message is sent with the daemon's own
credentials ($CREDENTIALS_DIRECTORY, as LoadCredential= gives them), which odctl's shell
cannot read; only admins may ask."""
from __future__ import annotations

import hashlib
import hmac
import json
import os

from tests.notify.conftest import Receiver

from .conftest import Daemon, PrivateBus, as_user, odctl, write_config


def test_notify_test_goes_through_the_daemon_with_its_credentials(private_bus: PrivateBus, tmp_path,
                                                                   monkeypatch):
    receiver = Receiver().start()
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "hook-key").write_text("daemon-only-key\n")
    cfg = write_config(tmp_path,
                       extra_jobs=f'notify = ["n"]\n\n[notify.n]\ntype = "webhook"\n'
                       f'url = "{receiver.url}/hook"\nsecret_file = "hook-key"\n')
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))  # the daemon's environment
    d = Daemon(cfg, private_bus)
    try:
        env = {k: v for k, v in private_bus.env().items() if k != "CREDENTIALS_DIRECTORY"}
        r = odctl(private_bus, "notify", "test", "n", env=env)
        assert r.returncode == 0, r.stderr
        assert "sent by the daemon" in r.stdout
        [req] = receiver.wait_for(1)
        assert json.loads(req.body)["event"] == "test"
        mac = hmac.new(b"daemon-only-key", req.body, hashlib.sha256).hexdigest()
        assert req.headers["X-Odbackupd-Signature"] == f"sha256={mac}"

        r = odctl(private_bus, "notify", "test", "nope", env=env)
        assert r.returncode == 3 and "no notifier 'nope' (notifiers: n)" in r.stderr

        import subprocess
        import sys

        r = subprocess.run(as_user("nobody",
                                   [sys.executable, "-m", "odctl.cli", "notify", "test", "n"],
                                   init_groups=False),
                           capture_output=True, text=True, env=env, timeout=120, cwd=os.getcwd())
        assert r.returncode == 5, r.stdout + r.stderr  # access denied: sending is for admins
        assert len(receiver.requests) == 1
    finally:
        d.stop()
        receiver.stop()
