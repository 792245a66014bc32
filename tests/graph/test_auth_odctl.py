"""``odctl login`` / ``odctl logout`` in process (odctl/login.py), driven as a sysadmin
would: a real config file, a real odctl process reading the pasted address from its
stdin, the emulator's sign-in page standing in for the browser."""
from __future__ import annotations

import argparse
import io
import json
import queue
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from odbackupd.config import load_config
from odbackupd.graph.auth import Authenticator
from odctl.login import add_login_parsers, run_login, run_logout

from .test_auth import APP_ID, SECRET_NAME, config_text, graph_get, redirected_address


def write_config(emu, tmp_path: Path, **kw) -> Path:
    (tmp_path / "state").mkdir(exist_ok=True)
    path = tmp_path / "odbackupd.toml"
    path.write_text(config_text(emu, tmp_path, **kw))
    return path


class Odctl:
    """A running ``odctl login|logout`` process whose stderr lines we can wait for."""

    def __init__(self, config: Path, *argv: str) -> None:
        self._start([sys.executable, "-m", "odctl.login", "--config", str(config), *argv])

    def _start(self, cmd: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)
            self.lines.put(line)
        self.lines.put("")  # EOF

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match:
        """The first stderr line matching ``pattern`` (fails at EOF or timeout)."""
        while True:
            line = self.lines.get(timeout=timeout)
            assert line, f"odctl ended without printing {pattern!r}: {''.join(self.stderr)}"
            m = re.search(pattern, line)
            if m:
                return m

    def fall_back_to_the_browser(self, emu) -> tuple[int, str, str]:  # noqa: ANN001
        """The device code was refused: odctl says so, shows the browser's address, and the
        user pastes where the emulator's sign-in page sent them."""
        self.wait_for(r"refused a device-code login")
        self.wait_for(r"Trying the browser flow instead")
        self.paste(redirected_address(emu, self.wait_for(r"^\s+(https://\S+)$").group(1)))
        return self.finish()

    def paste(self, text: str) -> None:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 30) -> tuple[int, str, str]:
        # not communicate(): it would read stderr too, racing our reader thread for lines
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        self.proc.wait(timeout=timeout)  # stdout is a few lines: it cannot fill the pipe
        out = self.proc.stdout.read()
        self._reader.join(timeout=timeout)
        return self.proc.returncode, out, "".join(self.stderr)


def test_device_code_login_as_a_user_runs_it(graph_emulator, tmp_path):
    emu = graph_emulator
    config = write_config(emu, tmp_path)
    odctl = Odctl(config, "login", "me")
    code = odctl.wait_for(r"enter the code (\w+)").group(1)
    odctl.wait_for(r"Waiting for the sign-in")
    emu.approve_device_code(code)  # the user, in a browser on another machine
    rc, out, err = odctl.finish()
    assert (rc, out) == (0, "account 'me': logged in as alice@example.com\n"), err
    assert "Traceback" not in err
    daemon = Authenticator("me", load_config(config).accounts["me"], tmp_path / "state")
    assert graph_get(emu, daemon.access_token()).status_code == 200
    emu.assert_no_violations()


def test_browser_login_reads_the_pasted_address_from_stdin(graph_emulator, tmp_path):
    emu = graph_emulator
    config = write_config(emu, tmp_path)
    odctl = Odctl(config, "login", "me", "--browser", "--json")
    url = odctl.wait_for(r"^  (https://\S+)$").group(1)
    odctl.wait_for(r"paste it here:$")
    odctl.paste(redirected_address(emu, url))
    rc, out, err = odctl.finish()
    assert rc == 0, err
    assert json.loads(out) == {"ok": True, "account": "me", "username": "alice@example.com",
                               "app_only": False}
    emu.assert_no_violations()


def test_refused_device_code_falls_back_to_the_browser_flow(graph_emulator, tmp_path):
    emu = graph_emulator
    config = write_config(emu, tmp_path)
    emu.faults.add("error", "identity.devicecode", status=400)
    rc, out, err = Odctl(config, "login", "me").fall_back_to_the_browser(emu)
    assert (rc, out) == (0, "account 'me': logged in as alice@example.com\n"), err
    emu.assert_no_violations()


# ------------------------------------------------------------------------------ in process
def parse(argv: list[str], parents: tuple = ()) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="odctl", parents=list(parents))
    add_login_parsers(ap.add_subparsers(dest="command", required=True), parents=parents)
    return ap.parse_args(argv)


def run(config_path: Path, argv: list[str]) -> tuple[int, str, str]:
    args = parse(argv)
    out, err = io.StringIO(), io.StringIO()
    rc = args.login_handler(args, load_config(config_path), out, err)
    return rc, out.getvalue(), err.getvalue()


