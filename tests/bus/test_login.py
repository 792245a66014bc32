"""Logging in to OneDrive through the daemon, end to end: a real ``odctl login`` process talks
to the real daemon on the private bus (StartLogin, LoginStatusChanged, CompleteLogin), the
Graph emulator stands in for Microsoft and for the user's browser, and backups to the
OneDrive destination then work, and stop working after ``odctl logout`` with the exit code
and advice a sysadmin relies on. No token, device code or authorization code may show in
the daemon's log (at debug level) or in any D-Bus reply.

(Unprivileged callers are refused StartLogin in
test_api.test_everyone_reads_but_only_admins_change.)
"""
from __future__ import annotations

import json
import stat
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from odbackupd.bus import names
from odbackupd.graph.tokencache import token_cache_path
from tests.graph.test_auth import cached_secrets, redirected_address
from tests.graph.test_auth_odctl import Odctl
from tests.layout import HOST
from tests.onedrive.conftest import OneDriveSetup

from .conftest import Daemon, PrivateBus, busctl, odctl


class OdctlProcess(Odctl):
    """A running daemon-side ``odctl`` (odctl.cli on the private bus) whose stderr lines (its
    prompts: the code, the URL) are read as they come, so the test can act on them while
    odctl waits: approve the code, paste the address."""

    def __init__(self, bus: PrivateBus, *args: str) -> None:  # noqa: D107 - as Odctl, another command
        self._start([sys.executable, "-m", "odctl.cli", *args], env=bus.env())


def login_status(bus: PrivateBus, account: str) -> tuple[dict, str]:
    """GetLoginStatus through busctl: the decoded dictionary and the raw reply text."""
    r = busctl(bus, "--json=short", "call", names.BUS_NAME, names.ROOT_PATH, names.MANAGER_IFACE,
               "GetLoginStatus", "s", account)
    assert r.returncode == 0, r.stderr
    reply = json.loads(r.stdout)["data"][0]
    return {k: v["data"] for k, v in reply.items()}, r.stdout


@pytest.fixture
def onedrive_daemon(graph_emulator, private_bus: PrivateBus, tmp_path: Path):  # noqa: ANN001, ANN201
    """The daemon serving a job "t" that goes to OneDrive account "a" on the emulator; not
    logged in yet. Logs at debug level, so the secret checks see everything it could say."""
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    for i in range(12):
        (src / "sub" / f"f{i}").write_bytes(bytes([i]) * (3000 * (i + 1)) + b"end\n")
    od = OneDriveSetup(tmp_path, graph_emulator)
    od.write([src], daemon_extra='log_level = "debug"\n')
    daemon = Daemon(od.config_path, private_bus)
    try:
        yield od, daemon
    finally:
        daemon.stop()


def daemon_log(od: OneDriveSetup) -> str:
    return (od.config_path.parent / "daemon.log").read_text()


def assert_kept_secret(od: OneDriveSetup, emu, secrets: list[str], *replies: str) -> None:  # noqa: ANN001
    """None of ``secrets``, nor the signed part of any upload/download URL the daemon used
    (they work without a token), is in the daemon's log or in the D-Bus ``replies``."""
    urls = {r["path"].split("?")[0] for r in emu.requests if r["host"] == "files"}
    assert urls, "the daemon used no pre-authenticated URL"
    log = daemon_log(od)
    assert "logged in as" in log  # the log is really there
    for s in [*secrets, *urls]:
        assert s not in log, f"a secret is in the daemon's log: {s[:12]}…"
        assert not any(s in r for r in replies), f"a secret is in a D-Bus reply: {s[:12]}…"


