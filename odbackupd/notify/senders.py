"""One function per notifier type: send one message or raise :class:`DeliveryError`.

Error texts name the notifier's host, never its URL path (a healthchecks ping URL or an
ntfy topic is a secret of sorts), and never a password or signing key.
"""
from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import re
import smtplib
import ssl
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .. import __version__
from .message import text

_PLACEHOLDER = re.compile(r"\{(title|event|host|series|job|result|snapshot)\}")
SIGNATURE_HEADER = "X-Odbackupd-Signature"
HEALTHCHECKS_SUFFIX = {"start": "/start", "failure": "/fail", "login_expired": "/fail",
                       "verify_failed": "/fail"}


class DeliveryError(Exception):
    """The message did not get through; the text is safe to log."""


def read_secret(path: Path) -> bytes:
    """A ``secret_file``/``password_file``: a systemd credential name or an absolute path."""
    from ..graph.auth import resolve_credential

    try:
        return resolve_credential(Path(path)).read_bytes().strip()
    except OSError as e:
        raise DeliveryError(f"cannot read credential {path}: {e.strerror or e}") from None


def _host(url: str) -> str:
    return urlsplit(url).hostname or "?"


def _post(cfg: Any, url: str, body: bytes, headers: dict[str, str]) -> None:
    # imported here: a run that sends nothing (a local --once) loads no HTTP stack (16 MB RSS)
    import requests

    headers = {"User-Agent": f"odbackupd/{__version__}", **headers}
    try:
        resp = requests.post(url, data=body, headers=headers, timeout=cfg.timeout,
                             verify=str(cfg.ca_bundle) if cfg.ca_bundle else True,
                             allow_redirects=False)
    except requests.exceptions.SSLError:
        raise DeliveryError(
            f"TLS to {_host(url)} failed (certificate not trusted? see ca_bundle)") from None
    except requests.RequestException as e:
        raise DeliveryError(f"{type(e).__name__}: could not reach {_host(url)}") from None
    except OSError as e:  # e.g. ca_bundle missing
        raise DeliveryError(
            f"cannot connect to {_host(url)}: {e.strerror or type(e).__name__}") from None
    with resp:
        if not 200 <= resp.status_code < 300:
            raise DeliveryError(f"{_host(url)} answered HTTP {resp.status_code}")


def webhook(cfg: Any, doc: dict) -> None:
    body = json.dumps(doc, sort_keys=True).encode()
    headers = {"Content-Type": "application/json"}
    for h in cfg.headers:
        name, _, value = h.partition(":")
        headers[name.strip()] = _PLACEHOLDER.sub(lambda m: str(doc.get(m.group(1), "")),
                                                 value.strip())
    if cfg.secret_file is not None:
        mac = hmac.new(read_secret(cfg.secret_file), body, hashlib.sha256).hexdigest()
        headers[SIGNATURE_HEADER] = f"sha256={mac}"
    _post(cfg, cfg.url, body, headers)


def healthchecks(cfg: Any, doc: dict) -> None:
    suffix = HEALTHCHECKS_SUFFIX.get(doc["event"], "")
    _post(cfg, cfg.url.rstrip("/") + suffix, text(doc).encode(),
          {"Content-Type": "text/plain; charset=utf-8"})


def mail(cfg: Any, doc: dict) -> None:
    msg = EmailMessage()
    msg["Subject"] = doc["title"]
    msg["From"] = cfg.mail_from
    msg["To"] = ", ".join(cfg.mail_to)
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = email.utils.make_msgid(domain=cfg.mail_from.rpartition("@")[2])
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text(doc))
    tls = cfg.smtp_security == "tls"
    port = cfg.smtp_port or (465 if tls else 587)
    where = f"SMTP server {cfg.smtp_host}:{port}"
    try:
        ctx = ssl.create_default_context(cafile=str(cfg.ca_bundle) if cfg.ca_bundle else None)
        if tls:
            smtp = smtplib.SMTP_SSL(cfg.smtp_host, port, timeout=cfg.timeout, context=ctx)
        else:
            smtp = smtplib.SMTP(cfg.smtp_host, port, timeout=cfg.timeout)
        with smtp:
            if not tls:
                smtp.starttls(context=ctx)  # refuses a server without STARTTLS: never in clear
            if cfg.username:
                password = read_secret(cfg.password_file).decode() if cfg.password_file else ""
                smtp.login(cfg.username, password)
            smtp.send_message(msg)
    except smtplib.SMTPAuthenticationError as e:
        raise DeliveryError(
            f"{where} refused the login of {cfg.username} ({e.smtp_code})") from None
    except smtplib.SMTPNotSupportedError as e:
        if "STARTTLS" in str(e):
            raise DeliveryError(
                f"{where} does not offer STARTTLS; refusing to send in clear") from None
        raise DeliveryError(f"{where}: {e}") from None
    except ssl.SSLError as e:
        raise DeliveryError(f"{where}: TLS failed ({e.reason or e}); see ca_bundle") from None
    except smtplib.SMTPResponseException as e:
        raise DeliveryError(f"{where} answered {e.smtp_code}") from None
    except (smtplib.SMTPException, OSError) as e:
        raise DeliveryError(
            f"{where}: {type(e).__name__}: {getattr(e, 'strerror', None) or e}") from None


SENDERS = {"webhook": webhook, "healthchecks": healthchecks, "email": mail}


def send(cfg: Any, doc: dict) -> None:
    SENDERS[cfg.type](cfg, doc)


def test_message(config: Any, name: str) -> str:
    """Send a test message through notifier ``name`` (``odctl notify test``); returns its
    type. Raises LookupError (no such notifier) or DeliveryError."""
    import time

    from .message import document

    notifier = config.notify.get(name)
    if notifier is None:
        known = ", ".join(sorted(config.notify)) or "none configured"
        raise LookupError(f"no notifier {name!r} (notifiers: {known})")
    send(notifier, document("test", host=config.daemon.hostname, series="test", job="test",
                            result="test", finished=time.time(),
                            log="A test message sent by odctl notify test."))
    return notifier.type
