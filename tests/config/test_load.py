"""Loading: the documented example, the generated sample, defaults and drop-ins."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import pytest

from odbackupd.config import (
    Config,
    ConfigError,
    DestinationConfig,
    JobConfig,
    default_config,
    load_config,
    load_config_text,
    sample_config,
)

from .conftest import marked_line

MiB = 2**20

PRODUCT_EXAMPLE = """\
[daemon]
state_dir = "/var/lib/odbackupd"
spool_dir = "/var/cache/odbackupd"

[destination.usb]
type = "local"
path = "/mnt/usb/backups"

[job.etc]
sources = ["/etc", "/srv/git"]
destinations = ["usb"]
exclude = ["*.tmp", "/srv/git/**/cache"]
recipients = ["RECIPIENT"]          # omit for an unencrypted job
volume_size = "64MiB"
compression_level = 3
keep_last = 10
max_size = "20GiB"               # size cap for this job's snapshots per destination
"""


def test_product_example_is_accepted(recipient):
    config = load_config_text(PRODUCT_EXAMPLE.replace("RECIPIENT", recipient), "odbackupd.toml")
    assert config.warnings == ()
    assert config.daemon.state_dir == Path("/var/lib/odbackupd")
    assert config.daemon.spool_dir == Path("/var/cache/odbackupd")
    assert config.destinations["usb"] == DestinationConfig(
        name="usb", type="local", path=Path("/mnt/usb/backups")
    )
    assert "local" in config.destinations  # the built-in one stays available
    job = config.jobs["etc"]
    assert job == JobConfig(
        name="etc",
        sources=(Path("/etc"), Path("/srv/git")),
        destinations=("usb",),
        exclude=("*.tmp", "/srv/git/**/cache"),
        recipients=(recipient,),
        volume_size=64 * MiB,
        compression_level=3,
        keep_last=10,
        max_size=20 * 2**30,
    )
    assert job.schedule is None and job.watch is False and job.one_file_system is True


def test_product_example_with_placeholder_recipient_is_rejected():
    text = PRODUCT_EXAMPLE.replace("RECIPIENT", "age1...")
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "odbackupd.toml")
    [problem] = info.value.problems
    assert problem.file == "odbackupd.toml"
    assert problem.line == marked_line(text, "recipients =")
    assert problem.key == "job.etc.recipients[0]"
    assert "age1..." in problem.message
    assert str(problem).startswith(f"odbackupd.toml:{problem.line}: at 'job.etc.recipients[0]': ")


def test_product_example_without_recipients_is_unencrypted():
    lines = [line for line in PRODUCT_EXAMPLE.splitlines() if "recipients" not in line]
    config = load_config_text("\n".join(lines))
    assert config.jobs["etc"].recipients == ()


def test_generated_sample_loads_without_problems():
    text = sample_config()
    config = load_config_text(text, "sample.toml")
    assert config.warnings == ()
    assert set(config.jobs) == {"etc", "pve1-dumps"}
    assert config.intake.users["pve1"].drop_job == "pve1-dumps"
    assert config.destinations["onedrive"].account == "personal"
    assert config.accounts["personal"].tenant == "consumers"


def test_default_config():
    config = default_config()
    assert isinstance(config, Config)
    assert config.path is None
    assert config.jobs == {} and config.accounts == {}
    assert config.destinations == {
        "local": DestinationConfig("local", "local", path=Path("/var/backups/odbackupd"))
    }
    daemon = config.daemon
    assert daemon.hostname == socket.gethostname()
    assert (daemon.max_parallel_runs, daemon.max_parallel_uploads) == (2, 4)
    assert daemon.bandwidth_limit is None and daemon.log_level == "info"


def test_a_destination_named_local_of_another_type_replaces_the_builtin_one():
    """Its directory is not /var/backups/odbackupd: no warning about backing that up."""
    config = load_config_text(
        '[account.me]\nclient_id = "00000000-0000-0000-0000-000000000000"\n'
        '[destination.local]\ntype = "onedrive"\naccount = "me"\n[job.etc]\nsources = ["/var"]\n'
    )
    assert config.destinations["local"].type == "onedrive"
    assert config.warnings == ()


def test_defaults_of_a_minimal_job():
    job = load_config_text('[job.home]\nsources = ["/home"]\n').jobs["home"]
    assert job.destinations == ("local",)
    assert job.volume_size == 64 * MiB
    assert (job.compression_level, job.compression_threads) == (3, 0)
    assert (job.random_delay, job.quiet_period, job.max_delay) == (0.0, 300.0, 3600.0)
    assert job.persistent is True and job.drop_dir is None


def test_config_objects_are_frozen():
    config = load_config_text('[job.home]\nsources = ["/home"]\n')
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.jobs["home"].keep_last = 3  # type: ignore[misc]


def test_all_keys_converted():
    text = """\
