"""``[notify.NAME]``: where notifications about runs go (webhook, healthchecks, email).

The section's keys, and the rules between them and the jobs that name a notifier
(``notify = [...]`` in a job or ``[daemon]``), checked with the rest of the schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .fields import key, name_ref
from .kinds import Choice, Duration, Int, ListOf, PathKind, Str, suggest

__all__ = ["EVENTS", "NOTIFY_SECTION", "NotifyConfig", "check_monitoring", "notify_list"]

#: What a notifier may be told about (``on = [...]``).
EVENTS = ("start", "success", "failure", "recovery", "warning", "verify_failed", "login_expired")
DEFAULT_EVENTS = ("failure", "recovery", "login_expired")
HEALTHCHECKS_EVENTS = ("start", "success", "failure")  # a dead man's switch needs the successes

_HEADER = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(\S.*)")
_ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+")


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme in ("https", "http") and parts.hostname:
        return value
    raise ValueError(f"invalid URL '{value}': expected https://host/path (or http://)")


def _header(value: str) -> str:
    if not _HEADER.fullmatch(value) or "\n" in value or "\r" in value:
        raise ValueError(f"invalid header '{value}': write \"Name: value\", e.g. \"X-Priority: 4\"")
    return value


def _address(value: str) -> str:
    if not _ADDRESS.fullmatch(value):
        raise ValueError(f"invalid mail address '{value}': expected e.g. backup@example.com")
    return value


def _list(item: Any, doc: str, **kw: Any) -> ListOf:
    kind = ListOf(item, **kw)
    kind.doc = doc
    return kind


def notify_list(doc: str, default: tuple[str, ...] | None) -> Any:
    """The ``notify = [...]`` key of ``[daemon]`` (the default) and of each job."""
    return key(
        default,
        kind=ListOf(Str("notifier name", check=name_ref), unique=True),
        doc=doc,
        example=["ops"],
        default_doc=None if default is not None else "[daemon] notify",
    )


@dataclass(frozen=True)
class NotifyConfig:
    name: str
    type: str = key(
        kind=Choice("webhook", "healthchecks", "email"),
        doc='"webhook": an HTTP POST of a JSON document about the run (ntfy, chat '
        'gateways, your own receiver); "healthchecks": pings to URL/start, URL and URL/fail '
        'with the tail of the run\'s log (healthchecks.io, self-hosted Healthchecks, Uptime '
        'Kuma push monitors); "email": a mail over SMTP with STARTTLS or TLS.',
        example="webhook",
    )
    on: tuple[str, ...] | None = key(
        None,
        default_doc='["failure", "recovery", "login_expired"]; '
        'healthchecks: ["start", "success", "failure"]',
        kind=_list(Choice(*EVENTS), "list of events", unique=True, nonempty=True),
        doc="The events to send: start, success, failure, recovery (the first success after "
        "a failure), warning (completed with warnings), verify_failed (odctl verify found "
        "damage), login_expired (a OneDrive account needs odctl login). Each run end sends one "
        "message, the most specific event asked for: a run with warnings is a success for "
        "a notifier without warning, a recovery too without recovery, a login_expired a "
        "failure without login_expired.",
        example=["failure", "recovery", "login_expired"],
    )
    repeat: float = key(
        86400.0,
        kind=Duration(),
        doc="While a job stays failed, send its failure again after this long (a reminder); "
        "0 sends it once.",
        example="24h",
    )
    url: str | None = key(
        None,
        kind=Str("URL", check=_http_url),
        doc='type = "webhook" or "healthchecks", and required there: where to send. For '
        "healthchecks the ping URL (…/start and …/fail are appended).",
        example="https://ntfy.example.com/backups",
    )
    headers: tuple[str, ...] = key(
        (),
        kind=ListOf(Str("header", check=_header)),
        doc='type = "webhook": extra HTTP headers, "Name: value" each (ntfy reads X-Title, '
        "X-Priority, X-Tags).",
        example=["X-Priority: 4", "X-Tags: floppy_disk"],
    )
    secret_file: Path | None = key(  # noqa: RUF009 - key() returns a Field
        None,
        kind=PathKind(credential=True),
        doc='type = "webhook": a shared secret (systemd credential name or absolute path); '
        "each POST then carries X-Odbackupd-Signature: sha256=HMAC-SHA256(secret, body) in hex.",
        example="odbackupd_webhook",
    )
    smtp_host: str | None = key(
        None,
        kind=Str("host name"),
        doc='type = "email", and required there: the SMTP server (submission).',
        example="smtp.example.com",
    )
    smtp_port: int | None = key(
        None,
        kind=Int(1, 65535),
        default_doc="587 with starttls, 465 with tls",
        doc='type = "email": the SMTP port.',
        example=587,
    )
    smtp_security: str = key(
        "starttls",
        kind=Choice("starttls", "tls"),
        doc='type = "email": "starttls" (port 587, upgraded before login) or "tls" (implicit '
        "TLS, port 465). The server's certificate is always verified.",
        example="starttls",
    )
    username: str | None = key(
        None,
        kind=Str("user name"),
        doc='type = "email": the SMTP login; unset: send without logging in.',
        example="backup@example.com",
    )
    password_file: Path | None = key(  # noqa: RUF009 - key() returns a Field
        None,
        kind=PathKind(credential=True),
        doc='type = "email": the SMTP password, as a systemd credential name '
        "(LoadCredential=) or absolute path; needs username.",
        example="odbackupd_smtp",
    )
    mail_from: str | None = key(
        None,
        kind=Str("mail address", check=_address),
        doc='type = "email", and required there: the sender address.',
        example="backup@example.com",
    )
    mail_to: tuple[str, ...] = key(
        (),
        kind=_list(Str("mail address", check=_address), "list of mail addresses", unique=True),
        doc='type = "email", and required there: the recipients.',
        example=["ops@example.com"],
    )
    ca_bundle: Path | None = key(  # noqa: RUF009 - key() returns a Field
        None,
        kind=PathKind(),
        doc="PEM file of CA certificates to trust for this notifier's TLS connections "
        "instead of the system's.",
        example="/etc/ssl/certs/internal-ca.pem",
    )
    timeout: float = key(
        10.0,
        kind=Duration(minimum=1.0),
        doc="How long one delivery attempt may take. Failed deliveries are retried with "
        "growing pauses for a day, then given up (and logged).",
        example="10s",
    )

    @property
    def events(self) -> tuple[str, ...]:
        """``on``, or the default of the notifier's type."""
        if self.on is not None:
            return self.on
        return HEALTHCHECKS_EVENTS if self.type == "healthchecks" else DEFAULT_EVENTS