def test_device_code_only_does_not_fall_back_and_says_what_to_do(graph_emulator, tmp_path):
    emu = graph_emulator
    config = write_config(emu, tmp_path)
    emu.faults.add("error", "identity.devicecode", status=400)
    rc, out, err = run(config, ["login", "me", "--device-code"])
    assert (rc, out) == (1, "")
    assert err.startswith("odctl: account 'me': the login service refused a device-code login")
    assert "Personal accounts: use odctl login --browser." in err
    emu.assert_no_violations()


def test_unknown_account_is_exit_3_and_names_the_known_ones(graph_emulator, tmp_path):
    config = write_config(graph_emulator, tmp_path)
    rc, out, err = run(config, ["login", "nope", "--json"])
    assert rc == 3
    assert json.loads(out) == {"ok": False, "account": "nope",
                               "error": f"no account 'nope' in {config} (accounts: me)"}
    assert err == f"odctl: no account 'nope' in {config} (accounts: me)\n"
    assert run(config, ["logout", "nope"])[0] == 3


def test_empty_paste_fails_cleanly(graph_emulator, tmp_path, monkeypatch):
    config = write_config(graph_emulator, tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    rc, out, err = run(config, ["login", "me", "--browser"])
    assert rc == 1 and out == ""
    assert err.endswith("odctl: account 'me': no address was pasted; run odctl login me "
                        "--browser again\n")
    assert not (tmp_path / "state" / "tokens" / "me.json").exists()


def test_logout_deletes_the_tokens_and_says_who_was_logged_in(graph_emulator, tmp_path):
    emu = graph_emulator
    config = write_config(emu, tmp_path)
    auth = Authenticator("me", load_config(config).accounts["me"], tmp_path / "state")
    started = auth.begin_browser_login()
    assert auth.complete_browser_login(started, redirected_address(emu, started.url)) == \
        "alice@example.com"

    rc, out, _ = run(config, ["logout", "me", "--json"])
    assert rc == 0
    assert json.loads(out) == {"ok": True, "account": "me", "was_logged_in": True,
                               "username": "alice@example.com", "app_only": False}
    assert list((tmp_path / "state" / "tokens").iterdir()) == []
    assert run(config, ["logout", "me"])[:2] == (0, "account 'me' was not logged in\n")
    emu.assert_no_violations()


@pytest.mark.graphemu(mode="business")
def test_app_only_login_checks_the_credential(graph_emulator, tmp_path, monkeypatch):
    emu = graph_emulator
    emu.register_app(APP_ID, secret="s3cr3t")
    config = write_config(emu, tmp_path, tenant=emu.tenant, client_id=APP_ID,
                          extra=f'client_secret_file = "{SECRET_NAME}"\n'
                                f'drive_id = "{emu.site_drive_id}"')
    creds = tmp_path / "creds"
    creds.mkdir()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    rc, out, err = run(config, ["login", "me"])
    assert rc == 2 and out == ""  # a configuration problem: the credential is missing
    assert f"systemd credential '{SECRET_NAME}' is not in $CREDENTIALS_DIRECTORY" in err

    (creds / SECRET_NAME).write_text("s3cr3t")
    rc, out, err = run(config, ["login", "me"])
    assert (rc, err) == (0, "")
    assert out == (f"account 'me': the app-only credential works (client {APP_ID}, tenant "
                   f"{emu.tenant})\n")
    (creds / SECRET_NAME).write_text("wrong")
    rc, out, err = run(config, ["login", "me", "--json"])
    assert rc == 1 and json.loads(out)["ok"] is False
    assert "AADSTS7000215" in err and "wrong" not in err
    emu.assert_no_violations()


def test_parsers_take_odctls_common_options_without_clashing():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    args = parse(["login", "me", "--browser", "--json"], parents=(common,))
    assert (args.account, args.browser, args.device_code, args.json) == ("me", True, False, True)
    assert args.login_handler is run_login
    assert parse(["logout", "me"]).login_handler is run_logout
    with pytest.raises(SystemExit):
        parse(["login", "me", "--browser", "--device-code"])


def test_unreachable_login_service_is_one_line_not_a_traceback(graph_emulator, tmp_path):
    emu = graph_emulator
    config = write_config(emu, tmp_path)
    emu.stop()
    rc, out, err = run(config, ["login", "me"])
    assert rc == 1 and out == ""
    assert err.startswith("odctl: account 'me': cannot reach the login service 127.0.0.1:")
    assert err.count("\n") == 1
    with pytest.raises(requests.ConnectionError):  # the service really is gone
        requests.get(emu.authority_url, verify=emu.ca_pem, timeout=5)
