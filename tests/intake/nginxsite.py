"""A test-local nginx (own prefix, config and loopback ports, no system-wide files) serving
the packaged sample site in front of an odbackupd-intake: used by the tests and the bench."""
from __future__ import annotations

import http.client
import os
import socket
import ssl
import subprocess
from pathlib import Path

import trustme

from .conftest import TOKENS, wait_until

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "nginx-odbackupd-intake.conf"


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
        self.ca_pem = ca.cert_pem.bytes()
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

    def request(self, method: str, path: str, body=None, *, user: str | None = "alice",
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
