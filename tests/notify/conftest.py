"""Real receivers on loopback: an HTTP server that records what it is sent (and can be
down), and an aiosmtpd SMTP server with STARTTLS or implicit TLS and a test CA (trustme)."""
from __future__ import annotations

import http.server
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.snapshot.conftest import age_key, setup  # noqa: F401 - the same config-writing fixtures


def _wait_for(cond: threading.Condition, items: list, n: int, timeout: float, what: str) -> list:
    """The first ``n`` of ``items`` once they have arrived (appended under ``cond``)."""
    deadline = time.monotonic() + timeout
    with cond:
        while len(items) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"expected {n} {what}, got {items}")
            cond.wait(left)
        return list(items[:n])


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """An HTTP receiver on a fixed loopback port that can be stopped and started again."""

    def __init__(self, status: int = 200) -> None:
        with socket.socket() as s:  # a port of our own, kept across stop/start
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.status = status
        self.requests: list[Request] = []
        self._cond = threading.Condition()
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with rec._cond:
                    rec.requests.append(Request("POST", self.path, dict(self.headers.items()),
                                                body))
                    rec._cond.notify_all()
                self.send_response(rec.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a: object) -> None:
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, n: int, timeout: float = 60.0) -> list[Request]:
        return _wait_for(self._cond, self.requests, n, timeout, "requests")


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@dataclass
class Mailbox:
    host: str
    port: int
    ca_file: Path
    messages: list = field(default_factory=list)
    logins: list = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, n: int, timeout: float = 60.0) -> list:
        return _wait_for(self.cond, self.messages, n, timeout, "mails")


PASSWORD = "s3cret-smtp-password"


def _smtp(tmp_path: Path, implicit_tls: bool):  # noqa: ANN202
    import trustme
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    ca_file = tmp_path / "smtp-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    box = Mailbox("localhost", port, ca_file)

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201, N802
            from email import message_from_bytes, policy

            with box.cond:
                box.messages.append(message_from_bytes(envelope.content, policy=policy.default))
                box.cond.notify_all()
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):  # noqa: ANN001, ANN202
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == PASSWORD.encode()
        box.logins.append((auth_data.login.decode(), ok))
        return AuthResult(success=ok)

    kw = dict(hostname="127.0.0.1", port=port, authenticator=authenticator)
    if implicit_tls:  # the whole connection is TLS (aiosmtpd does not count it as such for AUTH)
        controller = Controller(Handler(), ssl_context=ctx, auth_require_tls=False, **kw)
    else:
        controller = Controller(Handler(), tls_context=ctx, require_starttls=True, **kw)
    controller.start()
    return controller, box


@pytest.fixture
def smtp_starttls(tmp_path: Path):
    controller, box = _smtp(tmp_path, implicit_tls=False)
    yield box
    controller.stop()


@pytest.fixture
def smtp_tls(tmp_path: Path):
    controller, box = _smtp(tmp_path, implicit_tls=True)
    yield box
    controller.stop()
