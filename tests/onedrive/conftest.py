"""A configuration with one OneDrive destination on the Graph emulator, as a sysadmin
writes it, and a real device-code login through graph/auth.py."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from odbackupd.config import load_config
from odbackupd.destinations.factory import open_destination
from odbackupd.graph.http import make_session
from odbackupd.state import StateStore
from tests.snapshot.conftest import age_key  # noqa: F401 - the same real age-keygen key

ROOT = Path(__file__).resolve().parents[2]
CHUNK = 320 * 1024


def account_toml(emu, name: str = "a") -> str:  # noqa: ANN001
    """An ``[account.NAME]`` section for the emulator, as a sysadmin would write it."""
    return textwrap.dedent(f"""
        [account.{name}]
        client_id = "{emu.client_id}"
        tenant = "{emu.tenant}"
        authority_url = "{emu.authority_url}"
        graph_url = "{emu.graph_url}"
        ca_bundle = "{emu.ca_pem}"
        """)


def device_login(emu, config, name: str = "a") -> str:  # noqa: ANN001
    """``odctl login NAME`` as a user does it: device code, approved in the 'browser'."""
    from odbackupd.graph.auth import Authenticator

    acct = config.accounts[name]
    auth = Authenticator(name, acct, config.daemon.state_dir, session=make_session(acct.ca_bundle))
    login = auth.begin_device_login()
    emu.approve_device_code(login.user_code)
    return auth.complete_device_login(login)


class OneDriveSetup:
    def __init__(self, tmp_path: Path, emu) -> None:  # noqa: ANN001
        self.tmp = tmp_path
        self.emu = emu
        self.state_dir = tmp_path / "state"
        self.spool = tmp_path / "spool"
        self.config_path = tmp_path / "odbackupd.toml"
        self.folder = "Backups/odbackupd"

    def write(self, sources: list[Path], *, recipients: list[str] = (),
              volume_size: str = "1MiB", drive: str = "", job_extra: str = "",
              daemon_extra: str = "", parallel: int = 3) -> Path:
        emu = self.emu
        rec = f"recipients = {list(recipients)!r}\n" if recipients else ""
        srcs = ", ".join(f'"{s}"' for s in sources)
        self.config_path.write_text(textwrap.dedent(f"""\
            [daemon]
            state_dir = "{self.state_dir}"
            spool_dir = "{self.spool}"
            max_parallel_uploads = {parallel}
            """) + daemon_extra + account_toml(emu) + drive + textwrap.dedent(f"""
            [destination.od]
            type = "onedrive"
            account = "a"
            folder = "{self.folder}"
            chunk_size = "320KiB"

            [job.t]
            sources = [{srcs}]
            destinations = ["od"]
            volume_size = "{volume_size}"
            compression_level = 1
            """) + rec + job_extra)
        return self.config_path

    def config(self):  # noqa: ANN201
        return load_config(self.config_path)

    def login(self) -> str:
        return device_login(self.emu, self.config())

    def state(self) -> StateStore:
        return StateStore(self.state_dir / "state.db")

    def destination(self, state: StateStore | None = None):  # noqa: ANN201
        return open_destination(self.config(), "od", state)

    def once(self, *extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "odbackupd.main", "--config", str(self.config_path),
             "--once", "t", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )


def wait_until(cond: Callable[[], bool], what: str, timeout: float = 60.0,
               proc: subprocess.Popen | None = None) -> None:
    """Poll ``cond`` (an observable state, not a duration) until it holds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended before {what}: {proc.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@pytest.fixture
def od(tmp_path: Path, graph_emulator) -> OneDriveSetup:  # noqa: ANN001
    return OneDriveSetup(tmp_path, graph_emulator)
