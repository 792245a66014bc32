"""A private system-like bus that loads the SHIPPED policy file, a test admin user, and a
real daemon on that bus.

Why a private ``dbus-daemon``: the API's authorization lives partly in the bus policy, so
the tests must run under a bus that enforces it, with the very file the packages install.
The daemon is ``odbackupd --config X`` as a subprocess (READY=1 on a NOTIFY_SOCKET we bind
says when it serves).
"""
from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from odbackupd.bus import names
from tests.procs import die_with_parent

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "dbus" / names.POLICY_FILE
TEST_USER = f"odbtest{os.getpid() % 100000}"

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <!-- the system bus's own defaults (as /usr/share/dbus-1/system.conf): deny calls -->
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include>{policy}</include>
{extra}
</busconfig>
"""


class PrivateBus:
    def __init__(self, extra_policy: str = "") -> None:
        # a world-traversable directory: the unprivileged callers must reach the socket
        self.dir = Path(tempfile.mkdtemp(prefix="odbackupd-bus-"))
        self.dir.chmod(0o755)
        self.config = self.dir / "bus.conf"
        self.config.write_text(BUS_CONFIG.format(socket=self.dir / "bus", policy=POLICY,
                                                 extra=extra_policy))
        self.proc = subprocess.Popen(
            ["dbus-daemon", f"--config-file={self.config}", "--print-address", "--nofork"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=die_with_parent)
        self.address = self.proc.stdout.readline().strip()  # printed once it listens
        if not self.address:
            raise RuntimeError(f"dbus-daemon did not start: {self.proc.stderr.read()}")

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.address)
        env.pop("NO_COLOR", None)
        env.update(extra)
        return env

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def admin_user() -> Iterator[str]:
    """A user whose SUPPLEMENTARY group is ``odbackup`` (the group is created, and removed
    afterwards, when this machine has none). Must exist before the bus reads the policy."""
    if os.geteuid() != 0:
        pytest.fail("the D-Bus tests run as root (CI does): they create users and switch to them")
    made_group = subprocess.run(["getent", "group", names.ADMIN_GROUP],
                                capture_output=True).returncode != 0
    if made_group:
        subprocess.run(["groupadd", "--system", names.ADMIN_GROUP], check=True)
    subprocess.run(["useradd", "--system", "-M", "-N", "-s", "/usr/sbin/nologin",
                    "-G", names.ADMIN_GROUP, TEST_USER], check=True)
    try:
        yield TEST_USER
    finally:
        subprocess.run(["userdel", TEST_USER], check=False)
        if made_group:
            subprocess.run(["groupdel", names.ADMIN_GROUP], check=False)


@pytest.fixture(scope="session")
def private_bus(admin_user: str) -> Iterator[PrivateBus]:
    bus = PrivateBus()
    try:
        yield bus
    finally:
        bus.close()


def as_user(user: str, argv: list[str], *, init_groups: bool) -> list[str]:
    """argv run as ``user`` through setpriv (nobody: nogroup and no supplementary groups)."""
    pw = pwd.getpwnam(user)
    groups = ["--init-groups"] if init_groups else ["--clear-groups"]
    return ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", *groups, *argv]


def write_config(tmp: Path, *, extra_jobs: str = "") -> Path:
    src = tmp / "src"
    (src / "sub").mkdir(parents=True, exist_ok=True)
    for i in range(20):
        (src / "sub" / f"f{i}").write_bytes(os.urandom(2048) * (i + 1))
    (tmp / "dest").mkdir(exist_ok=True)
    cfg = tmp / "odbackupd.toml"
    cfg.write_text(textwrap.dedent(f"""\
        [daemon]
        state_dir = "{tmp / 'state'}"
        spool_dir = "{tmp / 'spool'}"

        [destination.usb]
        type = "local"
        path = "{tmp / 'dest'}"

        [job.t]
        sources = ["{src}"]
        destinations = ["usb"]
        volume_size = "1MiB"

        [job."web-1.x"]
        sources = ["{src}"]
        destinations = ["usb"]
        schedule = "0 3 * * *"
        """) + extra_jobs)
    return cfg


_notify_serial = itertools.count(1)


class Daemon:
    """The daemon serving ``config`` on ``bus``: ``odbackupd --config`` as a subprocess."""

    def __init__(self, config: Path, bus: PrivateBus) -> None:
        self.config = config
        self.bus = bus
        self.proc: subprocess.Popen | None = None
        self._start_process()

    def _start_process(self) -> None:
        # A fresh name per daemon: id(self) of a collected Daemon comes back, and a stopped
        # daemon's socket path must never be handed to the next one.
        sock_path = self.bus.dir / f"notify-{os.getpid()}-{next(_notify_serial)}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(sock_path))
        sock.settimeout(30)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "odbackupd.main", "--config", str(self.config)],
            env=self.bus.env(NOTIFY_SOCKET=str(sock_path)),
            stderr=open(self.config.parent / "daemon.log", "w"),
            preexec_fn=die_with_parent)
        try:
            while True:  # READY=1 comes once the bus name is owned
                msg = sock.recv(4096).decode()
                if "READY=1" in msg.split("\n"):
                    break
        except TimeoutError:
            self.stop()
            raise RuntimeError("odbackupd did not become ready: "
                               + (self.config.parent / "daemon.log").read_text()) from None
        finally:
            sock.close()
            sock_path.unlink(missing_ok=True)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)


@pytest.fixture(scope="module")
def daemon(private_bus: PrivateBus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    cfg = write_config(tmp_path_factory.mktemp("daemon"))
    d = Daemon(cfg, private_bus)
    try:
        yield d
    finally:
        d.stop()


def odctl(bus: PrivateBus, *args: str, env: dict | None = None, timeout: float = 120,
          stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "odctl.cli", *args], capture_output=True,
                          text=True, env=env or bus.env(), timeout=timeout, input=stdin)


def busctl(bus: PrivateBus, *args: str, user: str | None = None, init_groups: bool = False,
           timeout: float = 60) -> subprocess.CompletedProcess:
    argv = ["busctl", f"--address={bus.address}", *args]
    if user is not None:
        argv = as_user(user, argv, init_groups=init_groups)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
