"""``odctl intake add-user NAME``: a new upload token for odbackupd-intake.

Makes a random token, prints it once (stdout; nothing else keeps it) and writes only its
SHA-256 to the user's token file: the one an existing ``[intake.user.NAME]`` names, else
``/etc/odbackupd/intake/NAME``, which the packaged unit loads as the credential
``intake_NAME``. An existing token file is replaced only with ``--replace`` (that revokes
the old token once the service is restarted). Runs in this process, no daemon needed.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from odbackupd.bus.names import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from odbackupd.config.kinds import check_name
from odbackupd.intake.tokens import UNIT_CREDENTIALS, hash_token, new_token

from . import render

__all__ = ["register"]


def _token_path(args: argparse.Namespace) -> Path:
    """Where the hash goes: the configured token_file, else the unit's credential directory."""
    from odbackupd.config import ConfigError, load_config
    from odbackupd.config.paths import DEFAULT_CONFIG

    prefix, unit_dir = UNIT_CREDENTIALS
    unit_dir = args.token_dir or unit_dir
    path = args.config or DEFAULT_CONFIG
    try:
        config = load_config(path) if path.exists() else None
    except ConfigError as e:
        raise _Fail(str(e), EXIT_USAGE) from e
    user = config.intake.users.get(args.user) if config else None
    if user is None:
        return unit_dir / args.user
    if user.token_file.is_absolute():
        return user.token_file
    if user.token_file.name.startswith(prefix):
        return unit_dir / user.token_file.name[len(prefix):]
    raise _Fail(f"intake.user.{args.user}.token_file = '{user.token_file}' is a credential the "
                f"packaged unit does not load from {unit_dir}: name it '{prefix}{args.user}' or "
                "give an absolute path", EXIT_USAGE)


class _Fail(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _write_hash(path: Path, digest: str, replace: bool) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, f"{digest}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if it exists: never replace a token by accident
    finally:
        tmp.unlink(missing_ok=True)


def cmd_intake_add_user(args: argparse.Namespace) -> int:
    problem = check_name(args.user)
    if problem:
        print(f"odctl: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        path = _token_path(args)
        token = new_token()
        try:
            _write_hash(path, hash_token(token), args.replace)
        except FileExistsError:
            raise _Fail(f"{path} exists: user '{args.user}' has a token already; --replace "
                        "makes a new one and revokes the old", EXIT_USAGE) from None
        except OSError as e:
            raise _Fail(f"cannot write {path}: {e.strerror or e} (run as root)",
                        EXIT_FAILED) from None
    except _Fail as e:
        print(f"odctl: {e}", file=sys.stderr)
        return e.code
    in_unit_dir = path.parent == UNIT_CREDENTIALS[1]
    credential = f"{UNIT_CREDENTIALS[0]}{args.user}" if in_unit_dir else str(path)
    if args.json:
        render.out_json({"user": args.user, "token": token, "token_file": credential,
                         "hash_file": str(path)})
        return EXIT_OK
    print(token)
    print(f"\nThat is the token of intake user '{args.user}'; it is not stored anywhere, only "
          f"its SHA-256 ({path}).\nConfigure the user (if not done yet) and restart the "
          f"service:\n\n[intake.user.{args.user}]\ntoken_file = \"{credential}\"\n"
          f"drop_job = \"JOB\"          # a job with a drop_dir\n\n"
          "    systemctl restart odbackupd-intake", file=sys.stderr)
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    from .dispatch import declare

    p = sub.add_parser("intake", parents=[common], help="manage odbackupd-intake's upload users")
    isub = p.add_subparsers(dest="intake_command", metavar="SUBCOMMAND", required=True)
    a = isub.add_parser("add-user", parents=[common], help="make an upload token for a user",
                        description=__doc__.split("\n\n")[1].replace("\n", " ").replace("``", "'"))
    a.add_argument("user", metavar="NAME", help="the NAME of an [intake.user.NAME] table")
    a.add_argument("--replace", action="store_true",
                   help="replace the user's existing token (the old one stops working)")
    a.add_argument("--token-dir", type=Path, metavar="DIR", default=None,
                   help=f"where the hash goes when no token_file is configured "
                        f"(default {UNIT_CREDENTIALS[1]})")
    declare(a, offline=cmd_intake_add_user)
