"""odbackupd.config.paths: the one way odbackupd, odctl and the intake find and load the file."""
from __future__ import annotations

import pytest

from odbackupd.config import ConfigError
from odbackupd.config.paths import load


def test_an_absent_default_means_defaults_but_an_absent_named_file_is_an_error(tmp_path):
    missing = tmp_path / "odbackupd.toml"
    cfg = load(missing)  # as the default path: a machine that has none runs on defaults
    assert cfg.jobs == {} and cfg.path is None
    with pytest.raises(ConfigError) as e:
        load(missing, explicit=True)
    assert str(missing) in str(e.value)


def test_a_present_file_is_loaded_with_its_drop_ins(tmp_path):
    path = tmp_path / "odbackupd.toml"
    path.write_text('[destination.d]\ntype = "local"\npath = "/srv/b"\n')
    (tmp_path / "odbackupd.toml.d").mkdir()
    (tmp_path / "odbackupd.toml.d" / "web.toml").write_text('[job.web]\nsources = ["/srv/www"]\n'
                                                           'destinations = ["d"]\n')
    assert sorted(load(path).jobs) == ["web"]
