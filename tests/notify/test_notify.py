"""Notifications end to end: odbackupd --once and the daemon against a real HTTP receiver
and a real SMTP server on loopback."""
from __future__ import annotations

import hashlib
import hmac
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from odbackupd.config import load_config
from odbackupd.notify import queue
from odbackupd.notify.deliver import GIVE_UP_AFTER, deliver_due
from odbackupd.state import StateStore
from tests.onedrive.conftest import wait_until
from tests.service.test_daemon import Daemon, Notify

from .conftest import PASSWORD


def once(cfg: Path, job: str = "t") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "odbackupd.main", "--config", str(cfg),
                           "--once", job], capture_output=True, text=True, timeout=120)


def odctl(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "odctl.cli", "--config", str(cfg), *args],
                          capture_output=True, text=True, timeout=120)


def configure(setup, tmp_path: Path, notifier: str, job_notify: str = '["n"]') -> tuple[Path, Path]:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "a").write_text("data")
    cfg = setup.write([src], extra=f"notify = {job_notify}\n")
    cfg.write_text(cfg.read_text() + "\n[notify.n]\n" + notifier)
    return cfg, src


def break_source(src: Path) -> None:
    (src / "a").unlink()
    src.rmdir()


def repair_source(src: Path) -> None:
    src.mkdir()
    (src / "a").write_text("data again")


def pending(setup) -> list[queue.Pending]:
    st = StateStore(setup.state / "state.db")
    try:
        return queue.due(st, float("inf"))
    finally:
        st.close()


def test_webhook_failure_reminder_and_recovery_signed(setup, tmp_path, receiver):
    secret = tmp_path / "hook-secret"
    secret.write_text("hmac-key-123\n")
    receiver.start()
    cfg, src = configure(setup, tmp_path, (
        f'type = "webhook"\nurl = "{receiver.url}/hook/T0PSECRET"\n'
        f'headers = ["X-Title: {{title}}", "X-Priority: 4"]\nsecret_file = "{secret}"\n'))
    assert once(cfg).returncode == 0
    assert receiver.requests == []  # the default events: failure, recovery, login_expired
    break_source(src)
    r = once(cfg)
    assert r.returncode == 1
    assert "hmac-key-123" not in r.stdout + r.stderr and "T0PSECRET" not in r.stdout + r.stderr
    [req] = receiver.wait_for(1)
    doc = json.loads(req.body)
    assert req.path == "/hook/T0PSECRET" and req.headers["Content-Type"] == "application/json"
    assert doc["event"] == "failure" and doc["series"] == "t" and doc["result"] == "failed"
    assert doc["host"] == setup.config().daemon.hostname and isinstance(doc["run_id"], int)
    assert str(src) in doc["error"] and doc["title"] == f"[odbackupd] {doc['host']} t FAILED"
    assert req.headers["X-Title"] == doc["title"] and req.headers["X-Priority"] == "4"
    mac = hmac.new(b"hmac-key-123", req.body, hashlib.sha256).hexdigest()
    assert req.headers["X-Odbackupd-Signature"] == f"sha256={mac}"

    assert once(cfg).returncode == 1  # still failed: the reminder waits for repeat (24h)
    repair_source(src)
    assert once(cfg).returncode == 0
    reqs = receiver.wait_for(2)
    assert len(receiver.requests) == 2
    rec = json.loads(reqs[1].body)
    assert rec["event"] == "recovery" and rec["snapshot"] and rec["stored_bytes"] > 0
    assert "error" not in rec and rec["title"].endswith(" t RECOVERED")
    assert pending(setup) == []


def test_healthchecks_pings_start_success_and_fail_with_the_log(setup, tmp_path, receiver):
    receiver.start()
    cfg, src = configure(setup, tmp_path,
                         f'type = "healthchecks"\nurl = "{receiver.url}/ping/uuid-1"\n')
    assert once(cfg).returncode == 0
    start, ok = receiver.wait_for(2)
    assert (start.path, ok.path) == ("/ping/uuid-1/start", "/ping/uuid-1")
    assert b"completed" in ok.body and b"series: t" in ok.body
    break_source(src)
    assert once(cfg).returncode == 1
    _, fail = receiver.wait_for(4)[2:]
    assert fail.path == "/ping/uuid-1/fail"
    assert str(src).encode() in fail.body and b"failed" in fail.body  # the run's log tail


