"""odctl builds only the parser of the command it is given: the same command line means the
same thing, its --help and its errors read the same, and the other groups are not imported."""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from odctl import cli


def _subparsers(ap: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_groups_name_exactly_the_commands_they_register():
    whole = _subparsers(cli.build_parser())
    named = [c for _, commands in cli.GROUPS for c in commands]
    assert named == list(whole)  # every command once, in --help's order
    for _, commands in cli.GROUPS:
        assert list(_subparsers(cli.build_parser(commands[0]))) == list(commands)


@pytest.mark.parametrize("command", [c for _, cs in cli.GROUPS for c in cs])
def test_a_commands_help_is_the_same_from_its_group_alone(command):
    whole = _subparsers(cli.build_parser())[command]
    alone = _subparsers(cli.build_parser(command))[command]
    assert alone.format_help() == whole.format_help()


@pytest.mark.parametrize(
    ("argv", "word"),
    [
        (["ls", "etc", "latest"], "ls"),
        (["--config", "/tmp/ls", "-q", "restore", "etc"], "restore"),
        (["--conf", "backup-now", "status"], "status"),  # argparse's abbreviation of --config
        (["--config=/x", "--json", "find", "etc", "*.conf"], "find"),
        (["--help", "ls"], None),
        (["--version"], None),
        (["-q"], None),
    ],
)
def test_the_command_word_skips_the_options_before_it(argv, word):
    assert cli.command_word(argv) == word


def test_a_command_line_parses_the_same_with_its_group_alone():
    argv = ["--config", "/etc/x.toml", "ls", "etc", "latest", "etc/ssh", "-l", "--json"]
    whole, alone = cli.build_parser().parse_args(argv), cli.build_parser("ls").parse_args(argv)
    assert {k: v for k, v in vars(alone).items() if k != "odctl_command"} == \
        {k: v for k, v in vars(whole).items() if k != "odctl_command"}


def test_an_unknown_command_lists_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["lss", "etc"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'lss'" in err and "'fleet-status'" in err and "'ls'" in err


def test_odctl_ls_imports_no_other_command_group():
    code = (
        "import sys; from odctl import cli\n"
        "cli.build_parser(cli.command_word(['ls', 'etc'])).parse_args(['ls', 'etc'])\n"
        "print(' '.join(m for m, _ in cli.GROUPS if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["odctl.browse", "odctl.trust"]  # ls's --trusted-key is trust's
