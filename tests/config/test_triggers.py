"""The trigger keys together: drop-only jobs, what watch/schedule/quiet_period need, and
where a drop directory must not be (its files are deleted once stored)."""

from __future__ import annotations

from pathlib import Path

import pytest

from odbackupd.config import load_config_text

from .conftest import marked_line, problems_of

USB = '[destination.usb]\ntype = "local"\npath = "/mnt/usb"\n'


def test_drop_only_job_is_valid():
    config = load_config_text(
        '[job.intake]\ndrop_dir = "/srv/drop"\nquiet_period = "30s"\n', "t.toml")
    job = config.jobs["intake"]
    assert job.sources == () and job.drop_dir == Path("/srv/drop") and job.quiet_period == 30
    assert config.warnings == ()  # quiet_period is the drop directory's settle time
    # an explicitly empty list says the same
    assert load_config_text(
        '[job.i]\nsources = []\ndrop_dir = "/srv/drop"\n').jobs["i"].sources == ()


@pytest.mark.parametrize(
    "text, key, message",
    [
        (
            "[job.etc]  # <--\nkeep_last = 3\n",
            "job.etc",
            "missing required key 'sources' (for example: sources = [\"/etc\", \"/srv/git\"]); "
            "a job needs sources, a drop_dir, or both",
        ),
        (
            "[job.etc]\nsources = []  # <--\n",
            "job.etc.sources",
            "must not be empty (a job without sources needs a drop_dir)",
        ),
        (
            '[job.in]\ndrop_dir = "/srv/drop"\nwatch = true  # <--\n',
            "job.in.watch",
            "watch = true needs sources to watch; this job only has a drop_dir",
        ),
        (
            '[job.in]\ndrop_dir = "/srv/drop"\nschedule = "@daily"  # <--\n',
            "job.in.schedule",
            "a schedule needs sources to back up; this job only has a drop_dir",
        ),
        (
            '[daemon]\nspool_dir = "/var/cache/odb"\n'
            '[job.in]\ndrop_dir = "/var/cache/odb/in"  # <--\n',
            "job.in.drop_dir",
            "'/var/cache/odb/in' overlaps the daemon's spool_dir '/var/cache/odb'",
        ),
        (
            '[job.in]\ndrop_dir = "/var/lib"  # <--\n',
            "job.in.drop_dir",
            "'/var/lib' overlaps the daemon's state_dir '/var/lib/odbackupd'",
        ),
        (
            USB + '[job.in]\ndrop_dir = "/mnt/usb/in"  # <--\ndestinations = ["usb"]\n',
            "job.in.drop_dir",
            "'/mnt/usb/in' overlaps destination 'usb' (/mnt/usb): stored snapshots would be "
            "taken as dropped files and deleted",
        ),
        (
            '[job.in]\ndrop_dir = "/var/backups"  # <--\n',
            "job.in.drop_dir",
            "overlaps destination 'local' (/var/backups/odbackupd)",
        ),
    ],
    ids=["no sources nor drop_dir", "empty sources", "watch without sources",
         "schedule without sources", "drop_dir in the spool", "state_dir in drop_dir",
         "drop_dir in a destination", "builtin destination in drop_dir"],
)
def test_trigger_problems(text, key, message):
    [p] = problems_of(text)
    assert (p.line, p.key) == (marked_line(text), key)
    assert message in p.message


def test_max_delay_without_watch_is_warned_about_even_with_a_drop_dir():
    config = load_config_text(
        '[job.in]\ndrop_dir = "/srv/drop"\nmax_delay = "1h"\n', "t.toml")
    assert config.warnings == (
        "t.toml:3: at 'job.in.max_delay': has no effect without watch = true",)


def test_drop_dir_is_checked_like_sources(tmp_path):
    text = f'[job.in]\ndrop_dir = "{tmp_path / "missing"}"\n'
    load_config_text(text)  # only --check-config looks at the file system
    [p] = problems_of(text, check_sources=True)
    assert p.key == "job.in.drop_dir"
    assert p.message == (f"'{tmp_path / 'missing'}' does not exist (create the drop directory, "
                         "writable by the senders)")
    (tmp_path / "file").write_text("x")
    [p] = problems_of(f'[job.in]\ndrop_dir = "{tmp_path / "file"}"\n', check_sources=True)
    assert p.message.startswith(f"'{tmp_path / 'file'}' is not a directory")
    (tmp_path / "drop").mkdir()
    load_config_text(f'[job.in]\ndrop_dir = "{tmp_path / "drop"}"\n', check_sources=True)