[daemon]
hostname = "nas1"
max_parallel_runs = 3
max_parallel_uploads = 8
bandwidth_limit = "8MiB/s"
log_level = "debug"

[account.work]
client_id = "6731DE76-14A6-49AE-97BC-6EBA6914391E"
tenant = "contoso.onmicrosoft.com"
site = "contoso.sharepoint.com:/sites/backup"
client_secret_file = "odbackupd-secret"
graph_url = "https://graph.microsoft.com/v1.0/"
ca_bundle = "/etc/ssl/proxy.pem"

[destination.cloud]
type = "onedrive"
account = "work"
folder = "/Backups/servers/"
chunk_size = "3200KiB"

[job.db]
sources = ["/var/lib/postgresql/dumps"]
destinations = ["cloud", "local"]
volume_size = 2147483648
compression_level = 19
compression_threads = 4
one_file_system = false
keep_daily = 7
keep_weekly = 4
keep_monthly = 12
schedule = "30  2 * * mon-fri"
random_delay = "10min"
persistent = false
watch = true
quiet_period = 120
max_delay = "2h"
drop_dir = "/srv/drop/db"
"""
    config = load_config_text(text)
    assert config.warnings == ()
    d = config.daemon
    assert (d.hostname, d.max_parallel_runs, d.max_parallel_uploads) == ("nas1", 3, 8)
    assert d.bandwidth_limit == 8 * MiB and d.log_level == "debug"
    a = config.accounts["work"]
    assert a.client_id == "6731de76-14a6-49ae-97bc-6eba6914391e"
    assert a.site == "contoso.sharepoint.com:/sites/backup" and a.drive == "me"
    assert a.client_secret_file == Path("odbackupd-secret")
    assert a.graph_url == "https://graph.microsoft.com/v1.0"
    assert a.ca_bundle == Path("/etc/ssl/proxy.pem")
    dest = config.destinations["cloud"]
    assert (dest.folder, dest.chunk_size) == ("Backups/servers", 10 * 320 * 1024)
    j = config.jobs["db"]
    assert j.volume_size == 2 * 2**30 and j.one_file_system is False
    assert (j.keep_daily, j.keep_weekly, j.keep_monthly, j.keep_last) == (7, 4, 12, None)
    assert j.schedule == "30 2 * * mon-fri"
    assert (j.random_delay, j.quiet_period, j.max_delay) == (600.0, 120.0, 7200.0)
    assert j.drop_dir == Path("/srv/drop/db") and j.watch is True


def test_defining_local_replaces_the_builtin():
    config = load_config_text('[destination.local]\ntype = "local"\npath = "/backup"\n')
    assert config.destinations == {"local": DestinationConfig("local", "local", Path("/backup"))}


# ---- drop-ins -----------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def main_file(tmp_path: Path) -> Path:
    return _write(
        tmp_path / "odbackupd.toml",
        """\
[destination.usb]
type = "local"
path = "/mnt/usb"

