"""``[account.NAME]``: the Microsoft accounts that onedrive destinations log in with.

Its own module, as ``notify_schema`` and ``job_schema`` are, so the schema's modules stay
small; :mod:`.schema` puts the sections together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .fields import key
from .kinds import Bool, Choice, PathKind, Str

__all__ = ["AccountConfig"]

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DOMAIN = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def _client_id(value: str) -> str:
    if not _GUID.fullmatch(value):
        raise ValueError(
            f"invalid client_id '{value}': expected the application (client) ID of an "
            "app registration, a GUID like 00000000-0000-0000-0000-000000000000"
        )
    return value.lower()


def _tenant(value: str) -> str:
    if value in ("consumers", "organizations", "common"):
        return value
    if _GUID.fullmatch(value) or _DOMAIN.fullmatch(value):
        return value.lower()
    raise ValueError(
        f"invalid tenant '{value}': expected consumers, organizations, common, a tenant ID "
        "(GUID) or a domain such as contoso.onmicrosoft.com"
    )


def _drive_id(value: str) -> str:
    if re.search(r"[\s/?#]", value):
        raise ValueError(f"invalid drive_id '{value}': must not contain spaces, '/', '?' or '#'")
    return value


def _site(value: str) -> str:
    if ":" in value:
        host, _, path = value.partition(":")
        if _DOMAIN.fullmatch(host) and re.fullmatch(r"/[^\s?#]+", path):
            return value.rstrip("/")
        raise ValueError(
            f"invalid site '{value}': expected 'hostname:/sites/path' "
            "(e.g. contoso.sharepoint.com:/sites/backup) or a site ID"
        )
    if re.search(r"[\s/?#]", value):
        raise ValueError(
            f"invalid site '{value}': expected 'hostname:/sites/path' or a site ID "
            "(host,site-guid,web-guid)"
        )
    return value


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value.rstrip("/")
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return value.rstrip("/")  # a local test emulator
    raise ValueError(
        f"invalid URL '{value}': expected https://host[/path] (http only for localhost)"
    )


@dataclass(frozen=True)
class AccountConfig:
    name: str
    client_id: str = key(
        kind=Str("GUID", check=_client_id),
        doc="The application (client) ID of the Microsoft Entra app registration used to "
        "log in (`odctl login`).",
        example="00000000-0000-0000-0000-000000000000",
    )
    tenant: str = key(
        "consumers",
        kind=Str("tenant", check=_tenant),
        doc='"consumers" for a personal Microsoft account, "organizations" or "common" for '
        "work or school accounts, or a tenant ID or domain (required for app-only login).",
        example="consumers",
    )
    drive: str = key(
        "me",
        kind=Choice("me"),
        doc='"me": the signed-in user\'s own OneDrive. Leave unset when drive_id or site '
        "is given; those take precedence.",
        example="me",
    )
    drive_id: str | None = key(
        None,
        kind=Str("drive ID", check=_drive_id),
        doc="A specific drive (e.g. a SharePoint document library) by its Graph drive ID. "
        "Excludes site.",
        example="b!xK2nLq0bP0aFd8HFl2GNJvA3H1RoEUVPh0u5QqzXxLm",
    )
    site: str | None = key(
        None,
        kind=Str("site", check=_site),
        doc="A SharePoint site whose default document library receives the backups: "
        "'hostname:/sites/path' or a site ID. Excludes drive_id; needs a work or school "
        "tenant.",
        example="contoso.sharepoint.com:/sites/backup",
    )
    client_secret_file: Path | None = key(  # noqa: RUF009 - key() returns a Field
        None,
        kind=PathKind(credential=True),
        doc="App-only (client credentials) login: the client secret, read from this "
        "systemd credential (LoadCredential=) or absolute path. Needs a specific tenant "
        "and drive_id or site. Excludes certificate_file.",
        example="odbackupd-client-secret",
    )
    certificate_file: Path | None = key(  # noqa: RUF009 - key() returns a Field
        None,
        kind=PathKind(credential=True),
        doc="App-only login with a certificate instead of a secret: a PEM file holding the "
        "private key and certificate, as a systemd credential name or absolute path.",
        example="/etc/odbackupd/app.pem",
    )
    authority_url: str = key(
        "https://login.microsoftonline.com",
        kind=Str("URL", check=_url),
        doc="The Microsoft identity platform endpoint (change it for national clouds).",
        example="https://login.microsoftonline.com",
    )
    graph_url: str = key(
        "https://graph.microsoft.com/v1.0",
        kind=Str("URL", check=_url),
        doc="The Microsoft Graph endpoint (change it for national clouds).",
        example="https://graph.microsoft.com/v1.0",
    )
    ca_bundle: Path | None = key(  # noqa: RUF009 - key() returns a Field
        None,
        kind=PathKind(),
        doc="PEM file of CA certificates to trust for login and Graph instead of the "
        "system's (for a TLS-inspecting proxy).",
        example="/etc/ssl/certs/corporate-proxy.pem",
    )
    read_only: bool = key(
        False,
        kind=Bool(),
        doc="Log in with read permission only (Files.Read.All): for a monitoring or restore "
        "machine running odctl fleet-status, snapshots, verify and restore. Backups and "
        "pruning through this account fail.",
        example=False,
    )
