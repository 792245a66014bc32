"""[notify.NAME] and the notify/metrics_file keys: checked with the rest of the schema."""
from __future__ import annotations

import pytest

from odbackupd.config import ConfigError, load_config_text

JOB = '[job.etc]\nsources = ["/etc"]\n'


def problems(text: str) -> str:
    with pytest.raises(ConfigError) as e:
        load_config_text(text, "f.toml")
    return str(e.value)


def test_a_job_naming_an_unknown_notifier_is_refused_with_the_known_ones():
    text = '[notify.mail]\ntype = "webhook"\nurl = "https://h/x"\n' + JOB + 'notify = ["mial"]\n'
    msg = problems(text)
    assert ("f.toml:6: at 'job.etc.notify[0]': unknown notifier 'mial' (notifiers: mail); "
            "did you mean 'mail'?") in msg


def test_type_specific_keys_are_required_and_others_refused():
    msg = problems('[notify.n]\ntype = "email"\nurl = "https://h/x"\n[daemon]\nnotify = ["n"]\n')
    assert "at 'notify.n': missing required key 'smtp_host' (needed for type = \"email\")" in msg
    assert "missing required key 'mail_to'" in msg
    assert "at 'notify.n.url': 'url' does not apply to type = \"email\"" in msg
    msg = problems('[notify.n]\ntype = "webhook"\n[daemon]\nnotify = ["n"]\n')
    assert "missing required key 'url' (needed for type = \"webhook\")" in msg


def test_bad_values_name_the_key():
    msg = problems('[notify.n]\ntype = "webhook"\nurl = "ftp://h"\nheaders = ["NoColon"]\n'
                   'on = ["failure", "explosion"]\n[daemon]\nnotify = ["n"]\n')
    assert "at 'notify.n.url': invalid URL 'ftp://h'" in msg
    assert "at 'notify.n.headers[0]': invalid header 'NoColon'" in msg
    assert "at 'notify.n.on[1]': invalid value 'explosion'" in msg


def test_defaults_by_type_and_the_daemon_default():
    c = load_config_text(
        '[notify.hc]\ntype = "healthchecks"\nurl = "https://hc.example/p/1"\n'
        '[notify.m]\ntype = "webhook"\nurl = "https://n.example/t"\nrepeat = "6h"\n'
        '[daemon]\nnotify = ["m"]\n' + JOB + '[job.db]\nsources = ["/srv"]\nnotify = ["hc"]\n')
    assert c.notify["hc"].events == ("start", "success", "failure")
    assert (c.notify["m"].events == ("failure", "recovery", "login_expired")
            and c.notify["m"].repeat == 6 * 3600)
    from odbackupd.notify.queue import notifiers_for

    assert [n.name for n in notifiers_for(c, c.jobs["etc"])] == ["m"]
    assert [n.name for n in notifiers_for(c, c.jobs["db"])] == ["hc"]


def test_an_unused_notifier_is_a_warning():
    c = load_config_text('[notify.n]\ntype = "webhook"\nurl = "https://h/x"\n')
    assert any("notifier 'n' is not used by any job" in w for w in c.warnings)
