"""Through Debian's nginx, configured by the packaged sample site (TLS, streaming request
bodies, limits): a test-local nginx with its own prefix and config on loopback ports."""
from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import TOKENS, Intake
from .nginxsite import Nginx

MiB = 1 << 20


@pytest.fixture
def proxied(intake: Intake, tmp_path: Path) -> Iterator[tuple[Intake, Nginx]]:
    if shutil.which("nginx") is None:
        pytest.fail("nginx is not installed: run scripts/setup-dev.sh")
    ngx = Nginx(tmp_path, intake.port)
    try:
        yield intake, ngx
    finally:
        ngx.stop()


def test_put_and_chunked_put_through_nginx(proxied) -> None:
    intake, ngx = proxied
    data = os.urandom(3 * MiB)
    status, _, body = ngx.request("PUT", "/upload/through-nginx.bin", data)
    assert status == 201 and hashlib.sha256(data).hexdigest().encode() in body
    chunks = (os.urandom(MiB) for _ in range(2))
    assert ngx.request("PUT", "/upload/chunked.bin", chunks,
                       headers={"Transfer-Encoding": "chunked"})[0] == 201
    big = (os.urandom(MiB) for _ in range(10))  # past max_file_size while streaming
    assert ngx.request("PUT", "/upload/big.bin", big,
                       headers={"Transfer-Encoding": "chunked"})[0] == 413
    assert ngx.request("PUT", "/upload/x.bin", b"x", user=None)[0] == 401
    assert ngx.request("GET", "/upload/through-nginx.bin")[0] == 405
    assert set(intake.waiting()) == {"through-nginx.bin", "chunked.bin"}
    assert intake.waiting()["through-nginx.bin"] == data
    assert "127.0.0.1" in intake.log()  # nginx passed the client on (INTAKE_FORWARDED_FOR)


def test_bodies_stream_through_so_a_cut_upload_resumes(proxied) -> None:
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


def test_limit_req_answers_429_to_a_flood(proxied) -> None:
    _, ngx = proxied
    statuses = [ngx.request("GET", "/", user=None)[0] for _ in range(150)]
    assert statuses[0] == 200 and 429 in statuses
