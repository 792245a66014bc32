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
