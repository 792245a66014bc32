"""Logging in and getting tokens (odbackupd.graph.auth) with real msal against the Graph
emulator's identity platform: what a sysadmin relies on when the daemon runs for months
on one login."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from odbackupd.config import AccountConfig, load_config_text
from odbackupd.graph.auth import (
    Authenticator,
    CredentialUnavailable,
    LoginCancelled,
    LoginDeclined,
    LoginExpired,
    LoginFailed,
    token_cache_path,
)
from odbackupd.graph.errors import GraphError, NotLoggedIn

NOBODY = 65534
SECRET_NAME = "odbackupd-client-secret"


# ------------------------------------------------------------------------------ helpers
def config_text(emu, tmp_path: Path, *, tenant: str = "consumers", extra: str = "",
                client_id: str | None = None) -> str:
    """A real odbackupd.toml with one OneDrive account pointing at the emulator."""
    return f"""
[daemon]
state_dir = "{tmp_path}/state"
spool_dir = "{tmp_path}/spool"

[account.me]
client_id = "{client_id or emu.client_id}"
tenant = "{tenant}"
authority_url = "{emu.authority_url}"
graph_url = "{emu.graph_url}"
ca_bundle = "{emu.ca_pem}"
{extra}

[destination.od]
type = "onedrive"
account = "me"
"""


def account(emu, tmp_path: Path, **kw) -> AccountConfig:
    return load_config_text(config_text(emu, tmp_path, **kw), "odbackupd.toml").accounts["me"]


def state_dir(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    d.mkdir(exist_ok=True)
    return d


def authenticator(emu, tmp_path: Path, **kw) -> Authenticator:
    return Authenticator("me", account(emu, tmp_path, **kw), state_dir(tmp_path))


def login(auth: Authenticator, emu, user: str | None = None) -> str:
    """Device-code login approved on the emulator's page (as the user would in a browser)."""
    started = auth.begin_device_login()
    if user is None:
        emu.approve_device_code(started.user_code)
    else:
        emu.approve_device_code(started.user_code, user=user)
    return auth.complete_device_login(started)


@pytest.fixture
def logged_in(graph_emulator, tmp_path) -> Authenticator:
    """An Authenticator of account 'me' after a device-code login as alice."""
    auth = authenticator(graph_emulator, tmp_path)
    login(auth, graph_emulator)
    return auth


def graph_get(emu, token: str, path: str = "/me/drive") -> requests.Response:
    return requests.get(emu.graph_url + path, headers={"Authorization": "Bearer " + token},
                        verify=emu.ca_pem, timeout=10)


def cache_file(tmp_path: Path) -> Path:
    return token_cache_path(tmp_path / "state", "me")


def cached_secrets(path: Path, kinds=("AccessToken", "RefreshToken", "IdToken")) -> list[str]:
    """Every access/refresh/id token in a cache file."""
    data = json.loads(path.read_text())
    return [e["secret"] for kind in kinds for e in data.get(kind, {}).values()]


