"""A run that completes with warnings (files the daemon's user cannot read) is a warning
for a notifier that asks for it, a success for one that does not; the log tail says why."""
from __future__ import annotations

import json
import os

from odbackupd.config import load_config
from odbackupd.notify.deliver import deliver_due
from odbackupd.runner import run_job
from odbackupd.state import StateStore
from tests.config.conftest import as_unprivileged
from tests.snapshot.conftest import Setup
from tests.snapshot.test_unprivileged import _give_to_nobody, shared_dir  # noqa: F401 - fixture


def test_a_run_with_warnings(shared_dir, receiver):  # noqa: F811
    receiver.start()
    src = shared_dir / "src"
    src.mkdir()
    (src / "ok.txt").write_text("readable\n")
    setup = Setup(shared_dir)
    cfg = setup.write([src], extra='notify = ["w", "s"]\n')
    cfg.write_text(cfg.read_text()
                   + f'\n[notify.w]\ntype = "webhook"\nurl = "{receiver.url}/w"\non = ["warning"]\n'
                   f'\n[notify.s]\ntype = "webhook"\nurl = "{receiver.url}/s"\non = ["success"]\n')
    _give_to_nobody(shared_dir)
    secret = src / "key.pem"
    secret.write_text("-----BEGIN PRIVATE KEY-----\n")
    os.chmod(secret, 0o600)  # root's alone
    config = load_config(cfg)

    def backup() -> str:
        state = StateStore(config.daemon.state_dir / "state.db")
        try:
            return run_job(config, "t", state).result.status
        finally:
            state.close()

    assert as_unprivileged(backup) == "completed with warnings"
    state = StateStore(config.daemon.state_dir / "state.db")
    try:
        assert deliver_due(config, state) == 2
    finally:
        state.close()
    docs = {r.path: json.loads(r.body) for r in receiver.wait_for(2)}
    assert docs["/w"]["event"] == "warning" and docs["/w"]["warnings"] == 1
    assert (docs["/w"]["title"].endswith(" t WARNING")
            and f"{secret}: Permission denied" in docs["/w"]["log"])
    assert docs["/s"]["event"] == "success" and docs["/s"]["result"] == "completed with warnings"