def test_a_receiver_down_gets_the_message_later_even_across_a_daemon_restart(
        setup, tmp_path, receiver):
    cfg, src = configure(setup, tmp_path,
                         f'type = "webhook"\nurl = "{receiver.url}/hook/T0PSECRET"\n')
    break_source(src)
    t0 = time.monotonic()
    r = once(cfg)  # the receiver is down: the backup's result is unaffected, the message waits
    assert r.returncode == 1
    assert time.monotonic() - t0 < 60
    [item] = pending(setup)
    assert item.event == "failure" and item.attempts >= 1
    assert "T0PSECRET" not in r.stderr and "T0PSECRET" not in r.stdout

    notify = Notify(tmp_path / "notify.sock")
    d1 = Daemon(cfg, tmp_path, notify)  # still down: it tries again at start, then waits
    notify.expect(lambda m: m.get("READY") == "1", "READY=1")
    # the attempt is recorded, then logged: both are waited for
    wait_until(lambda: pending(setup)[0].attempts > item.attempts
               and "not delivered (attempt" in d1.log(), "the daemon's attempt", proc=d1.proc)
    d1.signal(signal.SIGTERM)
    assert d1.wait(60) == 0

    receiver.start()
    d2 = Daemon(cfg, tmp_path, notify)
    [req] = receiver.wait_for(1)
    assert json.loads(req.body)["event"] == "failure"
    wait_until(lambda: pending(setup) == [], "the delivered message leaving the queue",
               proc=d2.proc)
    d2.signal(signal.SIGTERM)
    assert d2.wait(60) == 0
    assert len(receiver.requests) == 1
    assert "T0PSECRET" not in d1.log() + d2.log()
    assert ("could not reach 127.0.0.1" in d1.log()
            and "failure message about t delivered" in d2.log())
    notify.close()


def test_given_up_after_a_day_with_its_own_journal_record(setup, tmp_path, receiver, caplog):
    cfg, src = configure(setup, tmp_path, f'type = "webhook"\nurl = "{receiver.url}/hook"\n')
    break_source(src)
    assert once(cfg).returncode == 1
    config = load_config(cfg)
    st = StateStore(setup.state / "state.db")
    try:
        assert deliver_due(config, st, now=time.time() + 600) == 0  # down: retried later
        assert len(queue.due(st, float("inf"))) == 1
        with caplog.at_level("ERROR", logger="odbackupd.notify"):
            deliver_due(config, st, now=time.time() + GIVE_UP_AFTER + 1)
        assert queue.due(st, float("inf")) == []
        [rec] = [r for r in caplog.records if "gave up" in r.getMessage()]
        assert str(rec.journal_fields["MESSAGE_ID"]) == "6c1d2b7e-0b4f-4a51-a7c4-d1f0b6f3a1a1"
        assert rec.journal_fields["NOTIFIER"] == "n" and rec.journal_fields["SERIES"] == "t"
        from odbackupd import metrics
        assert (("odbackupd_notifications_failed_total", {"notifier": "n"}, 1.0)
                in metrics.stored(st))
    finally:
        st.close()


def test_email_over_starttls_with_a_verified_certificate_and_a_credential(
        setup, tmp_path, smtp_starttls):
    box = smtp_starttls
    pw = tmp_path / "smtp-password"
    pw.write_text(PASSWORD + "\n")
    cfg, src = configure(setup, tmp_path, (
        f'type = "email"\nsmtp_host = "127.0.0.1"\nsmtp_port = {box.port}\nusername = "backup"\n'
        f'password_file = "{pw}"\nmail_from = "backup@example.com"\nmail_to = ["ops@example.com"]\n'
        f'ca_bundle = "{box.ca_file}"\non = ["failure", "success"]\n'))
    break_source(src)
    r = once(cfg)
    assert r.returncode == 1
    [mail] = box.wait_for(1)
    host = setup.config().daemon.hostname
    assert mail["Subject"] == f"[odbackupd] {host} t FAILED"
    assert mail["To"] == "ops@example.com" and mail["From"] == "backup@example.com"
    assert str(src) in mail.get_content()
    assert box.logins == [("backup", True)]
    assert PASSWORD not in r.stderr + r.stdout

    t = odctl(cfg, "notify", "test", "n")
    assert t.returncode == 0 and "delivered" in t.stdout
    assert box.wait_for(2)[1]["Subject"] == f"[odbackupd] {host} test TEST"


def test_email_over_implicit_tls_and_an_untrusted_certificate_is_refused(setup, tmp_path, smtp_tls):
    box = smtp_tls
    pw = tmp_path / "smtp-password"
    pw.write_text(PASSWORD)
    base = (f'type = "email"\nsmtp_host = "127.0.0.1"\nsmtp_port = {box.port}\n'
            f'smtp_security = "tls"\nusername = "backup"\npassword_file = "{pw}"\n'
            'mail_from = "b@example.com"\nmail_to = ["o@example.com"]\n')
    cfg, _ = configure(setup, tmp_path, base + f'ca_bundle = "{box.ca_file}"\n')
    assert odctl(cfg, "notify", "test", "n").returncode == 0
    assert box.wait_for(1)[0]["Subject"].endswith(" test TEST")
    cfg.write_text(cfg.read_text().replace(f'ca_bundle = "{box.ca_file}"\n', ""))
    r = odctl(cfg, "notify", "test", "n")  # the system CAs do not know the test CA
    assert r.returncode == 1 and "TLS failed" in r.stderr and "Traceback" not in r.stderr
    assert len(box.messages) == 1


def test_notify_test_names_an_unknown_notifier(setup, tmp_path, receiver):
    receiver.start()
    cfg, _ = configure(setup, tmp_path, f'type = "webhook"\nurl = "{receiver.url}/x"\n')
    r = odctl(cfg, "notify", "test", "nope")
    assert r.returncode == 3 and "no notifier 'nope' (notifiers: n)" in r.stderr
    r = odctl(cfg, "notify", "test", "n")
    assert r.returncode == 0
    assert json.loads(receiver.wait_for(1)[0].body)["event"] == "test"
