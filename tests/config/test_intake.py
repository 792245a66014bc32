"""[intake] and [intake.user.NAME]: checked with the rest of the file, by file, line and key."""
from __future__ import annotations

import textwrap

import pytest

from odbackupd.config import ConfigError, load_config_text

BASE = """\
[job.dumps]
drop_dir = "/srv/intake/pve1"

[intake]
listen = "127.0.0.1:8421"
max_file_size = "10GiB"
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config_text(BASE + textwrap.dedent(text), "odbackupd.toml")
    return [str(p) for p in e.value.problems]


def test_a_valid_intake_section() -> None:
    config = load_config_text(BASE + textwrap.dedent("""
        [intake.user.pve1]
        token_file = "intake_pve1"
        drop_job = "dumps"
        quota = "500GiB"
        """))
    assert config.intake.max_file_size == 10 * 2**30 and config.intake.listen == "127.0.0.1:8421"
    user = config.intake.users["pve1"]
    assert (user.drop_job == "dumps" and user.quota == 500 * 2**30
            and str(user.token_file) == "intake_pve1")
    assert load_config_text("").intake.users == {}


@pytest.mark.parametrize("text, expected", [
    ('[intake.user.a]\ntoken_file = "t"\ndrop_job = "nope"\n',
     "odbackupd.toml:9: at 'intake.user.a.drop_job': no job 'nope': "
     "add [job.nope] with a drop_dir"),
    ('[job.plain]\nsources = ["/etc"]\n[intake.user.a]\ntoken_file = "t"\ndrop_job = "plain"\n',
     "at 'intake.user.a.drop_job': job 'plain' has no drop_dir"),
    ('[intake.user.a]\ntoken_file = "t"\ndrop_job = "dumps"\npartial_dir = "/srv/intake/pve1/p"\n',
     "at 'intake.user.a.partial_dir': '/srv/intake/pve1/p' overlaps drop_dir"),
    ('[intake.user.a]\ndrop_job = "dumps"\n',
     "at 'intake.user.a': missing required key 'token_file'"),
    ('[intake.user.a]\ntoken_file = "t"\ndrop_job = "dumps"\nquota = "lots"\n',
     "at 'intake.user.a.quota':"),
    ('[intake.user.a]\ntoken_file = "t"\ndrop_job = "dumps"\ntoken = "abc"\n',
     "at 'intake.user.a.token': unknown key 'token'"),
    ('[intake.user."../x"]\ntoken_file = "t"\ndrop_job = "dumps"\n', "invalid name '../x'"),
])
def test_intake_problems_name_file_line_and_key(text: str, expected: str) -> None:
    found = problems(text)
    assert any(expected in p for p in found), found


def test_listen_and_unknown_intake_keys() -> None:
    with pytest.raises(ConfigError) as e:
        load_config_text('[intake]\nlisten = "8421"\nport = 1\n')
    text = str(e.value)
    assert "at 'intake.listen': invalid listen address '8421'" in text
    assert "at 'intake.port': unknown key 'port'" in text
    assert load_config_text('[intake]\nlisten = "/run/odbackupd-intake.sock"\n').intake.listen \
        == "/run/odbackupd-intake.sock"