def wait_until(predicate, timeout: float = 10.0) -> None:
    """Wait for a condition another thread makes true (bounded)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


# ------------------------------------------------------------------------------ device code
@pytest.mark.graphemu(device_code_auto_approve_after=2)
def test_device_code_pending_then_approved_gives_working_tokens_in_a_0600_cache(
        graph_emulator, tmp_path):
    emu = graph_emulator
    auth = authenticator(emu, tmp_path)
    assert auth.status() == {"logged_in": False, "username": None, "app_only": False}
    started = auth.begin_device_login()
    assert started.user_code in started.message and started.verification_uri in started.message
    assert started.expires_at > time.time() + 600

    assert auth.complete_device_login(started) == "alice@example.com"
    assert emu.counters["device_code_polls"] == 3  # two "authorization_pending", then the token

    path = cache_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["me.json"]  # no temporary leftovers
    assert auth.status() == {"logged_in": True, "username": "alice@example.com",
                             "app_only": False}
    token = auth.access_token()
    assert graph_get(emu, token).status_code == 200
    assert token in cached_secrets(path)
    assert emu.token_claims(token)["scp"] == "Files.ReadWrite.All"
    emu.assert_no_violations()


def test_declined_device_code_is_a_clear_error_and_stores_nothing(graph_emulator, tmp_path):
    emu = graph_emulator
    auth = authenticator(emu, tmp_path)
    started = auth.begin_device_login()
    emu.decline_device_code(started.user_code)
    with pytest.raises(LoginDeclined, match="account 'me': the sign-in was declined"):
        auth.complete_device_login(started)
    assert not cache_file(tmp_path).exists()
    assert auth.status()["logged_in"] is False
    emu.assert_no_violations()


def test_expired_device_code_says_so_and_points_personal_accounts_to_browser(
        graph_emulator, tmp_path):
    emu = graph_emulator
    auth = authenticator(emu, tmp_path)
    started = auth.begin_device_login()
    emu.clock.advance(16 * 60)  # the code lives 15 minutes
    with pytest.raises(LoginExpired) as info:
        auth.complete_device_login(started)
    assert "the code expired" in str(info.value)
    assert "odctl login me --browser" in str(info.value)  # tenant = consumers
    assert not cache_file(tmp_path).exists()
    emu.assert_no_violations()


@pytest.mark.graphemu(device_code_interval=5)
def test_cancel_stops_a_waiting_device_login_without_waiting_out_the_poll_interval(
        graph_emulator, tmp_path):
    emu = graph_emulator
    auth = authenticator(emu, tmp_path)
    started = auth.begin_device_login()
    cancel = threading.Event()
    outcome: list[BaseException] = []

    def wait_for_login() -> None:
        try:
            auth.complete_device_login(started, cancel)
        except BaseException as e:  # noqa: BLE001 - inspected below
            outcome.append(e)

    t = threading.Thread(target=wait_for_login)
    t.start()
    wait_until(lambda: emu.counters["device_code_polls"] >= 1)
    cancelled_at = time.monotonic()
    cancel.set()
    t.join(timeout=10)
    assert not t.is_alive()
    assert time.monotonic() - cancelled_at < 2  # not the 5 s poll interval
    assert len(outcome) == 1 and isinstance(outcome[0], LoginCancelled)
    assert emu.counters["device_code_polls"] == 1  # honoured the interval: no poll storm
    emu.assert_no_violations()  # includes device_poll_too_fast


def test_a_network_blip_while_waiting_does_not_lose_the_sign_in(graph_emulator, tmp_path):
    emu = graph_emulator
    auth = authenticator(emu, tmp_path)
    started = auth.begin_device_login()
    emu.faults.add("reset", "identity.token", times=2)  # two polls get a TCP reset
    emu.approve_device_code(started.user_code)
    assert auth.complete_device_login(started) == "alice@example.com"
    assert emu.counters["faults_injected"] == 2

    again = auth.begin_device_login()
    emu.faults.add("reset", "identity.token", times=3)  # the service is really gone
    with pytest.raises(GraphError, match="cannot reach the login service"):
        auth.complete_device_login(again)
    assert auth.status()["username"] == "alice@example.com"  # the old login is kept
    emu.assert_no_violations()


# ------------------------------------------------------------------------------ browser
def redirected_address(emu, url: str) -> str:
    """What the user's browser ends on after signing in: the /authorize redirect."""
    r = requests.get(url, allow_redirects=False, verify=emu.ca_pem, timeout=10)
    assert r.status_code == 302, r.text
    return r.headers["Location"]


def test_browser_login_with_the_pasted_redirect_address(graph_emulator, tmp_path):
    emu = graph_emulator
    auth = authenticator(emu, tmp_path)
    started = auth.begin_browser_login()
    assert started.redirect_uri == emu.authority_url + "/common/oauth2/nativeclient"
    address = redirected_address(emu, started.url)
    assert address.startswith(started.redirect_uri + "?code=")
    assert auth.complete_browser_login(started, "  " + address + "\n") == "alice@example.com"
    assert graph_get(emu, auth.access_token()).status_code == 200
    emu.assert_no_violations()


