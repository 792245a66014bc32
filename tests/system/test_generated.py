"""The generated parts of the man pages, the packaged config and the journal catalog
cannot drift from the code: they are built from it, and these tests check the result."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from odbackupd import journal
from odbackupd.config import load_config, sample_config, schema_reference

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("man")
    subprocess.run([sys.executable, str(REPO / "man/generate.py"), str(out)], check=True)
    return out


def test_man_pages_are_lint_clean(pages: Path) -> None:
    mandoc = shutil.which("mandoc")
    assert mandoc, "mandoc is missing: scripts/setup-dev.sh installs it"
    files = sorted(pages.iterdir())
    assert [f.name for f in files] == ["odbackupd-dbus.5", "odbackupd-intake.8", "odbackupd.8",
                                       "odbackupd.toml.5", "odctl.1"]
    p = subprocess.run([mandoc, "-Tlint", "-Wwarning", *map(str, files)],
                       capture_output=True, text=True)
    assert p.returncode == 0 and not p.stdout.strip(), p.stdout + p.stderr


def test_config_page_documents_every_schema_key(pages: Path) -> None:
    text = (pages / "odbackupd.toml.5").read_text()
    for k in schema_reference():
        section = text.split(f".SS [{k.section}")[1].split(".SS ")[0]
        assert f"\\fB{k.name}\\fR (" in section, f"odbackupd.toml(5) lacks {k.section}.{k.name}"


def test_odctl_page_documents_every_command(pages: Path) -> None:
    from odctl.cli import build_parser

    text = (pages / "odctl.1").read_text()
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in sub.choices:
        assert re.search(rf"^\.SS odctl {re.escape(name)}\b", text, re.M), (
            f"odctl(1) lacks `odctl {name}`")


def test_odctl_page_lists_every_exit_code(pages: Path) -> None:
    from odbackupd.bus.names import EXIT_CODES

    text = (pages / "odctl.1").read_text()
    status = text.split(".SH EXIT STATUS")[1].split(".SH ")[0]
    for code in EXIT_CODES:
        assert f".B {code}\n" in status, f"odctl(1) EXIT STATUS lacks {code}"


def test_every_odctl_argument_is_explained() -> None:
    """`odctl CMD --help` and odctl(1) show each argument's help: a bare `job` or an
    option without a line leaves a sysadmin guessing."""
    import argparse

    from odctl.cli import build_parser

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for sub_name, sub in a.choices.items():
                    walk(sub, f"{name} {sub_name}")
            elif a.help != argparse.SUPPRESS:
                assert a.help, f"{name}: {a.option_strings or a.dest} has no help text"
                if not a.option_strings:
                    assert a.metavar and a.metavar.isupper(), (
                        f"{name}: positional {a.dest} has no METAVAR")

    walk(build_parser(), "odctl")


def test_catalog_has_every_message_id() -> None:
    catalog = (REPO / "systemd/odbackupd.catalog").read_text()
    ids = {v.hex for k, v in vars(journal).items() if k.startswith("MSG_")}
    entries = set(re.findall(r"^-- ([0-9a-f]{32})$", catalog, re.M))
    assert ids == entries, (
        f"catalog entries {sorted(entries)} != journal.py MESSAGE_IDs {sorted(ids)}")


def test_packaged_config_has_no_jobs_and_every_sample_line(tmp_path: Path) -> None:
    out = tmp_path / "odbackupd.toml"
    subprocess.run([sys.executable, str(REPO / "packaging/conffile.py"), str(out)], check=True)
    config = load_config(out)
    assert config.jobs == {}
    uncommented = [line[1:] if line.startswith("#") else line
                   for line in out.read_text().splitlines()]
    for line in sample_config().splitlines():
        if line.strip() and not line.startswith("#"):
            assert line in uncommented, f"the packaged config lacks the sample's {line!r}"
