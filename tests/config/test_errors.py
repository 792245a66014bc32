"""Every kind of problem, with the file, line and key it is reported at.

Each case is a whole config whose offending line carries the marker ``# <--``; the
case asserts that exactly one problem is reported, on that line, at that key.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from odbackupd.config import ConfigError, load_config_text

from .conftest import as_unprivileged, marked_line, problems_of

#: An identity whose recipient nobody uses: a secret in a test, but still never echoed.
SECRET = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"
USB = '[destination.usb]\ntype = "local"\npath = "/mnt/usb"\n'
ACCOUNT = '[account.me]\nclient_id = "00000000-0000-0000-0000-000000000001"\n'
OD = ACCOUNT + '[destination.od]\ntype = "onedrive"\naccount = "me"\n'
BUSINESS = ACCOUNT + 'tenant = "contoso.com"\ndrive_id = "b!abc"\n'

CASES = {
    # -- unknown sections and keys, with suggestions ------------------------------------
    "unknown section": (
        '[jobs.etc]  # <--\nsources = ["/etc"]\n',
        "jobs",
        "unknown section 'jobs'; did you mean 'job'?",
    ),
    "unknown section without a near name": (
        "[frobnicate]  # <--\n",
        "frobnicate",
        "unknown section 'frobnicate' (sections are [daemon], [destination], [account], [job], "
        "[notify], [intake])",
    ),
    "unknown key with suggestion": (
        '[job.etc]\nsources = ["/etc"]\nkeep-last = 3  # <--\n',
        "job.etc.keep-last",
        "unknown key 'keep-last'; did you mean 'keep_last'?",
    ),
    "unknown daemon key": (
        '[daemon]\nlog_lvl = "debug"  # <--\n',
        "daemon.log_lvl",
        "did you mean 'log_level'?",
    ),
    "key of another section": (
        '[job.etc]\nsources = ["/etc"]\nchunk_size = "10MiB"  # <--\n',
        "job.etc.chunk_size",
        "(it is a key of [destination.NAME])",
    ),
    "key outside a named table": (
        '[job]\nsources = ["/etc"]  # <--\n',
        "job.sources",
        "'sources' must go in a named table: write [job.NAME]",
    ),
    "array of tables": (
        '[[job]]  # <--\nsources = ["/etc"]\n',
        "job",
        "write each as a table [job.NAME], not [[job]]",
    ),
    "missing required key": (
        "[job.etc]  # <--\nkeep_last = 3\n",
        "job.etc",
        "missing required key 'sources'",
    ),
    "missing destination type": (
        '[destination.usb]  # <--\npath = "/mnt"\n',
        "destination.usb",
        "missing required key 'type'",
    ),
    "missing client_id": (
        '[account.me]  # <--\ntenant = "consumers"\n',
        "account.me",
        "missing required key 'client_id'",
    ),
    # -- wrong types: TOML booleans are not integers -----------------------------------
    "string for integer": (
        '[job.etc]\nsources = ["/etc"]\ncompression_level = "3"  # <--\n',
        "job.etc.compression_level",
        "expected an integer, got a string (write the number without quotes)",
    ),
    "boolean for integer": (
        '[job.etc]\nsources = ["/etc"]\nkeep_last = true  # <--\n',
        "job.etc.keep_last",
        "expected an integer, got a boolean",
    ),
    "float for integer": (
        "[daemon]\nmax_parallel_runs = 2.0  # <--\n",
        "daemon.max_parallel_runs",
        "expected an integer, got a float",
    ),
    "integer for boolean": (
        '[job.etc]\nsources = ["/etc"]\nwatch = 1  # <--\n',
        "job.etc.watch",
        "expected true or false, got an integer",
    ),
    "string for boolean": (
        '[job.etc]\nsources = ["/etc"]\nwatch = "yes"  # <--\n',
        "job.etc.watch",
        "write true or false without quotes",
    ),
    "boolean for size": (
        '[job.etc]\nsources = ["/etc"]\nmax_size = true  # <--\n',
        "job.etc.max_size",
        "got a boolean",
    ),
    "string for list": (
        'sources = "/etc"  # <--\n',
        "job.etc.sources",
        "expected an array, got a string",
    ),
    "table for string": (
        '[daemon]\nhostname = {name = "x"}  # <--\n',
        "daemon.hostname",
        "expected a string, got a table",
    ),
    "daemon not a table": (
        'daemon = "yes"  # <--\n',
        "daemon",
        "expected a table [daemon], got a string",
    ),
    "bad choice": (
        '[daemon]\nlog_level = "verbose"  # <--\n',
        "daemon.log_level",
        "invalid value 'verbose': expected one of",
    ),
    "bad choice with suggestion": (
        '[destination.usb]\ntype = "lokal"  # <--\npath = "/mnt"\n',
        "destination.usb.type",
        "did you mean 'local'?",
    ),
    # -- sizes and durations ------------------------------------------------------------
    "bad size": (
        '[job.etc]\nsources = ["/etc"]\nvolume_size = "64 MeB"  # <--\n',
        "job.etc.volume_size",
        "invalid size '64 MeB': unknown unit 'MeB'",
    ),
    "size too small": (
        '[job.etc]\nsources = ["/etc"]\nvolume_size = "512KiB"  # <--\n',
        "job.etc.volume_size",
        "'512KiB' is too small: must be at least 1MiB",
    ),
    "negative size": (
        '[job.etc]\nsources = ["/etc"]\nmax_size = -5  # <--\n',
        "job.etc.max_size",
        "must not be negative",
    ),
    "zero bandwidth": (
        "[daemon]\nbandwidth_limit = 0  # <--\n",
        "daemon.bandwidth_limit",
        "too small",
    ),
    "bad duration": (
        '[job.etc]\nsources = ["/etc"]\nrandom_delay = "a while"  # <--\nschedule = "@daily"\n',
        "job.etc.random_delay",
        "invalid duration 'a while'",
    ),
    "negative duration": (
        '[job.etc]\nsources = ["/etc"]\nwatch = true\nquiet_period = -1  # <--\n',
        "job.etc.quiet_period",
        "must not be negative",
    ),
    # -- numbers out of range -----------------------------------------------------------
    "negative keep": (
        '[job.etc]\nsources = ["/etc"]\nkeep_last = -1  # <--\n',
        "job.etc.keep_last",
        "-1 is out of range: must be at least 1",
    ),
    "negative threads": (
        '[job.etc]\nsources = ["/etc"]\ncompression_threads = -1  # <--\n',
        "job.etc.compression_threads",
        "must be between 0 and 256",
    ),
    "compression level": (
        '[job.etc]\nsources = ["/etc"]\ncompression_level = 23  # <--\n',
        "job.etc.compression_level",
        "must be between 1 and 22",
    ),
    "zero parallel runs": (
        "[daemon]\nmax_parallel_runs = 0  # <--\n",
        "daemon.max_parallel_runs",
        "must be between 1 and 64",
    ),
    # -- names --------------------------------------------------------------------------
    "job name with a slash": (
        '[job."etc/passwd"]  # <--\nsources = ["/etc"]\n',
        'job."etc/passwd"',
        "invalid name 'etc/passwd': use only letters, digits",
    ),
    "job name with a space": (
        '[job."my job"]  # <--\nsources = ["/etc"]\n',
        'job."my job"',
        "invalid name 'my job'",
    ),
    "job name dot-dot": (
        '[job.".."]  # <--\nsources = ["/etc"]\n',
        'job.".."',
        "'.' and '..' are not allowed",
    ),
    "job name like an option": (
        '[job.-rf]  # <--\nsources = ["/etc"]\n',
        "job.-rf",
        "must not start with '-'",
    ),
    "destination name": (
        '[destination."usb:1"]  # <--\ntype = "local"\npath = "/mnt"\n',
        'destination."usb:1"',
        "invalid name 'usb:1'",
    ),
    "account name": (
        '[account."é"]  # <--\nclient_id = "00000000-0000-0000-0000-000000000001"\n',
        'account."é"',
        "invalid name 'é'",
    ),
    "job names differing in case": (
        '[job.etc]\nsources = ["/etc"]\n[job.Etc]  # <--\nsources = ["/etc"]\n',
        "job.Etc",
        "differs from job 'etc' only in case",
    ),
    # -- references ---------------------------------------------------------------------
    "unknown destination": (
        USB + '[job.etc]\nsources = ["/etc"]\ndestinations = ["usb", "usbb"]  # <--\n',
        "job.etc.destinations[1]",
        "unknown destination 'usbb'; did you mean 'usb'?",
    ),
    "unknown destination on its own line": (
        USB + '[job.etc]\nsources = ["/etc"]\ndestinations = [\n  "usb",\n  "nas",  # <--\n]\n',
        "job.etc.destinations[1]",
        "unknown destination 'nas'",
    ),
    "unknown account": (
        ACCOUNT + '[destination.od]\ntype = "onedrive"\naccount = "work"  # <--\n',
        "destination.od.account",
        "unknown account 'work'",
    ),
    "duplicate destination in a job": (
        USB + '[job.etc]\nsources = ["/etc"]\ndestinations = ["usb", "usb"]  # <--\n',
        "job.etc.destinations[1]",
        "duplicate entry 'usb' (also at [0])",
    ),
    "duplicate destinations": (
        USB + '[destination.usb2]  # <--\ntype = "local"\npath = "/mnt/usb"\n',
        "destination.usb2",
        "duplicate destination: 'usb2' stores to the same place as 'usb'",
    ),
    "duplicate onedrive destinations": (
        ACCOUNT
        + '[destination.a]\ntype = "onedrive"\naccount = "me"\n'
        + '[destination.b]  # <--\ntype = "onedrive"\naccount = "me"\nfolder = "ODBackupD/"\n',
        "destination.b",
        "same place as 'a'",
    ),
    "duplicate source": (
        '[job.etc]\nsources = ["/etc", "/etc/"]  # <--\n',
        "job.etc.sources[1]",
        "duplicate entry",
    ),
    # -- paths --------------------------------------------------------------------------
    "relative source": (
        '[job.etc]\nsources = [\n  "/etc",\n  "srv/git",  # <--\n]\n',
        "job.etc.sources[1]",
        "'srv/git' is not an absolute path",
    ),
    "empty sources": (
        "[job.etc]\nsources = []  # <--\n",
        "job.etc.sources",
        "must not be empty",
    ),
    "dot-dot in a path": (
        '[daemon]\nspool_dir = "/var/cache/../tmp"  # <--\n',
        "daemon.spool_dir",
        "must not contain '..'",
    ),
    "drop_dir inside a source": (
        '[job.etc]\nsources = ["/srv"]\ndrop_dir = "/srv/drop"  # <--\n',
        "job.etc.drop_dir",
        "'/srv/drop' overlaps source '/srv'",
    ),
    "source inside drop_dir": (
        '[job.etc]\nsources = ["/srv/drop/x"]\ndrop_dir = "/srv/drop"  # <--\n',
        "job.etc.drop_dir",
        "overlaps source '/srv/drop/x'",
    ),
    "drop_dirs of two jobs": (
        (
            '[job.a]\nsources = ["/a"]\ndrop_dir = "/drop"\n'
            '[job.b]\nsources = ["/b"]\ndrop_dir = "/drop/b"  # <--\n'
        ),
        "job.b.drop_dir",
        "overlaps the drop directory of job 'a'",
    ),
    # -- destinations -------------------------------------------------------------------
    "local without path": (
        '[destination.usb]  # <--\ntype = "local"\n',
        "destination.usb",
        "missing required key 'path' (needed for type = \"local\")",
    ),
    "relative local path": (
        '[destination.usb]\ntype = "local"\npath = "backups"  # <--\n',
        "destination.usb.path",
        "not an absolute path",
    ),
    "onedrive without account": (
        '[destination.od]  # <--\ntype = "onedrive"\n',
        "destination.od",
        "missing required key 'account'",
    ),
    "path on a onedrive destination": (
        ACCOUNT + '[destination.od]\ntype = "onedrive"\naccount = "me"\npath = "/x"  # <--\n',
        "destination.od.path",
        "'path' applies only to destinations of type = \"local\"",
    ),
    "chunk_size on a local destination": (
        '[destination.usb]\ntype = "local"\npath = "/mnt"\nchunk_size = "10MiB"  # <--\n',
        "destination.usb.chunk_size",
        'applies only to destinations of type = "onedrive"',
    ),
    "chunk_size not a multiple of 320 KiB": (
        OD + 'chunk_size = "10MB"  # <--\n',
        "destination.od.chunk_size",
        "is not a multiple of 320KiB; the nearest below is 9600KiB",
    ),
    "chunk_size of 60 MiB": (
        OD + 'chunk_size = "60MiB"  # <--\n',
        "destination.od.chunk_size",
        "must be less than 60MiB",
    ),
    "bad OneDrive folder": (
        ACCOUNT + '[destination.od]\ntype = "onedrive"\naccount = "me"\nfolder = "a:b"  # <--\n',
        "destination.od.folder",
        "OneDrive does not allow :",
    ),
    # -- accounts -----------------------------------------------------------------------
    "client_id not a GUID": (
        '[account.me]\nclient_id = "my-app"  # <--\n',
        "account.me.client_id",
        "invalid client_id 'my-app'",
    ),
    "bad tenant": (
        ACCOUNT + 'tenant = "my tenant"  # <--\n',
        "account.me.tenant",
        "invalid tenant 'my tenant'",
    ),
    "drive_id and site": (
        BUSINESS + 'site = "contoso.sharepoint.com:/sites/x"  # <--\n',
        "account.me.site",
        "set either drive_id or site, not both",
    ),
    "drive with drive_id": (
        ACCOUNT + 'drive = "me"  # <--\ndrive_id = "b!abc"\n',
        "account.me.drive",
        "leave 'drive' unset",
    ),
    "site with a personal account": (
        ACCOUNT + 'site = "contoso.sharepoint.com:/sites/x"  # <--\n',
        "account.me.site",
        "SharePoint sites need a work or school account",
    ),
    "app-only with consumers": (
        ACCOUNT + 'tenant = "consumers"  # <--\ndrive_id = "b!abc"\nclient_secret_file = "s"\n',
        "account.me.tenant",
        "app-only login (client_secret_file/certificate_file) needs a specific tenant",
    ),
    "app-only without a drive": (
        (
            '[account.me]  # <--\nclient_id = "00000000-0000-0000-0000-000000000001"\n'
            'tenant = "contoso.com"\ncertificate_file = "/etc/odbackupd/app.pem"\n'
        ),
        "account.me",
        "app-only login has no signed-in user ('me'): set drive_id or site",
    ),
    "secret and certificate": (
        BUSINESS + 'client_secret_file = "s"\ncertificate_file = "c"  # <--\n',
        "account.me.certificate_file",
        "either client_secret_file or certificate_file",
    ),
    "relative secret path": (
        BUSINESS + 'client_secret_file = "etc/secret"  # <--\n',
        "account.me.client_secret_file",
        "neither a systemd credential name",
    ),
    "plain http graph": (
        ACCOUNT + 'graph_url = "http://graph.microsoft.com/v1.0"  # <--\n',
        "account.me.graph_url",
        "expected https://",
    ),
    # -- schedules and triggers ---------------------------------------------------------
    "bad cron": (
        '[job.etc]\nsources = ["/etc"]\nschedule = "61 * * * *"  # <--\n',
        "job.etc.schedule",
        "invalid schedule '61 * * * *'",
    ),
    "cron with seconds": (
        '[job.etc]\nsources = ["/etc"]\nschedule = "0 0 3 * * *"  # <--\n',
        "job.etc.schedule",
        "expected 5 fields (minute hour day-of-month month day-of-week), got 6",
    ),
    "cron that never fires": (
        '[job.etc]\nsources = ["/etc"]\nschedule = "0 0 31 2 *"  # <--\n',
        "job.etc.schedule",
        "never fires",
    ),
    "unknown cron macro": (
        '[job.etc]\nsources = ["/etc"]\nschedule = "@dialy"  # <--\n',
        "job.etc.schedule",
        "did you mean '@daily'?",
    ),
    "max_delay below quiet_period": (
        '[job.etc]\nsources = ["/etc"]\nwatch = true\nquiet_period = "10min"\nmax_delay = "5min"'
        + "  # <--\n",
        "job.etc.max_delay",
        "max_delay (5min) is shorter than quiet_period (10min)",
    ),
    # -- encryption ---------------------------------------------------------------------
    "placeholder recipient": (
        '[job.etc]\nsources = ["/etc"]\nrecipients = ["age1..."]  # <--\n',
        "job.etc.recipients[0]",
        "'age1...'",
    ),
    "identity instead of recipient": (
        f'[job.etc]\nsources = ["/etc"]\nrecipients = [\n  "{SECRET}",  # <--\n]\n',
        "job.etc.recipients[0]",
        "this is a secret identity, not a recipient",
    ),
}


@pytest.mark.parametrize("text, key, message", list(CASES.values()), ids=list(CASES))
def test_problem_is_reported_at_its_line(text, key, message):
    if text.startswith("sources"):
        text = "[job.etc]\n" + text
    [problem] = problems_of(text, "/etc/odbackupd/odbackupd.toml")
    assert problem.file == "/etc/odbackupd/odbackupd.toml"
    assert problem.line == marked_line(text), str(problem)
    assert problem.key == key, str(problem)
    assert message in problem.message, str(problem)
    assert SECRET[15:] not in str(problem)  # a pasted secret key is never echoed
    assert str(problem) == (
        f"/etc/odbackupd/odbackupd.toml:{problem.line}: at '{key}': {problem.message}"
    )


def test_dotted_job_name_not_quoted():
    text = '[job.my.job]\nsources = ["/etc"]\n'
    hint, missing = problems_of(text)
    assert (hint.line, hint.key) == (1, "job.my.job")
    assert hint.message == (
        "unknown key 'job' (to name a job 'my.job', quote it: [job.\"my.job\"])"
    )
    assert (missing.line, missing.key) == (1, "job.my")
    assert load_config_text('[job."my.job"]\nsources = ["/etc"]\n').jobs["my.job"]


def test_all_problems_are_reported_at_once(recipient):
    text = f"""\