def test_browser_login_rejects_bad_pastes_clearly(graph_emulator, tmp_path):
    emu = graph_emulator
    auth = authenticator(emu, tmp_path)
    first = auth.begin_browser_login()
    with pytest.raises(LoginFailed, match="carries no authorization code"):
        auth.complete_browser_login(first, "https://example.com/something")
    second = auth.begin_browser_login()
    with pytest.raises(LoginFailed, match="belongs to another login attempt"):
        auth.complete_browser_login(first, redirected_address(emu, second.url))
    emu.authorize_deny = True
    third = auth.begin_browser_login()
    with pytest.raises(LoginDeclined, match="declined to consent"):
        auth.complete_browser_login(third, redirected_address(emu, third.url))
    assert not cache_file(tmp_path).exists()
    emu.assert_no_violations()


# ------------------------------------------------------------------------------ refresh
def test_silent_refresh_after_the_service_expires_access_tokens(graph_emulator, tmp_path,
                                                               logged_in):
    emu, auth = graph_emulator, logged_in
    first = auth.access_token()
    assert auth.access_token() == first  # cached: no token request per Graph call
    emu.expire_access_tokens()
    r = graph_get(emu, first)
    assert r.status_code == 401
    auth.invalidate(first)  # what the Graph client does on a 401
    assert first not in cached_secrets(cache_file(tmp_path))  # never handed out again
    second = auth.access_token()
    assert second != first
    assert graph_get(emu, second).status_code == 200
    assert emu.counters["tokens_refreshed"] == 1
    emu.assert_no_violations()


@pytest.mark.graphemu(access_token_lifetime=240)
def test_refresh_when_msal_sees_less_than_five_minutes_left_and_rotated_tokens_are_kept(
        graph_emulator, tmp_path, logged_in):
    emu, auth = graph_emulator, logged_in
    refresh_before = set(cached_secrets(cache_file(tmp_path), ["RefreshToken"]))
    first = auth.access_token()  # 4 min left: refreshed before use
    second = auth.access_token()
    assert first != second
    assert emu.counters["tokens_refreshed"] == 2
    refresh_after = set(cached_secrets(cache_file(tmp_path), ["RefreshToken"]))
    assert refresh_after and not refresh_before & refresh_after  # the rotated RT is stored
    assert graph_get(emu, second).status_code == 200
    emu.assert_no_violations()  # reused_refresh_token would flag a lost rotation


def test_clock_past_token_lifetime_refreshes_and_past_refresh_lifetime_needs_login(
        graph_emulator, tmp_path, logged_in):
    emu, auth = graph_emulator, logged_in
    first = auth.access_token()
    emu.clock.advance(2 * 86400)  # two days later on the service's clock
    assert graph_get(emu, first).status_code == 401
    auth.invalidate(first)
    assert graph_get(emu, auth.access_token()).status_code == 200
    emu.clock.advance(91 * 86400)  # refresh tokens die after 90 days of inactivity
    with pytest.raises(NotLoggedIn) as info:
        auth.access_token(force_refresh=True)
    assert "AADSTS700082" in str(info.value)
    assert str(info.value).endswith("run: odctl login me")
    # the first 401 was the test's doing: msal keeps real time, the service's clock jumped
    emu.assert_no_violations(ignore=("expired_access_token",))


def test_revoked_login_is_one_clear_not_logged_in_error(graph_emulator, logged_in):
    emu, auth = graph_emulator, logged_in
    token = auth.access_token()
    emu.revoke_tokens()
    assert graph_get(emu, token).status_code == 401
    auth.invalidate(token)
    for _ in range(2):  # stays the same clear error, call after call
        with pytest.raises(NotLoggedIn) as info:
            auth.access_token()
        message = str(info.value)
        assert message.startswith("account 'me': the login has expired or was revoked")
        assert "AADSTS50173" in message and message.endswith("; run: odctl login me")
        assert "\n" not in message and "Traceback" not in message
        assert info.value.__cause__ is None and info.value.__context__ is None
    emu.assert_no_violations()


def test_a_login_made_for_another_app_registration_is_not_used(graph_emulator, tmp_path,
                                                                logged_in):
    emu = graph_emulator
    emu.register_app(APP_ID)  # the admin changed client_id in the configuration
    other = authenticator(emu, tmp_path, client_id=APP_ID)
    with pytest.raises(NotLoggedIn, match="^account 'me': the saved login does not fit this "
                                          "account's client_id/authority; run: odctl login me$"):
        other.access_token()
    assert emu.counters["tokens_refreshed"] == 0
    emu.assert_no_violations()


