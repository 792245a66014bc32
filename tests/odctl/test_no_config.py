"""A machine without /etc/odbackupd/odbackupd.toml (e.g. right after the quick start, whose
configuration is elsewhere): naming a job says which file was not there and what to give."""
from __future__ import annotations

import pytest

from odbackupd.bus.names import EXIT_NOT_FOUND
from odbackupd.config.paths import DEFAULT_CONFIG
from odbackupd.config.validate import default_config
from odctl import offline
from odctl.errors import CliError


def test_a_job_named_without_any_configuration_file_says_to_give_config():
    with pytest.raises(CliError) as e:
        offline.job(default_config(), "demo")
    assert e.value.code == EXIT_NOT_FOUND
    msg = str(e.value)
    assert "no job 'demo'" in msg and f"{DEFAULT_CONFIG} does not exist" in msg
    assert "--config" in msg and "\n" not in msg


def test_odbackupd_once_without_any_configuration_file_says_to_give_config(capsys):
    from odbackupd.main import EXIT_CONFIG, run_once

    assert run_once(default_config(), "demo") == EXIT_CONFIG
    err = capsys.readouterr().err.strip()
    assert err.startswith("odbackupd: no job 'demo'") and f"{DEFAULT_CONFIG} does not exist" in err
    assert "--config" in err and "\n" not in err
