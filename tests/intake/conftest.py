"""The real odbackupd-intake process, socket-activated the way systemd does it.

The test holds the listening socket (as ``odbackupd-intake.socket`` does) and hands it to
each start of the service as fd 3 with ``LISTEN_FDS``/``LISTEN_PID``, so a stopped service
loses no connection attempts and a restarted one serves the same port. Readiness is the
service's own ``READY=1`` on a ``NOTIFY_SOCKET`` the test listens on — no sleeps.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from odbackupd.intake.tokens import hash_token
from tests.procs import die_with_parent

TOKENS = {"alice": "alice-token-0123456789", "bob": "bob-token-9876543210"}


def wait_until(pred, what: str, timeout: float = 30.0) -> None:
    """Poll *pred* (every 20 ms) until true: for outside events nothing else signals."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Intake:
    def __init__(self, tmp: Path, *, quota: str | None = None, max_file_size: str = "8MiB",
                 drop_root: Path | None = None, upload_expiry: str = "1d") -> None:
        self.tmp = tmp
        root = drop_root or tmp
        self.drop = {u: root / f"drop-{u}" for u in TOKENS}
        self.partial = {u: root / f"drop-{u}.partial" for u in TOKENS}
        self.unprivileged = os.geteuid() == 0
        for d in self.drop.values():
            d.mkdir()
            if self.unprivileged:  # as the README sets it up: the daemon's, write-only for us
                os.chown(d, 65534, 0)
                os.chmod(d, 0o1730)
        self.state = tmp / "intake-state"
        self.dest = tmp / "dest"
        self.dest.mkdir()
        self.config = tmp / "odbackupd.toml"
        text = textwrap.dedent(f"""\
            [daemon]
            state_dir = "{tmp / 'state'}"
            spool_dir = "{tmp / 'spool'}"

            [destination.usb]
            type = "local"
            path = "{self.dest}"

            [intake]
            state_dir = "{self.state}"
            max_file_size = "{max_file_size}"
            upload_expiry = "{upload_expiry}"
            """)
        for user, token in TOKENS.items():
            (tmp / f"{user}.sha256").write_text(hash_token(token) + "\n")
            text += textwrap.dedent(f"""
                [job.{user}-files]
                drop_dir = "{self.drop[user]}"
                destinations = ["usb"]
                volume_size = "1MiB"

                [intake.user.{user}]
                token_file = "{tmp / f'{user}.sha256'}"
                drop_job = "{user}-files"
                """) + (f'quota = "{quota}"\n' if quota else "")
        self.config.write_text(text)
        self.port = 0
        self._listen()
        self.url = f"http://127.0.0.1:{self.port}"
        self._notify_dir = tempfile.mkdtemp(prefix="intake-n")  # short: AF_UNIX path limit
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(os.path.join(self._notify_dir, "n"))
        self.proc: subprocess.Popen | None = None
        self.logs: list[str] = []

    # ---- the process ----------------------------------------------------------------------

    def _listen(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    def stop_socket(self) -> None:
        """Like ``systemctl stop odbackupd-intake.socket``: connections are refused until
        the next :meth:`start`, which listens on the same port again."""
        self.sock.close()
        self.sock = None

    @property
    def no_caps(self) -> list[str]:
        """Root without any capability (the unit gives the service none): the drop
        directories' modes apply to it as to the odbackupd-intake user."""
        return ["setpriv", "--bounding-set=-all", "--"] if self.unprivileged else []

    def start(self, timeout: float = 30.0) -> None:
        assert self.proc is None
        if self.sock is None:
            self._listen()
        fd = self.sock.fileno()

        def child() -> None:
            die_with_parent()
            os.dup2(fd, 3)

        env = dict(os.environ, NOTIFY_SOCKET=os.path.join(self._notify_dir, "n"))
        env.pop("JOURNAL_STREAM", None)
        self.log_file = self.tmp / f"intake-{len(self.logs)}.log"
        with open(self.log_file, "wb") as log:
            self.proc = subprocess.Popen(
                ["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"', "sh", *self.no_caps,
                 sys.executable, "-m", "odbackupd.intake.main", "--config", str(self.config)],
                env=env, stdout=log, stderr=subprocess.STDOUT, pass_fds=(3,), preexec_fn=child)
        self.notify.settimeout(timeout)
        while True:
            try:
                msg = self.notify.recv(4096).decode()
            except TimeoutError:
                self.stop()
                raise AssertionError(f"odbackupd-intake did not get ready:\n{self.log()}") from None
            if "READY=1" in msg.split("\n"):
                return

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        rc = self.proc.wait(30)
        self.logs.append(self.log_file.read_text())
        self.proc = None
        return rc

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()

    def wait_log(self, text: str, timeout: float = 30.0) -> None:
        """Until the service has logged *text* (for events no HTTP answer reports)."""
        wait_until(lambda: text in self.log(), f"the service to log {text!r}", timeout)

    def log(self) -> str:
        return "".join(self.logs) + (self.log_file.read_text() if self.proc else "")

    def close(self) -> None:
        if self.proc is not None:
            self.stop(signal.SIGKILL)
        if self.sock is not None:
            self.sock.close()
        self.notify.close()
        shutil.rmtree(self._notify_dir, ignore_errors=True)

    # ---- HTTP -------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: bytes | None = None, *, user: str | None = None,
                token: str | None = None, headers: dict | None = None, tus: bool = False,
                ) -> tuple[int, dict[str, str], bytes]:
        h = dict(headers or {})
        if user is not None or token is not None:
            h["Authorization"] = f"Bearer {token if token is not None else TOKENS[user]}"
        if tus:
            h["Tus-Resumable"] = "1.0.0"
        chunked = h.pop("Transfer-Encoding", None) == "chunked"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=h, encode_chunked=chunked)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def put(self, name: str, data: bytes, user: str = "alice", **kw) -> tuple[int, dict]:
        status, _, body = self.request("PUT", f"/upload/{name}", data, user=user, **kw)
        return status, (json.loads(body) if status == 201 else {"text": body.decode()})

    def create(self, length: int, name: str = "big.bin", user: str = "alice") -> str:
        import base64

        status, h, body = self.request("POST", "/files", user=user, tus=True, headers={
            "Upload-Length": str(length),
            "Upload-Metadata": "filename " + base64.b64encode(name.encode()).decode()})
        assert status == 201, body
        return "/" + h["location"]

    def patch(self, location: str, offset: int, data: bytes, user: str = "alice",
              headers: dict | None = None) -> tuple[int, dict[str, str], bytes]:
        return self.request("PATCH", location, data, user=user, tus=True, headers={
            "Content-Type": "application/offset+octet-stream", "Upload-Offset": str(offset),
            **(headers or {})})

    def offset(self, location: str, user: str = "alice") -> int | None:
        status, h, _ = self.request("HEAD", location, user=user, tus=True)
        return int(h["upload-offset"]) if status == 200 else None

    def waiting(self, user: str = "alice") -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(self.drop[user].iterdir())}

    def partials(self, user: str = "alice") -> list[str]:
        d = self.partial[user]
        return sorted(os.listdir(d)) if d.exists() else []


@pytest.fixture
def intake(tmp_path: Path) -> Iterator[Intake]:
    svc = Intake(tmp_path)
    svc.start()
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture(scope="module")
def _module_intake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Intake]:
    svc = Intake(tmp_path_factory.mktemp("intake"))
    svc.start()
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture
def shared(_module_intake: Intake) -> Intake:
    """One running service for many short tests; each starts with empty drop directories."""
    for d in _module_intake.drop.values():
        for p in d.iterdir():
            p.unlink()
    return _module_intake


def send_partial(port: int, head: str, body: bytes) -> None:
    """Send a request's head and only *body* of it, then drop the connection (a cut link)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(head.encode() + body)
    s.shutdown(socket.SHUT_WR)
    s.settimeout(30)
    try:
        while s.recv(65536):  # the server answers or closes once it has seen the end
            pass
    except OSError:
        pass
    s.close()