[daemon]
max_parallel_runs = true
[destination.usb]
type = "local"
path = "/mnt/usb"
[job.etc]
sources = ["/etc", "rel"]
destinations = ["usb", "nas"]
recipients = ["{recipient}", "age1..."]
volume_size = "1KiB"
"""
    problems = problems_of(text)
    assert [(p.line, p.key) for p in problems] == [
        (2, "daemon.max_parallel_runs"),
        (7, "job.etc.sources[1]"),
        (8, "job.etc.destinations[1]"),
        (9, "job.etc.recipients[1]"),
        (10, "job.etc.volume_size"),
    ]


def test_a_bad_table_does_not_cause_a_false_unknown_reference():
    """A destination with problems of its own still exists for the jobs naming it."""
    text = USB.replace('"/mnt/usb"', '"rel"') + '[job.etc]\nsources = ["/etc"]\n'
    text += 'destinations = ["usb"]\n'
    [p] = problems_of(text)
    assert p.key == "destination.usb.path"


@pytest.mark.parametrize(
    "text, line, message",
    [
        ('[job.etc]\nsources = ["/etc"\n', 2, "Unclosed array"),
        ("[daemon]\nhostname = \n", 2, "Invalid value (column 12)"),
        ('[job.etc]\nsources = ["/a"]\n\n[job.etc]\n', 4, "Cannot declare ('job', 'etc') twice"),
        ('[job.etc]\nsources = ["/a"]\nsources = ["/b"]\n', 3, "Cannot overwrite a value"),
        ("[daemon]\nlog_level = 'info\n[job.etc]\n", 2, "reached the end of the file"),
        ('[daemon]\nx = """abc\n\n[job.etc]\n', 2, "Unterminated string"),
        ('[job.etc]\nsources = [\n  "/a",\n]\nexclude = [\n  "*.tmp"\n\n', 5, "Unclosed array"),
    ],
)
def test_toml_syntax_errors_carry_their_line(text, line, message):
    [p] = problems_of(text, "x.toml")
    assert (p.file, p.line, p.key) == ("x.toml", line, "")
    assert p.message.startswith("invalid TOML: ")
    assert message in p.message
    assert str(p).startswith(f"x.toml:{line}: invalid TOML: ")


