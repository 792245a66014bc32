"""The systemd notify protocol (sd_notify(3)), written out: a datagram to $NOTIFY_SOCKET.

A few lines instead of a dependency: python3-systemd is optional and the protocol is one
``sendto``. Without systemd (no $NOTIFY_SOCKET) every call is a silent no-op, so the daemon
runs the same in a terminal, a container or a test.

What the daemon sends: ``READY=1`` once it serves; ``STATUS=`` one-line summaries;
``RELOADING=1`` with ``MONOTONIC_USEC=`` around a reload (systemd ≥ 253 wants both for
``Type=notify-reload``, older ones ignore them) and ``READY=1`` after; ``STOPPING=1``; and
``WATCHDOG=1`` when $WATCHDOG_USEC is set (for our pid), pinged from the event loop so a
hung loop stops pinging and systemd restarts the service.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping, MutableMapping

log = logging.getLogger("odbackupd.notify")


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if addr.startswith("@"):
            self.address = "\0" + addr[1:]  # abstract namespace
        elif addr.startswith("/"):
            self.address = addr
        self.watchdog_usec: int | None = None
        wd = env.get("WATCHDOG_USEC")
        wd_pid = env.get("WATCHDOG_PID")
        if wd and (not wd_pid or wd_pid == str(os.getpid())):
            try:
                self.watchdog_usec = int(wd) if int(wd) > 0 else None
            except ValueError:
                log.warning("ignoring WATCHDOG_USEC=%r: not a number of microseconds", wd)
        self._sock: socket.socket | None = None
        self._warned = False
        self._last_status: str | None = None

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        """Read and remove the variables, as sd_notify(unset_environment=1) does, so that
        the tools we start (age, zstd, tar) never talk to systemd in our name."""
        environ = os.environ if environ is None else environ
        n = cls(environ)
        for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            environ.pop(k, None)
        return n

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between pings: half the watchdog timeout, as sd_watchdog_enabled(3) advises."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    def send(self, *lines: str) -> bool:
        if self.address is None:
            return False
        msg = "\n".join(lines).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(msg, self.address)
            return True
        except OSError as e:
            if not self._warned:  # once: systemd gone away is not worth a log line a second
                log.warning("cannot notify systemd at %s: %s", self.address.replace("\0", "@"), e)
                self._warned = True
            return False

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        text = _one_line(text)
        if text == self._last_status:
            return False
        self._last_status = text
        return self.send(f"STATUS={text}")

    def reloading(self) -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}",
                         "STATUS=reloading the configuration")

    def stopping(self) -> bool:
        return self.send("STOPPING=1", "STATUS=stopping: checkpointing runs")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