def test_not_logged_in_and_logout_leave_no_token_on_disk(graph_emulator, tmp_path):
    emu = graph_emulator
    auth = authenticator(emu, tmp_path)
    with pytest.raises(NotLoggedIn, match=r"^account 'me': not logged in; run: odctl login me$"):
        auth.access_token()
    login(auth, emu)
    auth.access_token()
    path = cache_file(tmp_path)
    assert cached_secrets(path)
    auth.logout()
    assert list(path.parent.iterdir()) == []
    assert auth.status() == {"logged_in": False, "username": None, "app_only": False}
    with pytest.raises(NotLoggedIn, match="not logged in"):
        auth.access_token()
    emu.assert_no_violations()


# ------------------------------------------------------------------------------ two processes
def test_login_written_by_odctl_is_picked_up_by_the_running_daemon(graph_emulator, tmp_path):
    emu = graph_emulator
    daemon = authenticator(emu, tmp_path)
    odctl = authenticator(emu, tmp_path)
    with pytest.raises(NotLoggedIn):
        daemon.access_token()

    login(odctl, emu)
    token = daemon.access_token()  # no restart
    assert emu.token_claims(token)["upn"] == "alice@example.com"

    login(odctl, emu, user="bob@example.com")  # a new login replaces the old user
    assert emu.token_claims(daemon.access_token())["upn"] == "bob@example.com"
    assert daemon.status()["username"] == "bob@example.com"

    emu.expire_access_tokens()  # the daemon refreshes and writes the rotated token ...
    stale = daemon.access_token()
    daemon.invalidate(stale)
    fresh = daemon.access_token()
    assert odctl.access_token() == fresh  # ... which odctl reads instead of refreshing again
    assert emu.counters["tokens_refreshed"] == 1

    odctl.logout()
    with pytest.raises(NotLoggedIn, match="not logged in"):
        daemon.access_token()
    emu.assert_no_violations()


def test_parallel_workers_share_one_refresh(graph_emulator, logged_in):
    emu, auth = graph_emulator, logged_in
    dead = auth.access_token()
    emu.expire_access_tokens()
    barrier = threading.Barrier(8)
    got: list[str] = []

    def worker() -> None:  # every upload worker saw the same 401
        barrier.wait()
        auth.invalidate(dead)
        got.append(auth.access_token())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(got) == 8 and dead not in got
    assert all(graph_get(emu, t).status_code == 200 for t in set(got))
    assert emu.counters["tokens_refreshed"] == 1  # the first refresh serves everyone
    assert len(set(got)) == 1
    emu.assert_no_violations()


@pytest.fixture
def as_root() -> None:
    """Giving files to the daemon user and dropping to nobody need root, as CI runs the
    suite: fail loudly elsewhere instead of skipping what the tests are for."""
    if os.geteuid() != 0:
        pytest.fail(
            "these login tests run as root (CI does): they chown files and switch to nobody")


@pytest.fixture
def outside_tmp(graph_emulator, tmp_path):
    """(state dir, account) where the user nobody can reach (pytest's tmp_path is root's
    alone): the state dir is root's, mode 0700; the account trusts a copy of the CA."""
    base = Path(tempfile.mkdtemp(prefix="odbackupd-auth-"))
    try:
        os.chmod(base, 0o755)
        ca = base / "ca.pem"
        shutil.copyfile(graph_emulator.ca_pem, ca)
        os.chmod(ca, 0o644)
        (base / "state").mkdir(mode=0o700)
        yield base / "state", dataclasses.replace(account(graph_emulator, tmp_path), ca_bundle=ca)
    finally:
        shutil.rmtree(base)