# ---- sources on disk (check_sources=True) --------------------------------------------


def _job(*sources: Path) -> str:
    items = "".join(f'  "{s}",  # item\n' for s in sources)
    return f"[job.etc]\nsources = [\n{items}]\n"


def test_sources_not_checked_by_default(tmp_path):
    load_config_text(_job(tmp_path / "missing"))


def test_existing_sources_pass(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    config = load_config_text(_job(tmp_path / "dir", tmp_path / "file"), check_sources=True)
    assert config.jobs["etc"].sources == (tmp_path / "dir", tmp_path / "file")


def test_missing_source(tmp_path):
    (tmp_path / "dir").mkdir()
    text = _job(tmp_path / "dir", tmp_path / "missing")
    [p] = problems_of(text, check_sources=True)
    assert (p.line, p.key) == (4, "job.etc.sources[1]")
    assert p.message == f"'{tmp_path / 'missing'}' does not exist"


def test_unreadable_source_symlink_loop(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    [p] = problems_of(_job(loop), check_sources=True)
    assert (p.line, p.key) == (3, "job.etc.sources[0]")
    assert "cannot be read" in p.message


def test_unreadable_source_permissions():
    # /tmp itself, not tmp_path: the unprivileged checker must be able to reach the directory
    top = Path(tempfile.mkdtemp(prefix="odbackupd-perm-", dir="/tmp"))
    top.chmod(0o711)
    secret = top / "secret"
    secret.mkdir(mode=0)
    try:
        [p] = as_unprivileged(lambda: problems_of(_job(secret), check_sources=True))
    finally:
        secret.chmod(0o700)
        shutil.rmtree(top)
    assert "cannot be read: Permission denied" in p.message


def test_source_that_is_a_fifo(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    [p] = problems_of(_job(fifo), check_sources=True)
    assert "neither a file nor a directory" in p.message


# ---- warnings: worth saying, not worth refusing the config ---------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            '[job.etc]\nsources = ["/etc"]\ncompression_level = 21\n',
            "test.toml:3: at 'job.etc.compression_level': level 21 is an ultra level",
        ),
        (
            '[job.etc]\nsources = ["/etc"]\nquiet_period = "1min"\n',
            "test.toml:3: at 'job.etc.quiet_period': has no effect without watch = true",
        ),
        (
            '[job.etc]\nsources = ["/etc"]\nrandom_delay = "1min"\n',
            "test.toml:3: at 'job.etc.random_delay': has no effect without a schedule",
        ),
        (
            '[job.etc]\nsources = ["/etc"]\nmax_size = "10MiB"\n',
            "test.toml:3: at 'job.etc.max_size': 10MiB is smaller than one volume (64MiB)",
        ),
        (
            '[job.etc]\nsources = ["/srv", "/srv/git"]\n',
            "test.toml:2: at 'job.etc.sources[1]': '/srv/git' is inside source '/srv'",
        ),
        (
            '[account.a]\nclient_id = "00000000-0000-0000-0000-000000000001"\n',
            "test.toml:1: at 'account.a': account 'a' is not used by any destination",
        ),
        (
            USB.replace("/mnt/usb", "/srv/usb")
            + '[job.all]\nsources = ["/srv"]\ndestinations = ["usb"]\n',
            (
                "test.toml:6: at 'job.all.destinations[0]': destination 'usb' (/srv/usb) is "
                "inside source '/srv'"
            ),
        ),
    ],
)
def test_warnings(text, expected):
    config = load_config_text(text, "test.toml")
    assert len(config.warnings) == 1
    assert config.warnings[0].startswith(expected)


