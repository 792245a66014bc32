"""A login or logout through the daemon (what odctl login/logout do over D-Bus) rewrites
the metrics file: odbackupd_account_login_ok follows it without waiting for a run."""
from __future__ import annotations

import asyncio

from odbackupd.service.controller import Controller
from tests.onedrive.conftest import OneDriveSetup
from tests.prometheus.test_metrics_file import parse, value

from .conftest import Recorder


def test_login_and_logout_through_the_controller_update_the_metrics(tmp_path, graph_emulator):
    emu = graph_emulator
    od = OneDriveSetup(tmp_path, emu)
    src = tmp_path / "tree"
    src.mkdir()
    (src / "a.txt").write_text("hello\n")
    prom = tmp_path / "odbackupd.prom"
    od.write([src], daemon_extra=f'metrics_file = "{prom}"\n')

    def login_ok() -> float | None:
        return (value(parse(prom.read_text()), "odbackupd_account_login_ok", account="a")
                if prom.exists() else None)

    async def body() -> None:
        ctl = Controller(od.config(), od.config_path)
        rec = Recorder()
        ctl.subscribe(rec)
        await ctl.start()
        try:
            pending = await ctl.start_login("a", "device")
            emu.approve_device_code(pending["user_code"])
            await rec.wait(lambda: ctl.login_status("a")["state"] == "logged_in")
            await rec.wait(lambda: login_ok() == 1)
            await ctl.logout("a")
            assert login_ok() == 0
        finally:
            await ctl.stop()

    asyncio.run(body())
