"""Through Debian's nginx, configured by the packaged sample site (TLS, streaming request
bodies, limits): a test-local nginx with its own prefix and config on loopback ports."""
from __future__ import annotations

import base64
import hashlib
import http.client
import os
import shutil
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
import trustme

from .conftest import TOKENS, Intake, wait_until

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "nginx-odbackupd-intake.conf"
MiB = 1 << 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, f"the sample site no longer has {old!r}"
    return text.replace(old, new)


class Nginx:
    def __init__(self, tmp: Path, upstream_port: int) -> None:
        self.prefix = tmp / "nginx"
        self.prefix.mkdir()
        ca = trustme.CA()
        cert = ca.issue_cert("backup-intake.example.org", "127.0.0.1")
        cert.private_key_and_cert_chain_pem.write_to_path(str(self.prefix / "site.pem"))
        self.ssl = ssl.create_default_context()
        ca.configure_trust(self.ssl)
        self.port = _free_port()
        site = SAMPLE.read_text()
        site = _replace(site, "listen 443 ssl http2;", f"listen 127.0.0.1:{self.port} ssl http2;")
        site = _replace(site, "listen [::]:443 ssl http2;", "")
        site = _replace(site, "listen 80;", f"listen 127.0.0.1:{_free_port()};")
        site = _replace(site, "listen [::]:80;", "")
        site = _replace(site, "/etc/letsencrypt/live/backup-intake.example.org/fullchain.pem",
                        str(self.prefix / "site.pem"))
        site = _replace(site, "/etc/letsencrypt/live/backup-intake.example.org/privkey.pem",
                        str(self.prefix / "site.pem"))
        site = _replace(site, "server 127.0.0.1:8421;", f"server 127.0.0.1:{upstream_port};")
        (self.prefix / "site.conf").write_text(site)
        p = self.prefix
        user = "user root root;" if os.geteuid() == 0 else ""  # workers must reach tmp_path
        (p / "nginx.conf").write_text(f"""
            {user}
            worker_processes 1;
            pid {p}/nginx.pid;
            error_log {p}/error.log info;
            events {{ worker_connections 128; }}
            http {{
                access_log {p}/access.log;
                client_body_temp_path {p}/body;
                proxy_temp_path {p}/proxy;
                fastcgi_temp_path {p}/fastcgi;
                uwsgi_temp_path {p}/uwsgi;
                scgi_temp_path {p}/scgi;
                include {p}/site.conf;
            }}
            """)
        subprocess.run(["nginx", "-t", "-p", str(p), "-c", str(p / "nginx.conf")], check=True,
                       capture_output=True)
        self.proc = subprocess.Popen(["nginx", "-p", str(p), "-c", str(p / "nginx.conf"),
                                      "-g", "daemon off;"], stderr=subprocess.PIPE)
        self._wait_listening()

    def _wait_listening(self) -> None:
        def listening() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(self.proc.stderr.read().decode())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except ConnectionRefusedError:
                return False

        wait_until(listening, "nginx to listen")  # nginx has no readiness notification

    def request(self, method: str, path: str, body=None, *, user: str | None = "alice",  # noqa: ANN001
                headers: dict | None = None) -> tuple[int, dict[str, str], bytes]:
        h = dict(headers or {})
        if user:
            h["Authorization"] = f"Bearer {TOKENS[user]}"
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ssl, timeout=60)
        try:
            conn.request(method, path, body=body, headers=h,
                         encode_chunked=h.pop("Transfer-Encoding", None) == "chunked")
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


@pytest.fixture
def proxied(intake: Intake, tmp_path: Path) -> Iterator[tuple[Intake, Nginx]]:
    if shutil.which("nginx") is None:
        pytest.fail("nginx is not installed: run scripts/setup-dev.sh")
    ngx = Nginx(tmp_path, intake.port)
    try:
        yield intake, ngx
    finally:
        ngx.stop()


def test_put_and_chunked_put_through_nginx(proxied) -> None:  # noqa: ANN001
    intake, ngx = proxied
    data = os.urandom(3 * MiB)
    status, _, body = ngx.request("PUT", "/upload/through-nginx.bin", data)
    assert status == 201 and hashlib.sha256(data).hexdigest().encode() in body
    chunks = (os.urandom(MiB) for _ in range(2))
    assert ngx.request("PUT", "/upload/chunked.bin", chunks,
                       headers={"Transfer-Encoding": "chunked"})[0] == 201
    big = (os.urandom(MiB) for _ in range(10))  # past max_file_size while streaming
    assert ngx.request("PUT", "/upload/big.bin", big, headers={"Transfer-Encoding": "chunked"})[0] == 413
    assert ngx.request("PUT", "/upload/x.bin", b"x", user=None)[0] == 401
    assert ngx.request("GET", "/upload/through-nginx.bin")[0] == 405
    assert set(intake.waiting()) == {"through-nginx.bin", "chunked.bin"}
    assert intake.waiting()["through-nginx.bin"] == data
    assert "127.0.0.1" in intake.log()  # nginx passed the client on (INTAKE_FORWARDED_FOR)


def test_bodies_stream_through_so_a_cut_upload_resumes(proxied) -> None:  # noqa: ANN001
    """proxy_request_buffering off: what a client sent before its link dropped reaches the
    service, so the tus offset moves on (buffered, nginx would drop the whole body)."""
    intake, ngx = proxied
    data = os.urandom(6 * MiB)
    status, h, _ = ngx.request("POST", "/files", headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": str(len(data)),
        "Upload-Metadata": "filename " + base64.b64encode(b"cut.bin").decode()})
    assert status == 201
    loc = "/" + h["location"]
    raw = socket.create_connection(("127.0.0.1", ngx.port))
    s = ngx.ssl.wrap_socket(raw, server_hostname="127.0.0.1")
    s.sendall((f"PATCH {loc} HTTP/1.1\r\nHost: backup-intake.example.org\r\n"
               f"Authorization: Bearer {TOKENS['alice']}\r\nTus-Resumable: 1.0.0\r\n"
               f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
               f"Content-Length: {len(data)}\r\n\r\n").encode() + data[:4 * MiB])
    s.close()  # the link drops with 2 MiB unsent
    intake.wait_log("ended early")  # nginx passes the cut on to the service
    status, h, _ = ngx.request("HEAD", loc, headers={"Tus-Resumable": "1.0.0"})
    offset = int(h["upload-offset"])
    assert offset is not None and 0 < offset <= 4 * MiB
    status, h, _ = ngx.request("PATCH", loc, data[offset:], headers={
        "Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream",
        "Upload-Offset": str(offset)})
    assert status == 204 and h["intake-sha256"] == hashlib.sha256(data).hexdigest()
    assert intake.waiting() == {"cut.bin": data}


def test_limit_req_answers_429_to_a_flood(proxied) -> None:  # noqa: ANN001
    _, ngx = proxied
    statuses = [ngx.request("GET", "/", user=None)[0] for _ in range(150)]
    assert statuses[0] == 200 and 429 in statuses
