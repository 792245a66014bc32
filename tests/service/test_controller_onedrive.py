"""The controller with a OneDrive destination on the Graph emulator: logging in through the
controller (what `odctl login` does over D-Bus), a revoked login failing a run with the
login-needed journal event, and no token in any log line."""
from __future__ import annotations

import asyncio
import json
import logging

from odbackupd.graph.tokencache import token_cache_path
from odbackupd.journal import MSG_LOGIN_NEEDED, MSG_RUN_FAILED
from odbackupd.service.controller import Controller
from tests.onedrive.conftest import OneDriveSetup

from .conftest import Recorder


def _secrets(state_dir) -> list[str]:  # noqa: ANN001
    """Every token the daemon holds for account 'a' (to prove none is ever logged)."""
    doc = json.loads(token_cache_path(state_dir, "a").read_text())
    return [v["secret"] for kind in ("AccessToken", "RefreshToken", "IdToken")
            for v in doc.get(kind, {}).values() if v.get("secret")]


def test_login_through_controller_then_revoked_login_is_reported(tmp_path, graph_emulator, caplog):
    emu = graph_emulator
    od = OneDriveSetup(tmp_path, emu)
    src = tmp_path / "tree"
    src.mkdir()
    (src / "a.txt").write_text("hello\n")
    od.write([src])
    caplog.set_level(logging.DEBUG)

    async def body() -> None:
        ctl = Controller(od.config(), od.config_path)
        rec = Recorder()
        ctl.subscribe(rec)
        await ctl.start()
        try:
            assert ctl.login_status("a")["state"] == "none"
            pending = await ctl.start_login("a", "device")
            assert (pending["state"] == "pending" and pending["user_code"]
                    and pending["verification_uri"])
            emu.approve_device_code(pending["user_code"])
            await rec.wait(lambda: ctl.login_status("a")["state"] == "logged_in")
            assert ctl.login_status("a")["username"] == emu.default_user
            ok = await ctl.backup_now("t")
            assert (await rec.finished(ok))["status"] == "completed"
            secrets = _secrets(od.state_dir)
            assert secrets

            emu.revoke_tokens()
            bad = await ctl.backup_now("t")
            failed = await rec.finished(bad)
            assert failed["status"] == "failed" and "odctl login a" in failed["message"]
            info = ctl.daemon_info()
            assert (info["last_failure"]["run_id"] == bad
                    and "last failure: t" in info["status_line"])
            return secrets
        finally:
            await ctl.stop()

    secrets = asyncio.run(body())
    fields = [getattr(r, "journal_fields", {}) for r in caplog.records]
    needed = [f for f in fields if f.get("MESSAGE_ID") == MSG_LOGIN_NEEDED]
    assert len(needed) == 1 and needed[0]["ACCOUNT"] == "a" and needed[0]["JOB"] == "t"
    assert any(f.get("MESSAGE_ID") == MSG_RUN_FAILED for f in fields)
    text = "\n".join(r.getMessage() for r in caplog.records)
    for s in secrets:
        assert s not in text
