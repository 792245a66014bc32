#!/usr/bin/env python3
"""Writes the packaged /etc/odbackupd/odbackupd.toml: the generated sample, all commented out.

Packages ship this as a conffile. With every table commented out it configures no job,
so the service that the package enables starts, serves D-Bus and idles until the admin
writes a job; every key is still there with its description and an example, generated
from the same schema that validates the file (odbackupd.config.sample_config).

    python3 packaging/conffile.py OUTFILE
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HEADER = """\
# Installed by the odbackupd package. Nothing below is active yet: the service
# runs and idles until a [job.NAME] table is uncommented (or a drop-in in
# odbackupd.toml.d/ adds one). See odbackupd.toml(5).
#
"""


def packaged_config() -> str:
    """The commented-out sample: each active line of the sample gets a leading '#'."""
    from odbackupd.config import sample_config

    lines = []
    for line in sample_config().splitlines():
        lines.append(line if not line.strip() or line.startswith("#") else "#" + line)
    return HEADER + "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: conffile.py OUTFILE", file=sys.stderr)
        return 2
    Path(argv[0]).write_text(packaged_config(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