def test_device_login_backup_logout_through_the_daemon(onedrive_daemon, graph_emulator,
                                                       private_bus):
    od, daemon = onedrive_daemon
    emu = graph_emulator
    assert login_status(private_bus, "a")[0]["state"] == "none"

    login = OdctlProcess(private_bus, "login", "a")
    code = login.wait_for(r"enter the code (\w+)").group(1)
    assert login.proc.poll() is None  # waiting for the sign-in, not finished
    emu.approve_device_code(code)  # the user, in a browser on another machine
    rc, out, err = login.finish()
    assert rc == 0, out + err
    assert out == f"a: logged in as {emu.default_user}\n"
    assert "Traceback" not in err

    status, raw_status = login_status(private_bus, "a")
    assert status["state"] == "logged_in" and status["username"] == emu.default_user
    assert status["app_only"] is False
    cache = token_cache_path(od.state_dir, "a")
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600 and cache.stat().st_uid == 0
    secrets = cached_secrets(cache) + list(emu.device_codes)
    assert len(secrets) >= 4  # access, refresh, id token and the device code

    r = odctl(private_bus, "backup-now", "t", "--wait", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(r.stdout)["result"]
    assert result["status"] == "completed" and result["files"] == 12
    assert emu.exists(f"{od.folder}/{HOST}/t/{result['snapshot']}/manifest.json")

    r = odctl(private_bus, "logout", "a")
    assert r.returncode == 0 and r.stdout == "a: logged out\n", r.stderr
    assert not cache.exists()
    assert login_status(private_bus, "a")[0]["state"] == "none"

    r = odctl(private_bus, "backup-now", "t", "--wait")
    assert r.returncode == names.EXIT_NOT_LOGGED_IN, r.stdout + r.stderr
    assert "failed" in r.stderr and "odctl login a" in r.stderr
    r = odctl(private_bus, "backup-now", "t", "--wait", "--json")
    assert r.returncode == names.EXIT_NOT_LOGGED_IN
    failed = json.loads(r.stdout)["result"]
    assert failed["status"] == "failed" and failed["login_needed"] is True

    assert_kept_secret(od, emu, secrets, raw_status, out, err, r.stdout)
    assert daemon.alive
    emu.assert_no_violations()


def test_browser_login_through_the_daemon(onedrive_daemon, graph_emulator, private_bus):
    od, daemon = onedrive_daemon
    emu = graph_emulator
    login = OdctlProcess(private_bus, "login", "a", "--browser")
    url = login.wait_for(r"^\s+(https://\S+)$").group(1)
    assert url.startswith(emu.authority_url)
    redirected = redirected_address(emu, url)  # the browser, after the user signed in
    auth_code = parse_qs(urlsplit(redirected).query)["code"][0]
    login.paste(redirected)
    rc, out, err = login.finish()
    assert (rc, out) == (0, f"a: logged in as {emu.default_user}\n"), err

    status, raw_status = login_status(private_bus, "a")
    assert status["state"] == "logged_in" and status["username"] == emu.default_user
    cache = token_cache_path(od.state_dir, "a")
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    r = odctl(private_bus, "backup-now", "t", "--wait", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["result"]["status"] == "completed", r.stderr

    assert_kept_secret(od, emu, cached_secrets(cache) + [auth_code], raw_status, r.stdout)
    emu.assert_no_violations()


def test_browser_login_with_a_bad_paste_fails_and_keeps_nothing(onedrive_daemon, graph_emulator,
                                                                  private_bus):
    od, _ = onedrive_daemon
    login = OdctlProcess(private_bus, "login", "a", "--browser", "--json")
    login.wait_for(r"^\s+(https://\S+)$")
    login.paste("https://example.com/not-the-redirect")
    rc, out, err = login.finish()
    assert rc == names.EXIT_FAILED, out + err
    assert "authorization code" in err and "Traceback" not in err, (out, err)
    assert json.loads(out)["ok"] is False
    assert not token_cache_path(od.state_dir, "a").exists()
    status = login_status(private_bus, "a")[0]
    assert status["state"] == "failed" and "authorization code" in status["message"]
    graph_emulator.assert_no_violations()


def test_declined_device_login_fails_cleanly_through_the_daemon(onedrive_daemon, graph_emulator,
                                                                private_bus):
    od, daemon = onedrive_daemon
    login = OdctlProcess(private_bus, "login", "a", "--device-code")
    code = login.wait_for(r"enter the code (\w+)").group(1)
    graph_emulator.decline_device_code(code)  # the user said no on the sign-in page
    rc, out, err = login.finish()
    assert (rc, out) == (names.EXIT_FAILED, ""), err
    assert "odctl: a: login failed:" in err and "declined" in err and "Traceback" not in err
    status = login_status(private_bus, "a")[0]
    assert status["state"] == "failed" and "declined" in status["message"]
    assert not token_cache_path(od.state_dir, "a").exists()
    r = odctl(private_bus, "backup-now", "t", "--wait")
    assert r.returncode == names.EXIT_NOT_LOGGED_IN and "odctl login a" in r.stderr
    assert daemon.alive
    graph_emulator.assert_no_violations()


def test_refused_device_code_falls_back_to_the_browser_through_the_daemon(
        onedrive_daemon, graph_emulator, private_bus):
    """As the in-process login does: the daemon answers Error.DeviceCodeRefused and odctl
    carries on with the browser flow (it used to stop with the refusal)."""
    od, daemon = onedrive_daemon
    emu = graph_emulator
    emu.faults.add("error", "identity.devicecode", status=400, times=None)
    rc, out, err = OdctlProcess(private_bus, "login", "a").fall_back_to_the_browser(emu)
    assert (rc, out) == (0, f"a: logged in as {emu.default_user}\n"), err
    assert login_status(private_bus, "a")[0]["state"] == "logged_in"
    r = odctl(private_bus, "login", "a", "--device-code")  # no fallback when asked for none
    assert r.returncode == names.EXIT_FAILED and "refused a device-code login" in r.stderr, r.stderr
    assert "Traceback" not in daemon_log(od) and daemon.alive
    emu.assert_no_violations()


@pytest.mark.graphemu(mode="business")
def test_app_only_login_through_the_daemon_checks_the_credential(graph_emulator, private_bus,
                                                                  tmp_path, monkeypatch):
    """An app-only account has nobody to sign in: the daemon checks its credential, as odctl
    does in process (it used to answer "StartLogin failed inside the daemon; see its log")."""
    from tests.graph.test_auth import APP_ID, SECRET_NAME, config_text

    emu = graph_emulator
    emu.register_app(APP_ID, secret="s3cr3t")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / SECRET_NAME).write_text("s3cr3t")
    # the daemon's, as LoadCredential= gives it
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    (tmp_path / "state").mkdir()
    config = tmp_path / "odbackupd.toml"
    config.write_text(config_text(emu, tmp_path, tenant=emu.tenant, client_id=APP_ID,
                                  extra=f'client_secret_file = "{SECRET_NAME}"\n'
                                  f'drive_id = "{emu.site_drive_id}"'))
    daemon = Daemon(config, private_bus)
    try:
        r = odctl(private_bus, "login", "me")
        assert (r.returncode, r.stdout) == (
            0, f"me: the app-only credential works (client {APP_ID}, tenant {emu.tenant})\n"
        ), r.stderr
        (creds / SECRET_NAME).write_text("wrong")
        r = odctl(private_bus, "login", "me", "--json")
        assert r.returncode == names.EXIT_FAILED and json.loads(r.stdout)["ok"] is False
        assert "AADSTS7000215" in r.stderr and "inside the daemon" not in r.stderr
        assert "Traceback" not in (tmp_path / "daemon.log").read_text() and daemon.alive
    finally:
        daemon.stop()
    emu.assert_no_violations()