def test_root_writes_the_cache_for_the_daemon_user_who_can_use_it(graph_emulator, as_root,
                                                                  outside_tmp):
    from tests.config.conftest import as_unprivileged

    emu = graph_emulator
    state, acct = outside_tmp
    os.chown(state, NOBODY, NOBODY)  # the daemon user's, as systemd's StateDirectory= makes it
    login(Authenticator("me", acct, state), emu)  # odctl login, run with sudo
    path = token_cache_path(state, "me")
    for p, mode in ((path, 0o600), (path.parent, 0o700)):
        st = p.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, NOBODY, mode)

    def daemon_refreshes() -> str:  # the daemon, running as its own user
        daemon = Authenticator("me", acct, state)
        dead = daemon.access_token()
        daemon.invalidate(dead)
        return daemon.access_token()

    emu.expire_access_tokens()
    assert graph_get(emu, as_unprivileged(daemon_refreshes)).status_code == 200
    assert path.stat().st_uid == NOBODY
    assert emu.counters["tokens_refreshed"] == 1
    emu.assert_no_violations()


def test_a_user_who_cannot_write_the_cache_is_told_before_signing_in(graph_emulator, as_root,
                                                                     outside_tmp):
    from tests.config.conftest import as_unprivileged

    emu = graph_emulator
    state, acct = outside_tmp  # root's, as /var/lib/odbackupd is the daemon user's

    def odctl_login_as_a_normal_user() -> str:
        try:
            Authenticator("me", acct, state).begin_device_login()
        except GraphError as e:
            return str(e)
        return "no error"

    message = as_unprivileged(odctl_login_as_a_normal_user)
    assert message == (f"account 'me': cannot create the token cache {state}/tokens: "
                       f"Permission denied (run as root or as the daemon's user, which own "
                       f"the state directory)")
    assert emu.counters["device_codes_issued"] == 0  # nobody was asked to sign in for nothing


def test_login_service_trouble_is_a_retryable_error_not_a_logout(graph_emulator, tmp_path,
                                                                  logged_in):
    emu, auth = graph_emulator, logged_in
    dead = auth.access_token()
    auth.invalidate(dead)
    before = cache_file(tmp_path).read_bytes()
    emu.faults.add("error", "identity.token", status=503)
    with pytest.raises(GraphError) as info:
        auth.access_token()
    assert not isinstance(info.value, NotLoggedIn)
    assert str(info.value) == "account 'me': the login service failed: HTTP Error: 503"
    emu.stop()
    # (msal replays a 5xx to the same app for a few seconds: ask with a fresh one)
    with pytest.raises(GraphError) as info:
        authenticator(emu, tmp_path).access_token()
    assert not isinstance(info.value, NotLoggedIn)
    assert "cannot reach the login service" in str(info.value)
    assert cache_file(tmp_path).read_bytes() == before  # the login survives
    assert auth.status()["logged_in"] is True
    emu.start()
    emu.assert_no_violations()


# ------------------------------------------------------------------------------ TLS
def test_account_ca_bundle_beats_requests_ca_bundle_for_login(graph_emulator, tmp_path,
                                                              monkeypatch):
    system = "/etc/ssl/certs/ca-certificates.crt"
    if not Path(system).exists():
        import certifi

        system = certifi.where()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", system)
    monkeypatch.setenv("CURL_CA_BUNDLE", system)
    emu = graph_emulator
    auth = authenticator(emu, tmp_path)
    assert login(auth, emu) == "alice@example.com"
    assert graph_get(emu, auth.access_token()).status_code == 200
    emu.assert_no_violations()


def test_untrusted_login_host_is_a_clear_error(graph_emulator, tmp_path):
    emu = graph_emulator
    acct = account(emu, tmp_path)
    acct = dataclasses.replace(acct, ca_bundle=None)
    auth = Authenticator("me", acct, state_dir(tmp_path))
    with pytest.raises(Exception) as info:
        auth.begin_device_login()
    assert str(info.value) == (f"account 'me': cannot reach the login service "
                               f"{emu.authority_url.split('//')[1]}: TLS certificate not "
                               f"trusted (set ca_bundle?)")


# ------------------------------------------------------------------------------ logs
def test_no_token_reaches_the_logs_even_at_debug(graph_emulator, tmp_path, caplog):
    emu = graph_emulator
    caplog.set_level(logging.DEBUG)  # the root logger, as --log-level debug does
    auth = authenticator(emu, tmp_path)
    login(auth, emu)
    dead = auth.access_token()
    emu.expire_access_tokens()
    auth.invalidate(dead)
    auth.access_token()
    secrets = cached_secrets(cache_file(tmp_path)) + [dead]
    logged = caplog.text
    assert "logged in as alice@example.com" in logged
    for secret in secrets:
        assert secret not in logged
        assert secret[:24] not in logged
    emu.assert_no_violations()


