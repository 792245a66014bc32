"""``odctl mount`` for real: FUSE in this machine's kernel, odctl in a subprocess as a user
runs it, unmounted with ``fusermount3 -u`` (or a signal, as Ctrl-C does)."""
from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.snapshot.conftest import Setup, age_key  # noqa: F401 - the same real age-keygen key

ROOT = Path(__file__).resolve().parents[2]


def _fuse_or_skip() -> None:
    """Load the fuse module when /dev/fuse is missing; skip (saying why) only if that fails."""
    if not os.path.exists("/dev/fuse"):
        r = subprocess.run(["modprobe", "fuse"], capture_output=True, text=True)
        if not os.path.exists("/dev/fuse"):
            pytest.skip(f"no /dev/fuse on this machine and 'modprobe fuse' did not make one "
                        f"({(r.stderr or r.stdout).strip() or r.returncode}): FUSE cannot run here")
    if shutil.which("fusermount3") is None:
        pytest.fail("fusermount3 is missing: scripts/setup-dev.sh installs fuse3")


def odbackupd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "odbackupd.main", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


def odctl(*args: str, **kw) -> subprocess.CompletedProcess:  # noqa: ANN003
    return subprocess.run([sys.executable, "-m", "odctl.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=300, **kw)


def _readline(proc: subprocess.Popen, deadline: float) -> str:
    """The next line odctl prints on stdout (its readiness line; with --json the whole
    document, which spans lines and may arrive in pieces), waiting on the pipe."""
    fd = proc.stdout.fileno()  # type: ignore[union-attr]
    buf = b""
    while not buf.endswith(b"\n") or (buf.startswith(b"{") and not buf.endswith(b"}\n")):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"odctl mount did not say it was mounted in time; so far: {buf!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            b = os.read(fd, 4096)
            if not b:
                err = (proc.stderr.read().decode(errors="replace")  # type: ignore[union-attr]
                       if proc.stderr else "")
                raise AssertionError(
                    f"odctl mount ended (exit {proc.wait()}) before mounting: {err}")
            buf += b
    return buf.decode()


class Mount:
    """``odctl mount`` running; ``.path`` is the mount point once the context is entered."""

    def __init__(self, config: Path, path: Path, *args: str) -> None:
        self.config, self.path, self.args = config, path, args
        self.proc: subprocess.Popen | None = None
        self.ready_line = ""
        self.stderr = ""
        self.returncode: int | None = None

    def __enter__(self) -> Mount:
        self.path.mkdir(exist_ok=True)
        self.proc = subprocess.Popen([sys.executable, "-m", "odctl.cli",
                                      "--config", str(self.config),
                                      "mount", "t", str(self.path), *self.args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        try:
            self.ready_line = _readline(self.proc, time.monotonic() + 120)
            assert os.path.ismount(self.path), self.ready_line
        except BaseException:
            self.unmount()
            raise
        return self

    def unmount(self) -> int:
        """``fusermount3 -u``, as the odctl(1) page says; odctl then exits by itself."""
        assert self.proc is not None
        if self.returncode is None:
            if os.path.ismount(self.path):
                subprocess.run(["fusermount3", "-u", str(self.path)], check=True,
                               capture_output=True)
            self.finish()
        return self.returncode  # type: ignore[return-value]

    def finish(self, timeout: float = 60) -> int:
        assert self.proc is not None
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            subprocess.run(["fusermount3", "-uz", str(self.path)], capture_output=True)
            why = err.decode(errors="replace")
            raise AssertionError(f"odctl mount did not end after the unmount: {why}") from None
        self.stderr = err.decode(errors="replace")
        self.returncode = self.proc.returncode
        return self.returncode

    def __exit__(self, *exc: object) -> None:
        self.unmount()


@pytest.fixture
def fuse() -> None:
    _fuse_or_skip()


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


from tests.onedrive.conftest import OneDriveSetup  # noqa: E402


@pytest.fixture
def od(tmp_path: Path, graph_emulator) -> OneDriveSetup:  # noqa: ANN001
    return OneDriveSetup(tmp_path, graph_emulator)
