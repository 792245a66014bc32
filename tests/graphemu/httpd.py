"""HTTPS listeners: stdlib ThreadingHTTPServer, HTTP/1.1 keep-alive, exact body framing.

The handler reads the whole request body itself (Content-Length or chunked), so the
application sees how the client framed it (``Request.chunked``, ``Request.content_length``)
and can reject what the real service rejects. Responses always carry Content-Length.
A response can also be a fault: ``Response.drop()`` closes the connection without an
answer (the request's effect stays: "response lost"), ``Response.reset()`` aborts it with
a TCP RST.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# Bodies larger than this are read and thrown away (they can only be rejected); the
# request then has body_discarded=True.
MAX_KEPT_BODY = 256 * 1024 * 1024  # > the lenient 250 MB simple-upload limit


class BadFraming(Exception):
    pass


@dataclass
class Request:
    host: str  # "login" | "graph" | "files"
    method: str
    target: str  # raw request target, path + query, exactly as sent
    path: str  # raw path, still percent-encoded
    raw_query: str
    query: dict[str, str]
    headers: Message
    body: bytes
    chunked: bool
    content_length: int | None
    body_length: int
    body_discarded: bool
    arrived: float  # emulator clock
    request_id: str = ""
    client_request_id: str = ""
    label: str = "unknown"
    client: str | None = None  # client_id the request is attributed to (throttling)
    faults: list = field(default_factory=list)  # fault rules that fired for it
    token: dict | None = None  # validated access-token claims (Graph)
    meta: dict = field(default_factory=dict)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    def fault(self, action: str):
        for f in self.faults:
            if f.action == action:
                return f
        return None

    def json(self) -> Any:
        if not self.body:
            return None
        return json.loads(self.body.decode("utf-8"))

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))

    def describe(self) -> str:
        return f"{self.method} {self.host}:{self.target}"


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    file: tuple[Path, int, int] | None = None  # (path, offset, length) streamed
    action: str | None = None  # None | "drop" | "reset"
    truncate_to: int | None = None  # send only this many body bytes, then reset
    # told each body block's length before it is written, and minus it if the write fails:
    # counts the bytes that went out (a reader seeing the last byte sees it counted)
    on_sent: Callable[[int], None] | None = None

    @classmethod
    def json(cls, status: int, obj: Any, headers: list[tuple[str, str]] | None = None):
        body = json.dumps(obj).encode("utf-8")
        hdrs = [("Content-Type", "application/json; charset=utf-8")] + list(headers or [])
        return cls(status, body, hdrs)

    @classmethod
    def empty(cls, status: int, headers: list[tuple[str, str]] | None = None):
        return cls(status, b"", list(headers or []))

    @classmethod
    def drop(cls):
        return cls(0, action="drop")

    @classmethod
    def reset(cls):
        return cls(0, action="reset")

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def set_header(self, name: str, value: str) -> None:
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        self.headers.append((name, value))


def _read_exact(rfile, n: int, keep: bool) -> bytes:
    chunks = []
    remaining = n
    while remaining:
        block = rfile.read(min(remaining, 1 << 20))
        if not block:
            raise BadFraming("connection closed before the announced Content-Length")
        remaining -= len(block)
        if keep:
            chunks.append(block)
    return b"".join(chunks)


def _read_chunked(rfile) -> bytes:
    out = bytearray()
    while True:
        line = rfile.readline(65537)
        if not line:
            raise BadFraming("connection closed inside a chunked body")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BadFraming("bad chunk size line") from None
        if size == 0:
            while True:  # trailers up to the blank line
                trailer = rfile.readline(65537)
                if trailer in (b"\r\n", b"\n", b""):
                    return bytes(out)
        out += _read_exact(rfile, size, True)
        if len(out) > MAX_KEPT_BODY:
            raise BadFraming("chunked body too large")
        rfile.readline(3)  # CRLF after the chunk


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120  # idle keep-alive connections end on their own
    server: EmuHTTPServer

    def handle(self) -> None:
        try:
            self.connection.do_handshake()
        except (ssl.SSLError, OSError):
            self.close_connection = True
            return
        try:
            super().handle()
        except (ConnectionError, ssl.SSLError, TimeoutError, OSError):
            self.close_connection = True

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        self.server.track(self.connection, False)

    def log_message(self, format: str, *args) -> None:
        pass

    def _dispatch(self) -> None:
        self.server.app(self, self.server.kind)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

    # helpers used by the application ---------------------------------------------
    def read_request(self, kind: str, arrived: float) -> Request:
        target = self.path
        parts = urlsplit(target)
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        cl_text = self.headers.get("Content-Length")
        chunked = "chunked" in te
        content_length = None
        discarded = False
        if chunked:
            body = _read_chunked(self.rfile)
            length = len(body)
        elif cl_text is not None:
            try:
                content_length = int(cl_text.strip())
                if content_length < 0:
                    raise ValueError
            except ValueError:
                raise BadFraming("bad Content-Length") from None
            keep = content_length <= MAX_KEPT_BODY
            body = _read_exact(self.rfile, content_length, keep)
            discarded = not keep
            length = content_length
        else:
            body = b""
            length = 0
        return Request(
            host=kind,
            method=self.command,
            target=target,
            path=parts.path,
            raw_query=parts.query,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers=self.headers,
            body=body,
            chunked=chunked,
            content_length=content_length,
            body_length=length,
            body_discarded=discarded,
            arrived=arrived,
        )

    def send(self, resp: Response, head_only: bool = False) -> None:
        if resp.action == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if resp.action == "reset":
            self.abort()
            return
        if resp.file is not None:
            length = resp.file[2]
        else:
            length = len(resp.body)
        self.send_response(resp.status)
        for k, v in resp.headers:
            self.send_header(k, v)
        if resp.status not in (204, 304):  # RFC 9110: no Content-Length on 204
            self.send_header("Content-Length", str(length))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if head_only or resp.status in (204, 304) or resp.status < 200:
            return
        limit = length if resp.truncate_to is None else min(length, resp.truncate_to)
        if resp.file is not None:
            path, offset, _ = resp.file
            with open(path, "rb") as f:
                f.seek(offset)
                left = limit
                while left:
                    block = f.read(min(left, 1 << 20))
                    if not block:
                        break
                    self._write_body(resp, block)
                    left -= len(block)
        else:
            self._write_body(resp, resp.body[:limit])
        if resp.truncate_to is not None and limit < length:
            self.abort()

    def _write_body(self, resp: Response, block: bytes) -> None:
        if resp.on_sent is not None:
            resp.on_sent(len(block))
        try:
            self.wfile.write(block)
        except OSError:
            if resp.on_sent is not None:
                resp.on_sent(-len(block))
            raise

    def abort(self) -> None:
        """Close with RST (SO_LINGER 0): the client sees 'connection reset by peer'."""
        self.close_connection = True
        try:
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            sock = socket.socket(fileno=self.connection.detach())
            sock.close()
        except OSError:
            pass


class EmuHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, port: int, kind: str, ssl_ctx: ssl.SSLContext,
                 app: Callable[[_Handler, str], None]) -> None:
        self.kind = kind
        self.app = app
        self.ssl_ctx = ssl_ctx
        self._conns: set = set()
        self._conns_lock = threading.Lock()
        self.accepted = 0  # TCP connections accepted (keep-alive tests)
        super().__init__(("127.0.0.1", port), _Handler)
        self.thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server_address[1]

    def get_request(self):
        sock, addr = self.socket.accept()
        self.accepted += 1
        # headers and body go out in separate writes: without this, Nagle + delayed ACK
        # add 40 ms to every response
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = self.ssl_ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address) -> None:
        pass  # a client hanging up is not the emulator's problem

    def track(self, conn, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def start(self) -> None:
        self.thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"graphemu-{self.kind}", daemon=True,
        )
        self.thread.start()

    def stop(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            self.shutdown()  # blocks forever unless serve_forever is running
        self.server_close()
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:  # keep-alive connections must not outlive the instance
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self.thread:
            self.thread.join(5)
