"""A private CA and a server certificate for 127.0.0.1/localhost, kept in ``DATA/tls``.

Kept across restarts so a client configured with the CA path before a restart keeps
trusting the emulator after it.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import trustme


class TLSFiles:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca_pem = self.dir / "ca.pem"
        self.ca_key = self.dir / "ca.key"
        self.cert_chain = self.dir / "server-chain.pem"
        self.cert_key = self.dir / "server.key"
        self.bundle = self.dir / "bundle-with-system-cas.pem"
        if not (self.ca_pem.exists() and self.cert_chain.exists() and self.cert_key.exists()):
            self._generate()
        self._write_bundle()

    def _generate(self) -> None:
        ca = trustme.CA(organization_name="graphemu test CA")
        leaf = ca.issue_cert("127.0.0.1", "localhost", "::1")
        self.ca_key.write_bytes(ca.private_key_pem.bytes())
        self.cert_key.write_bytes(leaf.private_key_pem.bytes())
        self.cert_chain.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
        os.chmod(self.ca_key, 0o600)
        os.chmod(self.cert_key, 0o600)
        self.ca_pem.write_bytes(ca.cert_pem.bytes())  # last: marks completion

    def _write_bundle(self) -> None:
        """System CAs + ours, for clients that can only be pointed at one bundle."""
        system = None
        for candidate in (
            os.environ.get("REQUESTS_CA_BUNDLE"),
            os.environ.get("SSL_CERT_FILE"),
            ssl.get_default_verify_paths().cafile,
            "/etc/ssl/certs/ca-certificates.crt",
        ):
            if candidate and Path(candidate).is_file() and Path(candidate) != self.bundle:
                system = Path(candidate)
                break
        data = system.read_bytes() if system else b""
        if data and not data.endswith(b"\n"):
            data += b"\n"
        self.bundle.write_bytes(data + self.ca_pem.read_bytes())

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_chain, self.cert_key)
        return ctx