[job.etc]
sources = ["/etc"]
destinations = ["usb"]
exclude = ["*.tmp"]
keep_last = 10
""",
    )


def test_dropins_add_and_override(main_file: Path):
    d = main_file.parent / "odbackupd.toml.d"
    _write(d / "20-override.toml", '[job.etc]\nkeep_last = 3\nexclude = ["*.bak"]\n')
    _write(
        d / "10-more.toml",
        '[destination.nas]\ntype = "local"\npath = "/mnt/nas"\n'
        '[job.home]\nsources = ["/home"]\ndestinations = ["nas", "usb"]\n',
    )
    _write(d / "30-later.toml", "[job.etc]\nkeep_last = 5\n")  # sorted: this one wins
    _write(d / "README", "not toml [")  # ignored: not *.toml
    _write(d / ".50-editor.toml", "not toml [")  # ignored: hidden
    config = load_config(main_file)
    assert config.path == main_file
    etc = config.jobs["etc"]
    assert etc.keep_last == 5
    assert etc.exclude == ("*.bak",)  # arrays are replaced, not appended to
    assert etc.destinations == ("usb",) and etc.sources == (Path("/etc"),)
    assert config.jobs["home"].destinations == ("nas", "usb")
    assert set(config.destinations) == {"local", "usb", "nas"}


def test_dropin_problem_names_the_dropin(main_file: Path):
    text = '\n[job.etc]\nvolume_size = "12 parsecs"  # <--\n'
    dropin = _write(main_file.parent / "odbackupd.toml.d" / "50-bad.toml", text)
    with pytest.raises(ConfigError) as info:
        load_config(main_file)
    [p] = info.value.problems
    assert (p.file, p.line, p.key) == (str(dropin), 3, "job.etc.volume_size")


def test_dropin_problem_in_a_table_of_the_main_file(main_file: Path):
    """The reference is in the drop-in; the table it belongs to started in the main file."""
    dropin = _write(
        main_file.parent / "odbackupd.toml.d" / "50.toml",
        '[job.etc]\ndestinations = [\n  "usb",\n  "nas",  # <--\n]\n',
    )
    with pytest.raises(ConfigError) as info:
        load_config(main_file)
    [p] = info.value.problems
    assert (p.file, p.line, p.key) == (str(dropin), 4, "job.etc.destinations[1]")
    assert "unknown destination 'nas'" in p.message


def test_problems_of_several_files_are_all_reported_in_file_order(main_file: Path):
    d = main_file.parent / "odbackupd.toml.d"
    b = _write(d / "b.toml", "[job.x]\n")  # missing sources
    a = _write(d / "a.toml", "[daemon]\nlog_level = 3\n")
    main_file.write_text(main_file.read_text() + "compression_level = 40\n")
    with pytest.raises(ConfigError) as info:
        load_config(main_file)
    got = [(p.file, p.line, p.key) for p in info.value.problems]
    assert got == [
        (str(main_file), 10, "job.etc.compression_level"),
        (str(a), 2, "daemon.log_level"),
        (str(b), 1, "job.x"),
    ]
    assert len(str(info.value).splitlines()) == 3


def test_syntax_errors_of_every_file_are_reported(main_file: Path):
    d = main_file.parent / "odbackupd.toml.d"
    bad1 = _write(d / "1.toml", '[job.a]\nsources = ["/a"\n\n')
    bad2 = _write(d / "2.toml", '[job.b]\nsources = ["/b"]\nsources = ["/c"]\n')
    with pytest.raises(ConfigError) as info:
        load_config(main_file)
    got = [(p.file, p.line) for p in info.value.problems]
    assert got == [(str(bad1), 2), (str(bad2), 3)]  # 2: where the open array starts
    assert all("invalid TOML" in p.message for p in info.value.problems)


def test_a_dropin_may_redefine_a_table(main_file: Path):
    """Unlike within one file (a TOML error), another file may open [job.etc] again."""
    _write(main_file.parent / "odbackupd.toml.d" / "x.toml", "[job.etc]\none_file_system = false\n")
    assert load_config(main_file).jobs["etc"].one_file_system is False


def test_missing_main_file(tmp_path: Path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    [p] = info.value.problems
    assert p.file == str(path) and "cannot read" in p.message


def test_dropin_dir_that_is_a_file(main_file: Path):
    _write(main_file.parent / "odbackupd.toml.d", "")
    with pytest.raises(ConfigError, match="is not a directory"):
        load_config(main_file)


def test_windows_line_ends_and_bom(tmp_path: Path):
    path = tmp_path / "x.toml"
    path.write_bytes(b'\xef\xbb\xbf[job.etc]\r\nsources = [\r\n  "/etc",\r\n  "rel",\r\n]\r\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    [p] = info.value.problems
    assert (p.line, p.key) == (4, "job.etc.sources[1]")


def test_not_utf8(tmp_path: Path):
    path = tmp_path / "x.toml"
    path.write_bytes(b'[daemon]\nhostname = "\xff"\n')
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        load_config(path)
