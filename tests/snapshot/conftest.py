from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from odbackupd.config import load_config


@pytest.fixture
def age_key(tmp_path: Path) -> tuple[Path, str]:
    """A real identity made by age-keygen: (identity file, recipient)."""
    key = tmp_path / "key.txt"
    subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    recipient = subprocess.run(["age-keygen", "-y", str(key)], check=True, capture_output=True,
                               text=True).stdout.strip()
    return key, recipient


class Setup:
    """A config file with one local destination and one job, as a sysadmin writes it."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.dest = tmp_path / "dest"
        self.dest.mkdir()
        self.state = tmp_path / "state"
        self.spool = tmp_path / "spool"
        self.config_path = tmp_path / "odbackupd.toml"

    def write(self, sources: list[Path], *, recipients: list[str] = (), volume_size: str = "1MiB",
              extra: str = "", dest_extra: str = "") -> Path:
        rec = f"recipients = {list(recipients)!r}\n" if recipients else ""
        srcs = ", ".join(f'"{s}"' for s in sources)
        self.config_path.write_text(textwrap.dedent(f"""\
            [daemon]
            state_dir = "{self.state}"
            spool_dir = "{self.spool}"

            [destination.usb]
            type = "local"
            path = "{self.dest}"
            """) + dest_extra + textwrap.dedent(f"""
            [job.t]
            sources = [{srcs}]
            destinations = ["usb"]
            volume_size = "{volume_size}"
            compression_level = 3
            """) + rec + extra)
        return self.config_path

    def config(self):  # noqa: ANN201
        return load_config(self.config_path)


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)
