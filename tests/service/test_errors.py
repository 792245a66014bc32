"""Every named error leaves the controller as itself, with its structured fields, whatever
raised it below (a destination, an account's login service, the configuration): what the
D-Bus adapter turns into ``org.odbackupd.ODBackup1.Error.NAME`` and odctl into its exit code.
(AccessDenied is the D-Bus layer's: tests/bus/test_policy.py.)"""
from __future__ import annotations

import asyncio

import pytest

from odbackupd.bus import names
from odbackupd.config import load_config
from odbackupd.service.controller import Controller
from odbackupd.service.errors import (
    Busy,
    ControllerError,
    DeviceCodeRefused,
    Failed,
    InvalidArgs,
    InvalidConfig,
    NoSuchAccount,
    NoSuchJob,
    NoSuchNotifier,
    NotLoggedIn,
)
from tests.graph.test_auth import APP_ID, SECRET_NAME, config_text

from .conftest import running


def test_every_code_has_its_dbus_name():
    for cls in (Busy, DeviceCodeRefused, Failed, InvalidArgs, InvalidConfig, NoSuchAccount,
                NoSuchJob,
                NoSuchNotifier, NotLoggedIn):
        assert names.error_for_code(cls.code).code == (cls.code if cls is not Failed else "Failed")
    refused = names.error_for_code("DeviceCodeRefused").name
    assert refused == "org.odbackupd.ODBackup1.Error.DeviceCodeRefused"


def test_local_errors_are_named_with_their_fields(daemon, tmp_path):
    daemon.write({"etc": ""})
    daemon.add_drop_job("inbox", tmp_path / "drop")

    async def body() -> None:
        async with running(daemon) as (ctl, _):
            with pytest.raises(NoSuchJob) as e:
                await ctl.backup_now("nope")
            assert e.value.job == "nope" and "jobs: etc, inbox" in str(e.value)
            with pytest.raises(NoSuchJob):
                ctl.cancel("nope")
            with pytest.raises(InvalidArgs) as a:
                await ctl.backup_now("inbox")
            assert a.value.argument == "job"
            with pytest.raises(NoSuchAccount) as n:
                ctl.login_status("nope")
            assert n.value.account == "nope"
            with pytest.raises(NoSuchNotifier) as s:
                await ctl.notify_test("nope")
            assert s.value.notifier == "nope"
            # a destination that cannot be read: Failed, naming it (not a traceback)
            daemon.dest.rmdir()
            daemon.dest.write_text("not a directory\n")
            with pytest.raises(Failed) as f:
                await ctl.list_snapshots("etc")
            assert f.value.code == "Failed" and "usb" in str(f.value)
            daemon.path.write_text("[daemon\n")
            with pytest.raises(InvalidConfig) as c:
                await ctl.reload()
            assert f"{daemon.path}:" in str(c.value)
        # stopped: a request is refused as Busy, nothing is recorded
        with pytest.raises(Busy, match="stopping"):
            await ctl.backup_now("etc")

    asyncio.run(body())


def _controller(emu, tmp_path, **kw) -> Controller:  # noqa: ANN003
    (tmp_path / "state").mkdir(exist_ok=True)
    path = tmp_path / "odbackupd.toml"
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    path.write_text(config_text(emu, tmp_path,
                                **kw) + f'\n[job.t]\nsources = ["{src}"]\ndestinations = ["od"]\n')
    return Controller(load_config(path), path)


def test_login_errors_are_named_and_carry_the_account(graph_emulator, tmp_path):
    emu = graph_emulator

    async def body() -> None:
        ctl = _controller(emu, tmp_path)
        await ctl.start()
        try:
            with pytest.raises(NotLoggedIn) as e:
                await ctl.list_snapshots("t")  # nobody logged in yet
            assert e.value.account == "me" and "odctl login me" in str(e.value)
            with pytest.raises(InvalidArgs) as a:
                await ctl.start_login("me", "carrier-pigeon")
            assert a.value.argument == "flow"
            emu.faults.add("error", "identity.devicecode", status=400)
            with pytest.raises(DeviceCodeRefused) as r:
                await ctl.start_login("me", "device")
            assert r.value.account == "me" and "--browser" in str(r.value)
            browser = await ctl.start_login("me", "browser")  # what odctl falls back to
            assert browser["state"] == "pending" and browser["url"].startswith(emu.authority_url)
            with pytest.raises(Failed) as f:
                await ctl.complete_login("me", "https://example.com/not-the-redirect")
            assert "authorization code" in str(f.value)
            assert ctl.login_status("me")["state"] == "failed"
        finally:
            await ctl.stop()

    asyncio.run(body())


@pytest.mark.graphemu(mode="business")
def test_app_only_login_through_the_daemon_checks_the_credential(graph_emulator, tmp_path,
                                                                 monkeypatch):
    """It used to escape as a GraphError: "failed inside the daemon; see its log"."""
    emu = graph_emulator
    emu.register_app(APP_ID, secret="s3cr3t")
    creds = tmp_path / "creds"
    creds.mkdir()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))

    async def body() -> None:
        ctl = _controller(emu, tmp_path, tenant=emu.tenant, client_id=APP_ID,
                          extra=f'client_secret_file = "{SECRET_NAME}"\n'
                                f'drive_id = "{emu.site_drive_id}"')
        await ctl.start()
        try:
            with pytest.raises(InvalidConfig, match=f"systemd credential '{SECRET_NAME}'"):
                await ctl.start_login("me")  # unreadable: a configuration problem (odctl exit 2)
            (creds / SECRET_NAME).write_text("s3cr3t")
            ok = await ctl.start_login("me")
            assert ok["state"] == "logged_in" and ok["app_only"] is True and ok["flow"] == "app"
            assert ok["message"] == (f"the app-only credential works (client {APP_ID}, "
                                     f"tenant {emu.tenant})")
            assert ctl.login_status("me")["state"] == "logged_in"
            (creds / SECRET_NAME).write_text("wrong")  # rotated badly: a new login reads it again
            with pytest.raises(NotLoggedIn) as e:
                await ctl.start_login("me")
            assert e.value.account == "me" and "AADSTS7000215" in str(e.value)
            assert "wrong" not in str(e.value)
        finally:
            await ctl.stop()

    asyncio.run(body())
    assert issubclass(NotLoggedIn, ControllerError)


def test_stop_does_not_wait_for_a_pending_device_login(graph_emulator, tmp_path):
    """The user may never come: stopping cancels the wait instead of sitting out the stop
    timeout (which systemd would end with SIGKILL)."""
    import time

    async def body() -> float:
        ctl = _controller(graph_emulator, tmp_path)
        await ctl.start()
        pending = await ctl.start_login("me", "device")
        assert pending["state"] == "pending" and pending["user_code"]
        t0 = time.monotonic()
        await ctl.stop(timeout=120)
        return time.monotonic() - t0

    assert asyncio.run(body()) < 60