def test_builtin_local_destination_inside_a_source_is_warned_about():
    [warning] = load_config_text('[job.var]\nsources = ["/var"]\n', "t.toml").warnings
    assert warning.startswith(
        "t.toml:1: at 'job.var.destinations': destination 'local' (/var/backups/odbackupd) is "
        "inside source '/var'"
    )


def test_excluded_destination_is_not_warned_about():
    text = (
        '[destination.usb]\ntype = "local"\npath = "/mnt/usb"\n'
        '[job.all]\nsources = ["/mnt"]\ndestinations = ["usb"]\nexclude = ["/mnt/usb/"]\n'
    )
    assert load_config_text(text).warnings == ()


def test_config_error_lists_every_problem_one_per_line():
    with pytest.raises(ConfigError) as info:
        load_config_text("[daemon]\nlog_level = 1\nmax_parallel_runs = -1\n", "f.toml")
    assert str(info.value) == (
        "f.toml:2: at 'daemon.log_level': expected a string, got an integer\n"
        "f.toml:3: at 'daemon.max_parallel_runs': -1 is out of range: must be between 1 and 64"
    )


def test_incremental_keys_defaults_and_bad_values():
    job = load_config_text('[job.etc]\nsources = ["/etc"]\n').jobs["etc"]
    assert (job.full_every, job.full_if_older_than, job.ignore_inode, job.ignore_ctime) == (
        14, 30 * 86400.0, False, False)
    with pytest.raises(ConfigError) as info:
        load_config_text('[job.etc]\nsources = ["/etc"]\nfull_every = 0\n'
                         'full_if_older_than = "soon"\nignore_inode = 1\n', "f.toml")
    lines = str(info.value).splitlines()
    assert lines[0].startswith("f.toml:3: at 'job.etc.full_every': 0 is out of range")
    assert lines[1].startswith("f.toml:4: at 'job.etc.full_if_older_than': invalid duration 'soon'")
    assert lines[2].startswith("f.toml:5: at 'job.etc.ignore_inode':")


def test_trusted_key_is_checked_with_the_sources(tmp_path):
    (tmp_path / "dir").mkdir()
    bad = tmp_path / "web1.pub"
    bad.write_text("age1notakey\n")
    text = _job(tmp_path / "dir") + f'trusted_key = "{bad}"\n'
    [p] = problems_of(text, check_sources=True)
    assert (p.line, p.key) == (5, "job.etc.trusted_key")
    assert str(bad) in p.message and "odctl key export" in p.message
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from odbackupd.signing import public_line

    bad.write_text(public_line(Ed25519PrivateKey.generate().public_key()) + "\n")
    load_config_text(text, check_sources=True)
