"""sd_notify against a real AF_UNIX datagram socket bound by the test, as systemd binds it."""
from __future__ import annotations

import os
import socket
import time

import pytest

from odbackupd.service.notify import Notifier


@pytest.fixture
def listener(tmp_path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    s.bind(str(path))
    s.settimeout(5)
    yield path, s
    s.close()


def recv(s: socket.socket) -> dict[str, str]:
    return dict(line.split("=", 1) for line in s.recv(4096).decode().splitlines())


def test_ready_status_reloading_stopping(listener):
    path, s = listener
    n = Notifier({"NOTIFY_SOCKET": str(path)})
    assert n.enabled
    assert n.ready("idle; 2 jobs")
    assert recv(s) == {"READY": "1", "STATUS": "idle; 2 jobs"}
    assert n.status("running etc 43% (vol 12)\nsecond line")
    assert recv(s) == {"STATUS": "running etc 43% (vol 12) second line"}  # one line, always
    assert n.status("running etc 43% (vol 12)\nsecond line") is False  # unchanged: not resent
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert n.reloading()
    msg = recv(s)
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert msg["RELOADING"] == "1" and before <= int(msg["MONOTONIC_USEC"]) <= after
    assert n.stopping()
    assert recv(s)["STOPPING"] == "1"


def test_abstract_namespace_socket():
    name = f"odbackupd-test-{os.getpid()}-{time.monotonic_ns()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    s.settimeout(5)
    try:
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.ready()
        assert recv(s) == {"READY": "1"}
    finally:
        s.close()


def test_watchdog_interval_and_pid(listener):
    path, s = listener
    n = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "30000000",
                  "WATCHDOG_PID": str(os.getpid())})
    assert n.watchdog_interval == 15.0  # half the timeout
    assert n.watchdog()
    assert recv(s) == {"WATCHDOG": "1"}
    # the watchdog is meant for another process (e.g. a parent that forked us): not ours
    other = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval is None


def test_quiet_without_systemd(tmp_path):
    n = Notifier({})
    assert not n.enabled and n.watchdog_interval is None
    assert n.ready("x") is False and n.status("y") is False and n.reloading() is False
    # a socket that went away: no exception, the daemon keeps running
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody")})
    assert gone.ready() is False and gone.ready() is False


def test_from_environment_unsets_the_variables(listener):
    path, _ = listener
    env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000", "PATH": "/bin"}
    n = Notifier.from_environment(env)
    assert n.enabled and n.watchdog_interval == 0.5
    assert env == {"PATH": "/bin"}  # age/zstd/tar we start never notify in our name
