"""The login-needed journal record names the account that needs ``odctl login``, taken from
the error itself: the runner used to search the message for an account name, so with
accounts ``a`` and ``a2`` a failure of ``a2`` ("odctl login a2") was reported as ``a``."""
from __future__ import annotations

import logging
import textwrap

from odbackupd.journal import MSG_LOGIN_NEEDED
from odbackupd.runner import run_job

from .conftest import OneDriveSetup, account_toml, device_login


def test_login_needed_names_the_account_of_the_failing_destination(tmp_path, graph_emulator,
                                                                    caplog):
    emu = graph_emulator
    od = OneDriveSetup(tmp_path, emu)
    src = tmp_path / "tree"
    src.mkdir()
    (src / "a.txt").write_text("hello\n")
    od.write([src])
    text = od.config_path.read_text().replace('destinations = ["od"]',
                                              'destinations = ["od", "od2"]')
    od.config_path.write_text(text + account_toml(emu, "a2") + textwrap.dedent(f"""
        [destination.od2]
        type = "onedrive"
        account = "a2"
        folder = "{od.folder}2"
        """))
    device_login(emu, od.config(), "a")  # a is logged in, a2 is not
    caplog.set_level(logging.INFO)
    state = od.state()
    try:
        run = run_job(od.config(), "t", state)
    finally:
        state.close()
    assert not run.result.ok and run.login_needed
    needed = [getattr(r, "journal_fields", {}) for r in caplog.records
              if getattr(r, "journal_fields", {}).get("MESSAGE_ID") == MSG_LOGIN_NEEDED]
    assert [f["ACCOUNT"] for f in needed] == ["a2"]