#: The arguments of schema.py's Section for [notify.NAME] (schema.py owns that class).
NOTIFY_SECTION: dict[str, Any] = dict(
    name="notify",
    cls=NotifyConfig,
    named=True,
    doc="Notifiers: who is told about runs, one [notify.NAME] each, used by jobs that list it "
    "in notify = [...] (or by every job through [daemon] notify). Delivery is queued in the "
    "state database and never slows down or fails a backup; odctl notify test NAME sends a "
    "test message.",
    samples=(("ops", {"type": "webhook", "url": "https://ntfy.example.com/backups"}, ""),),
)

_NEEDS = {
    "webhook": ("url",),
    "healthchecks": ("url",),
    "email": ("smtp_host", "mail_from", "mail_to"),
}
_ONLY = {
    "webhook": ("url", "headers", "secret_file"),
    "healthchecks": ("url",),
    "email": ("smtp_host", "smtp_port", "smtp_security", "username", "password_file",
              "mail_from", "mail_to"),
}


def check_monitoring(r: Any, daemon: Any, notifiers: dict[str, Any], jobs: dict[str, Any], *,
                     check_files: bool = False) -> None:
    """[daemon] metrics_file, the type-specific keys of each notifier, the names jobs use;
    ``check_files`` (--check-config): also that the files named are there."""
    metrics = daemon.get("metrics_file")
    if metrics is not None and not str(metrics).endswith(".prom"):
        r.error((*daemon.path, "metrics_file"), f"'{metrics}' must end in .prom (node_exporter's "
                "textfile collector reads only *.prom files)")
    elif check_files and metrics is not None and not Path(metrics).parent.is_dir():
        r.warn((*daemon.path, "metrics_file"), f"directory {Path(metrics).parent} does not exist "
               "(is prometheus-node-exporter installed?); no metrics are written until it does")
    for t in notifiers.values():
        kind = t.get("type")
        if kind not in _NEEDS:
            continue
        for k in _NEEDS[kind]:
            if k not in t.written:
                r.error(t.path, f"missing required key '{k}' (needed for type = \"{kind}\")")
        own = set(_ONLY[kind])
        for k in sorted(t.written):
            if any(k in keys for keys in _ONLY.values()) and k not in own:
                r.error((*t.path, k), f"'{k}' does not apply to type = \"{kind}\"")
        if t.get("password_file") is not None and t.get("username") is None:
            r.error((*t.path, "password_file"), "needs username")
        for k in ("ca_bundle",) if check_files else ():
            if t.get(k) is not None and not Path(t.get(k)).is_file():
                r.error((*t.path, k), f"{t.get(k)} does not exist or is not a file")
    used: set[str] = set()
    for t in [daemon, *jobs.values()]:
        for i, name in enumerate(t.get("notify") or ()):
            used.add(name)
            if name not in notifiers:
                known = ", ".join(sorted(notifiers)) or "none defined"
                r.error((*t.path, "notify", i), f"unknown notifier '{name}' (notifiers: {known})"
                        + suggest(name, list(notifiers)))
    for name, t in notifiers.items():
        if name not in used:
            r.warn(t.path, f"notifier '{name}' is not used by any job (set notify = [\"{name}\"] "
                   "in [daemon] or a job)")