# ------------------------------------------------------------------------------ app-only
def app_only_account(emu, tmp_path: Path, *, setting: str) -> AccountConfig:
    return account(emu, tmp_path, tenant=emu.tenant, client_id=APP_ID,
                   extra=f'{setting}\nsite = "contoso.sharepoint.com:/sites/backups"')


APP_ID = str(uuid.UUID(int=0x0DBAC0FFEE, version=4))


@pytest.mark.graphemu(mode="business")
def test_client_credentials_with_the_secret_from_a_systemd_credential(
        graph_emulator, tmp_path, monkeypatch):
    emu = graph_emulator
    emu.register_app(APP_ID, secret="s3cr3t~value")
    creds = tmp_path / "credentials"  # what systemd makes for LoadCredential=
    creds.mkdir()
    (creds / SECRET_NAME).write_text("s3cr3t~value\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    acct = app_only_account(emu, tmp_path, setting=f'client_secret_file = "{SECRET_NAME}"')
    auth = Authenticator("me", acct, state_dir(tmp_path))
    assert auth.app_only
    assert auth.status() == {"logged_in": True, "username": None, "app_only": True}
    token = auth.access_token()
    claims = emu.token_claims(token)
    assert claims["idtyp"] == "app" and claims["appid"] == APP_ID
    assert graph_get(emu, token, f"/drives/{emu.site_drive_id}").status_code == 200
    assert auth.access_token() == token  # cached in memory
    auth.invalidate(token)
    assert auth.access_token() != token
    assert not (tmp_path / "state" / "tokens").exists()  # app tokens never touch the disk
    with pytest.raises(Exception, match="no user to sign in"):
        auth.begin_device_login()

    (creds / SECRET_NAME).write_text("wrong\n")
    wrong = Authenticator("me", acct, state_dir(tmp_path))
    with pytest.raises(NotLoggedIn) as info:
        wrong.access_token()
    assert "AADSTS7000215" in str(info.value) and "fix client_secret_file" in str(info.value)
    assert "wrong" not in str(info.value)

    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "elsewhere"))
    missing = Authenticator("me", acct, state_dir(tmp_path))
    assert missing.status()["logged_in"] is False
    with pytest.raises(CredentialUnavailable) as info:
        missing.access_token()
    assert f"systemd credential '{SECRET_NAME}' is not in $CREDENTIALS_DIRECTORY" in \
        str(info.value)
    assert f"LoadCredential={SECRET_NAME}:" in str(info.value)
    emu.assert_no_violations()


def self_signed() -> tuple[bytes, bytes]:
    """(key + certificate PEM as an admin makes it, certificate PEM for the app registration)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "odbackupd test app")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem + cert_pem, cert_pem


@pytest.mark.graphemu(mode="business")
def test_client_credentials_with_a_certificate(graph_emulator, tmp_path):
    emu = graph_emulator
    both, cert = self_signed()
    emu.register_app(APP_ID, certificate=cert.decode())  # the emulator checks the signature
    pem = tmp_path / "app.pem"
    pem.write_bytes(both)
    acct = app_only_account(emu, tmp_path, setting=f'certificate_file = "{pem}"')
    token = Authenticator("me", acct, state_dir(tmp_path)).access_token()
    assert emu.token_claims(token)["idtyp"] == "app"
    assert graph_get(emu, token, f"/drives/{emu.site_drive_id}").status_code == 200

    pem.write_bytes(self_signed()[0])  # a key and certificate the app does not know
    with pytest.raises(NotLoggedIn, match="AADSTS700027.*fix certificate_file"):
        Authenticator("me", acct, state_dir(tmp_path)).access_token()

    pem.write_text("not a certificate\n")
    with pytest.raises(CredentialUnavailable, match="unencrypted PEM private key"):
        Authenticator("me", acct, state_dir(tmp_path)).access_token()
    emu.assert_no_violations()
