"""The emulator's own tests: real HTTPS with plain ``requests`` and real ``msal``.

Every rule is checked from the client's side (status + error code the real service
gives) and from the emulator's side (a violation is recorded). Nothing sleeps to
synchronise: expiry goes through ``emu.clock.advance``.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import http.client
import os
import re
import ssl
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

import certifi
import msal
import pytest
import requests

from tests.graphemu import FRAGMENT_MULTIPLE, GraphEmulator, QuickXorHash, quickxor_b64
from tests.graphemu.quickxor import quickxor_reference

FRAG = FRAGMENT_MULTIPLE  # 327,680
MIB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_env_ca_bundle(monkeypatch):
    """msal sets Session.verify only; the env bundle would override it (see docstring)."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


class Client:
    """The smallest correct Graph client: CA per request, bearer only on Graph."""

    def __init__(self, emu: GraphEmulator, token: str | None = None) -> None:
        self.emu = emu
        self.s = requests.Session()
        self.token = token if token is not None else emu.access_token()

    def url(self, path: str) -> str:
        return path if path.startswith("https://") else self.emu.graph_url + path

    def call(self, method: str, path: str, auth: bool = True, headers=None, **kw):
        h = dict(headers or {})
        if auth and self.token:
            h["Authorization"] = "Bearer " + self.token
        return self.s.request(method, self.url(path), headers=h, verify=self.emu.ca_pem,
                              timeout=30, **kw)

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, **kw):
        return self.call("POST", path, **kw)

    def put(self, path, **kw):
        return self.call("PUT", path, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)

    def session(self, path: str, body: dict | None = None) -> str:
        r = self.post(f"/me/drive/root:{path}:/createUploadSession", json=body or {})
        assert r.status_code == 200, r.text
        return r.json()["uploadUrl"]

    def fragment(self, url: str, data: bytes, start: int, total: int, **kw):
        headers = {"Content-Range": f"bytes {start}-{start + len(data) - 1}/{total}"}
        headers.update(kw.pop("headers", {}))
        return self.call("PUT", url, auth=False, headers=headers, data=data, **kw)

    def upload(self, url: str, data: bytes, chunk: int = 2 * FRAG, start: int = 0):
        r = None
        pos = start
        while pos < len(data):
            piece = data[pos:pos + chunk]
            r = self.fragment(url, piece, pos, len(data))
            assert r.status_code in (200, 201, 202), r.text
            pos += len(piece)
        return r


def err(r) -> tuple[int, str, str | None]:
    e = r.json()["error"]
    return r.status_code, e["code"], e.get("innerError", {}).get("code")


def rules(emu) -> list[str]:
    return [v["rule"] for v in emu.violations]


def data_of(n: int, seed: int = 1) -> bytes:
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:n])


def msal_public(emu, **kw):
    return msal.PublicClientApplication(emu.client_id, authority=emu.authority,
                                        instance_discovery=False, verify=emu.ca_pem, **kw)


def device_login(emu, app, scopes=("Files.ReadWrite",)) -> dict:
    flow = app.initiate_device_flow(scopes=list(scopes))
    assert "user_code" in flow, flow
    emu.approve_device_code(flow["user_code"])
    result = app.acquire_token_by_device_flow(flow)
    assert "access_token" in result, result
    return result


# ==================================================================== quickXorHash
# Vectors published with rclone's implementation (backend/onedrive/quickxorhash).
VECTORS = [
    ("", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
    ("Sg==", "SgAAAAAAAAAAAAAAAQAAAAAAAAA="),
    ("tbQ=", "taAFAAAAAAAAAAAAAgAAAAAAAAA="),
    ("i+UZyUGJKh+ISbk=", "iyhHBpIRhESo4AOIQ0IuAAAAAAA="),
    ("2fuxhBJXtpWFe8dOfdGeHw==", "O9tHLAghgSvYohKFyMMxnNCHaHg="),
    ("T6LYJIfDh81JrAK309H2JMJTXis=", "zBTHrspn3mEcohlJdIUAbjGNaNg="),
]


def test_quickxorhash_vectors_and_incremental():
    for given, want in VECTORS:
        data = base64.b64decode(given)
        assert quickxor_b64(data) == want
        assert quickxor_reference(data) == want
    assert quickxor_b64(b"hello world") == "aCgDG9jwBhDc4Q1yawMZAAAAAAA="
    data = data_of(100_003)
    h = QuickXorHash()
    for i in range(0, len(data), 997):
        h.update(data[i:i + 997])
    assert h.b64digest() == quickxor_reference(data) == quickxor_b64(data)


# ==================================================================== hosts & TLS
def test_three_https_hosts_ca_and_keepalive(graph_emulator):
    emu = graph_emulator
    ports = {urlsplit(u).port for u in (emu.authority_url, emu.graph_url, emu.files_url)}
    assert len(ports) == 3
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(emu.graph_url + "/me/drive", verify=True, timeout=10)
    c = Client(emu)
    before = emu.connections_accepted["graph"]
    for _ in range(5):
        r = c.get("/me/drive")
        assert r.status_code == 200
        assert r.headers["request-id"]
    assert emu.connections_accepted["graph"] - before == 1  # one keep-alive connection
    r = c.get("/me/drive", headers={"client-request-id": "abc-123"})
    assert r.headers["client-request-id"] == "abc-123"
    assert Path(emu.ca_bundle).read_bytes().endswith(Path(emu.ca_pem).read_bytes())


def test_cli_prints_urls_and_ca(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.graphemu", "--port", "0", "--data",
         str(tmp_path / "d"), "--mode", "business"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "Ctrl-C" in line or not line:
                break
        text = "".join(lines)
        assert "authority" in text and "/v1.0" in text and "ca.pem" in text, text
        graph = re.search(r"graph\s+(\S+)", text).group(1)
        ca = re.search(r"CA\s+(\S+ca\.pem)", text).group(1)
        r = requests.get(graph + "/me/drive", verify=ca, timeout=10)
        assert r.status_code == 401
    finally:
        proc.terminate()
        proc.wait(10)


# ==================================================================== identity
def test_openid_configuration(graph_emulator):
    emu = graph_emulator
    r = requests.get(f"{emu.authority}/v2.0/.well-known/openid-configuration",
                     verify=emu.ca_pem, timeout=10)
    conf = r.json()
    for key in ("issuer", "authorization_endpoint", "token_endpoint",
                "device_authorization_endpoint"):
        assert conf[key].startswith(emu.authority_url)
    assert conf["token_endpoint"] == f"{emu.authority}/oauth2/v2.0/token"
    r = requests.get(f"{emu.authority_url}/nosuchtenant/v2.0/.well-known/openid-configuration",
                     verify=emu.ca_pem, timeout=10)
    assert r.status_code == 400 and r.json()["error"] == "invalid_tenant"


@pytest.mark.graphemu(access_token_lifetime=120)
def test_msal_device_flow_accounts_and_silent_refresh(graph_emulator):
    emu = graph_emulator
    app = msal_public(emu)
    first = device_login(emu, app)
    accounts = app.get_accounts()
    assert [a["username"] for a in accounts] == ["alice@example.com"]
    claims = first["id_token_claims"]
    assert claims["aud"] == emu.client_id and claims["preferred_username"] == \
        "alice@example.com" and claims["tid"] == emu.tenant
    # 120 s lifetime < msal's 5-minute margin: every silent call refreshes (RT rotates)
    second = app.acquire_token_silent(["Files.ReadWrite"], account=accounts[0])
    assert second and second["access_token"] != first["access_token"]
    third = app.acquire_token_silent(["Files.ReadWrite"], account=accounts[0])
    assert third["access_token"] != second["access_token"]
    assert emu.counters["tokens_refreshed"] == 2
    r = Client(emu, third["access_token"]).get("/me/drive")
    assert r.status_code == 200 and r.json()["id"] == emu.drive_id
    emu.assert_no_violations()


@pytest.mark.graphemu(device_code_auto_approve_after=2)
def test_msal_polls_through_authorization_pending(graph_emulator):
    emu = graph_emulator
    app = msal_public(emu)
    flow = app.initiate_device_flow(scopes=["Files.ReadWrite.All"])
    result = app.acquire_token_by_device_flow(flow)
    assert "access_token" in result, result
    assert emu.counters["device_code_polls"] == 3


def test_device_code_errors_raw(graph_emulator):
    emu = graph_emulator
    token_url = f"{emu.authority}/oauth2/v2.0/token"

    def start():
        r = requests.post(f"{emu.authority}/oauth2/v2.0/devicecode", verify=emu.ca_pem,
                          data={"client_id": emu.client_id, "scope": "Files.ReadWrite "
                                                                     "offline_access"})
        assert r.status_code == 200
        return r.json()

    def poll(dc):
        return requests.post(token_url, verify=emu.ca_pem, data={
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "client_id": emu.client_id, "device_code": dc["device_code"]})

    dc = start()
    assert {"user_code", "device_code", "verification_uri", "expires_in", "interval",
            "message"} <= set(dc)
    r = poll(dc)
    assert r.status_code == 400 and r.json()["error"] == "authorization_pending"
    assert r.json()["error_codes"] == [70016]
    assert r.json()["error_description"].startswith("AADSTS70016:")
    emu.decline_device_code(dc["user_code"])
    assert poll(dc).json()["error"] == "authorization_declined"
    dc = start()
    emu.clock.advance(16 * 60)
    assert poll(dc).json()["error"] == "expired_token"
    with pytest.raises(KeyError):
        emu.approve_device_code(dc["user_code"])
    dc = start()
    # the HTTP approval page works too
    r = requests.post(f"{emu.authority_url}/devicelogin", verify=emu.ca_pem,
                      data={"user_code": dc["user_code"], "user": "bob@example.com"})
    assert r.status_code == 200
    body = poll(dc).json()
    assert body["token_type"] == "Bearer" and body["refresh_token"]
    assert emu.token_claims(body["access_token"])["upn"] == "bob@example.com"
    assert poll(dc).json()["error"] == "invalid_grant"  # already redeemed
    r = requests.post(token_url, verify=emu.ca_pem, data={
        "grant_type": "refresh_token", "client_id": emu.client_id,
        "refresh_token": body["refresh_token"], "scope": "Files.ReadWrite offline_access"})
    assert r.status_code == 200 and r.json()["refresh_token"] != body["refresh_token"]
    # using the old one again is tolerated (as AAD does) but recorded
    r = requests.post(token_url, verify=emu.ca_pem, data={
        "grant_type": "refresh_token", "client_id": emu.client_id,
        "refresh_token": body["refresh_token"], "scope": "Files.ReadWrite offline_access"})
    assert r.status_code == 200
    assert rules(emu) == ["reused_refresh_token"]


def test_refresh_token_revoked_gives_invalid_grant(graph_emulator):
    emu = graph_emulator
    app = msal_public(emu)
    device_login(emu, app)
    account = app.get_accounts()[0]
    emu.revoke_tokens("alice@example.com")
    result = app.acquire_token_silent_with_error(["Files.ReadWrite"], account=account,
                                                 force_refresh=True)
    assert result["error"] == "invalid_grant"
    assert 50173 in result["error_codes"]
    # the MFA-policy variant, injected
    app2 = msal_public(emu)
    device_login(emu, app2)
    emu.faults.add("mfa_required", "identity.token")
    result = app2.acquire_token_silent_with_error(
        ["Files.ReadWrite"], account=app2.get_accounts()[0], force_refresh=True)
    assert result["error"] == "invalid_grant" and 50076 in result["error_codes"]


@pytest.mark.graphemu(mode="business")
def test_confidential_client_credentials_and_app_only_rules(graph_emulator):
    emu = graph_emulator
    emu.register_app("11111111-2222-3333-4444-555555555555", secret="s3cret")
    cca = msal.ConfidentialClientApplication(
        "11111111-2222-3333-4444-555555555555", client_credential="s3cret",
        authority=emu.authority, instance_discovery=False, verify=emu.ca_pem)
    result = cca.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    assert "access_token" in result, result
    c = Client(emu, result["access_token"])
    r = c.get("/me/drive")
    assert err(r)[:2] == (400, "invalidRequest")
    assert "apponly" in r.json()["error"]["message"]
    assert c.get(f"/drives/{emu.site_drive_id}").status_code == 200
    assert c.get(f"/sites/{emu.site_id}/drive").status_code == 200
    assert c.get("/users/alice@example.com/drive").json()["driveType"] == "business"
    bad = msal.ConfidentialClientApplication(
        "11111111-2222-3333-4444-555555555555", client_credential="wrong",
        authority=emu.authority, instance_discovery=False, verify=emu.ca_pem)
    result = bad.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    assert result["error"] == "invalid_client" and 7000215 in result["error_codes"]
    result = cca.acquire_token_for_client(scopes=["Files.ReadWrite.All"])
    assert result["error"] == "invalid_scope"


@pytest.mark.filterwarnings("ignore:response_mode")
def test_authorization_code_paste_flow_with_msal(graph_emulator):
    emu = graph_emulator
    app = msal_public(emu)
    redirect = "https://login.microsoftonline.com/common/oauth2/nativeclient"
    flow = app.initiate_auth_code_flow(["Files.ReadWrite"], redirect_uri=redirect)
    r = requests.get(flow["auth_uri"], verify=emu.ca_pem, allow_redirects=False, timeout=10)
    assert r.status_code == 302
    pasted = r.headers["Location"]  # what the user would paste back
    assert pasted.startswith(redirect + "?code=")
    auth_response = dict(parse_qsl(urlsplit(pasted).query))
    result = app.acquire_token_by_auth_code_flow(flow, auth_response)
    assert "access_token" in result, result
    assert app.get_accounts()[0]["username"] == "alice@example.com"
    again = requests.post(f"{emu.authority}/oauth2/v2.0/token", verify=emu.ca_pem, data={
        "grant_type": "authorization_code", "client_id": emu.client_id,
        "code": auth_response["code"], "redirect_uri": redirect})
    assert again.json()["error"] == "invalid_grant" and again.json()["error_codes"] == [54005]
    emu.authorize_deny = True
    flow = app.initiate_auth_code_flow(["Files.ReadWrite"], redirect_uri=redirect)
    r = requests.get(flow["auth_uri"], verify=emu.ca_pem, allow_redirects=False, timeout=10)
    assert dict(parse_qsl(urlsplit(r.headers["Location"]).query))["error"] == "access_denied"


# ==================================================================== Graph auth
def test_graph_rejects_missing_expired_revoked_tokens(graph_emulator):
    emu = graph_emulator
    c = Client(emu, token="")
    r = c.get("/me/drive")
    assert err(r)[:2] == (401, "InvalidAuthenticationToken")
    assert "Bearer" in r.headers["WWW-Authenticate"]
    c.token = "not-a-token"
    assert err(c.get("/me/drive"))[:2] == (401, "InvalidAuthenticationToken")
    c.token = emu.access_token()
    assert c.get("/me/drive").status_code == 200
    emu.clock.advance(3601)
    r = c.get("/me/drive")
    assert r.status_code == 401
    assert r.json()["error"]["message"] == "Access token has expired or is not yet valid."
    assert rules(emu) == ["missing_access_token", "expired_access_token"]
    emu.clear_violations()
    c.token = emu.access_token()
    emu.expire_access_tokens()  # server-side early expiry: not the client's fault
    assert c.get("/me/drive").status_code == 401
    c.token = emu.access_token()
    assert c.get("/me/drive").status_code == 200
    emu.revoke_access_tokens("alice@example.com")
    assert c.get("/me/drive").status_code == 401
    c.token = emu.access_token()
    emu.faults.add("revoke_access", "graph.*", nth=2)
    assert c.get("/me/drive").status_code == 200
    assert c.get("/me/drive").status_code == 401
    emu.faults.add("rps_401", "graph.drive")
    r = c.get("/me/drive")
    assert r.status_code == 401 and "RPS" in r.json()["error"]["message"]
    assert emu.violations == []


# ==================================================================== drives & addressing
def test_drive_addressing_and_quota_shape(graph_emulator):
    emu = graph_emulator
    c = Client(emu)
    me = c.get("/me/drive").json()
    assert me["id"] == emu.drive_id and me["driveType"] == "personal"
    assert set(me["quota"]) == {"total", "used", "remaining", "deleted", "state"}
    assert c.get(f"/drives/{emu.drive_id}").json()["id"] == me["id"]
    assert c.get(f"/drives/{emu.drive_id.upper()}").json()["id"] == me["id"]
    assert c.get("/users/alice@example.com/drive").json()["id"] == me["id"]
    assert c.get("/me/drive?$select=quota").json().keys() == {"quota"}
    assert err(c.get("/drives/ffffffffffffffff"))[:2] == (404, "itemNotFound")
    emu.add_user("bob@example.com")
    assert err(c.get("/users/bob@example.com/drive"))[:2] == (403, "accessDenied")
    assert c.get("/sites/root").status_code == 404  # no SharePoint on personal
    approot = c.get("/me/drive/special/approot").json()
    assert approot["name"] == "odbackupd" and approot["parentReference"]["path"] == \
        "/drive/root:/Apps"


@pytest.mark.graphemu(mode="business")
def test_business_sites_lookup_and_zero_quota(graph_emulator):
    emu = graph_emulator
    c = Client(emu)
    site = c.get("/sites/contoso.sharepoint.com:/sites/backups").json()
    assert site["id"] == emu.site_id
    assert c.get("/sites/contoso.sharepoint.com:/sites/backups:").json()["id"] == site["id"]
    drive = c.get(f"/sites/{site['id']}/drive").json()
    assert drive["driveType"] == "documentLibrary" and drive["id"] == emu.site_drive_id
    assert drive["quota"]["total"] == 0  # SharePoint libraries: all-zero quota
    assert c.get("/sites/root/drives").json()["value"][0]["driveType"] == "documentLibrary"
    assert c.get("/me/drive").json()["driveType"] == "business"
    assert emu.drive_id.startswith("b!")


def test_item_paths_encoding_case_and_error_shape(graph_emulator):
    emu = graph_emulator
    c = Client(emu)
    emu.put_file("/Backups/My Host #1/Vol 100%.bin", b"abc")
    enc = "/Backups/" + quote("My Host #1", safe="") + "/" + quote("Vol 100%.bin", safe="")
    for path in (f"/me/drive/root:{enc}:", f"/me/drive/root:{enc}",
                 f"/me/drive/root:{enc.lower()}:"):
        r = c.get(path)
        assert r.status_code == 200, (path, r.text)
        assert r.json()["name"] == "Vol 100%.bin"  # stored case preserved
    item = r.json()
    assert item["parentReference"]["path"] == "/drive/root:/Backups/My Host %231"
    folder = c.get("/me/drive/root:/backups:").json()
    assert folder["name"] == "Backups" and folder["folder"]["childCount"] == 1
    rel = c.get(f"/drives/{emu.drive_id}/items/{folder['id']}:/my host #1/VOL 100%25.bin:")
    assert rel.status_code == 404  # '#' not encoded: the rest is a fragment, never sent
    rel = c.get(f"/drives/{emu.drive_id}/items/{folder['id']}:/{quote('my host #1')}/"
                f"{quote('VOL 100%.bin')}:")
    assert rel.json()["id"] == item["id"]
    by_id = c.get(f"/me/drive/items/{item['id']}").json()
    assert by_id["file"]["hashes"]["quickXorHash"] == quickxor_b64(b"abc")
    assert by_id["@microsoft.graph.downloadUrl"].startswith(emu.files_url)
    for key in ("id", "name", "size", "eTag", "cTag", "createdDateTime",
                "lastModifiedDateTime", "fileSystemInfo", "parentReference"):
        assert key in by_id
    r = c.get("/me/drive/root:/nope/nothing.bin:", headers={"client-request-id": "c-1"})
    body = r.json()["error"]
    assert (r.status_code, body["code"]) == (404, "itemNotFound")
    assert body["innerError"]["client-request-id"] == "c-1"
    assert body["innerError"]["request-id"] == r.headers["request-id"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", body["innerError"]["date"])


@pytest.mark.graphemu(max_page_size=300)
def test_children_paging_skiptoken_and_empty_page(graph_emulator):
    emu = graph_emulator
    for i in range(450):
        emu.put_file(f"/many/f{i:04d}", b"x")
    c = Client(emu)

    def list_all(url):
        names, pages = [], 0
        while url:
            body = c.get(url).json()
            names += [v["name"] for v in body["value"]]
            pages += 1
            url = body.get("@odata.nextLink")
        return names, pages

    names, pages = list_all("/me/drive/root:/many:/children")
    assert len(names) == 450 and pages == 3 and names == sorted(names)  # 200 default
    names, pages = list_all("/me/drive/root:/many:/children?$top=1000")
    assert len(names) == 450 and pages == 2  # $top clamped to 300
    first = c.get("/me/drive/root:/many:/children?$top=10").json()
    link = first["@odata.nextLink"]
    assert link.startswith(emu.graph_url) and "$skiptoken=" in link
    bad = re.sub(r"skiptoken=[^&]+", "skiptoken=garbage", link)
    assert err(c.get(bad))[:2] == (400, "invalidRequest")
    emu.faults.add("empty_page", "graph.children.list", nth=2)
    names, pages = list_all("/me/drive/root:/many:/children")
    assert len(names) == 450 and pages == 4  # a client that stops at 0 items loses 250
    assert err(c.get("/me/drive/root:/many:/children?$top=0"))[0] == 400
    emu.clock.advance(3601)  # skiptokens do not live forever
    c.token = emu.access_token()
    assert err(c.get(link))[:2] == (400, "invalidRequest")


def test_create_folder_conflict_behaviors(graph_emulator):
    emu = graph_emulator
    c = Client(emu)
    url = "/me/drive/root/children"
    r = c.post(url, json={"name": "Snap", "folder": {}})
    assert r.status_code == 201 and r.json()["folder"]["childCount"] == 0
    r = c.post(url, json={"name": "snap", "folder": {},
                          "@microsoft.graph.conflictBehavior": "fail"})
    assert err(r)[:2] == (409, "nameAlreadyExists")
    r = c.post(url, json={"name": "Snap", "folder": {}, "@name.conflictBehavior": "rename"})
    assert r.status_code == 201 and r.json()["name"] == "Snap 1"
    emu.put_file("/Snap/keep.txt", b"1")
    r = c.post(url, json={"name": "Snap", "folder": {},
                          "@microsoft.graph.conflictBehavior": "replace"})
    assert r.status_code == 201 and emu.list_dir("/Snap") == []
    assert emu.violations == []
    r = c.post(url, json={"name": "Snap", "folder": {},
                          "@microsoft.graph.conflictBehavior": "overwrite"})
    assert err(r)[:2] == (400, "invalidRequest")
    assert rules(emu) == ["invalid_conflict_behavior"]
    r = c.post(url, json={"name": "bad:name", "folder": {}})
    assert err(r)[:2] == (400, "invalidRequest")
    r = c.post("/me/drive/root:/Snap:/children", json={"name": "inner", "folder": {}})
    assert r.json()["parentReference"]["path"] == "/drive/root:/Snap"


def test_delete_recycle_bin_quota_and_if_match(graph_emulator):
    emu = graph_emulator
    c = Client(emu)
    emu.set_quota(10_000)
    item = emu.put_file("/old/vol.bin", b"z" * 1000)
    q = c.get("/me/drive").json()["quota"]
    assert (q["used"], q["remaining"], q["deleted"]) == (1000, 9000, 0)
    r = c.delete(f"/me/drive/items/{item['id']}", headers={"If-Match": '"{nope},1"'})
    assert err(r)[:2] == (412, "resourceModified")
    r = c.delete(f"/me/drive/items/{item['id']}", headers={"If-Match": item["eTag"]})
    assert r.status_code == 204
    q = c.get("/me/drive").json()["quota"]
    assert q["deleted"] == 1000 and q["remaining"] == 9000  # recycle bin still counts
    assert err(c.get(f"/me/drive/items/{item['id']}"))[:2] == (404, "itemNotFound")
    emu.config.update(recycle_bin_counts=False)
    assert c.get("/me/drive").json()["quota"]["remaining"] == 10_000
    emu.empty_recycle_bin()
    assert c.get("/me/drive").json()["quota"]["deleted"] == 0
    assert c.delete("/me/drive/root:/old:").status_code == 204
    assert not emu.exists("/old")


def test_quota_states_and_507(graph_emulator):
    emu = graph_emulator
    c = Client(emu)
    emu.set_quota(1000)
    emu.put_file("/a", b"x" * 950)
    assert c.get("/me/drive").json()["quota"]["state"] == "nearing"
    r = c.put("/me/drive/root:/b:/content", data=b"y" * 100)
    assert err(r)[:2] == (507, "quotaLimitReached")
    r = c.post("/me/drive/root:/big.bin:/createUploadSession",
               json={"item": {"fileSize": 10_000}})
    assert err(r)[:2] == (507, "quotaLimitReached")  # personal: fileSize pre-check
    assert emu.upload_sessions() == []
    url = c.session("/big2.bin")  # without fileSize the check waits for the last byte
    r = c.fragment(url, b"q" * 200, 0, 200)
    assert err(r)[:2] == (507, "quotaLimitReached")
    emu.put_file("/a", b"x" * 1000)
    assert c.get("/me/drive").json()["quota"]["state"] == "exceeded"


# ==================================================================== downloads
def test_download_redirect_ranges_and_expiry(graph_emulator):
    emu = graph_emulator
    c = Client(emu)
    data = data_of(10_000)
    emu.put_file("/d/file.bin", data)
    r = c.get("/me/drive/root:/d/file.bin:/content", allow_redirects=False)
    assert r.status_code == 302
    loc = r.headers["Location"]
    assert urlsplit(loc).port == urlsplit(emu.files_url).port != urlsplit(emu.graph_url).port
    r = c.get("/me/drive/root:/d/file.bin:/content")  # requests drops the token on redirect
    assert r.status_code == 200 and r.content == data
    assert emu.violations == []
    plain = requests.Session()

    def get(headers):
        return plain.get(loc, headers=headers, verify=emu.ca_pem, timeout=10)

    r = get({"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == data[100:200]
    assert r.headers["Content-Range"] == "bytes 100-199/10000"
    r = get({"Range": "bytes=9990-"})
    assert r.content == data[9990:] and r.status_code == 206
    r = get({"Range": "bytes=-5"})
    assert r.content == data[-5:] and r.headers["Content-Range"] == "bytes 9995-9999/10000"
    r = get({"Range": "bytes=20000-"})
    assert r.status_code == 416 and r.headers["Content-Range"] == "bytes */10000"
    emu.faults.add("ignore_range", "download.get")
    r = get({"Range": "bytes=0-9"})
    assert r.status_code == 200 and len(r.content) == 10_000
    get({"Authorization": "Bearer " + c.token})
    assert rules(emu) == ["authorization_on_download_url"]
    emu.clock.advance(301)
    r = get({})
    assert r.status_code == 410
    assert rules(emu)[-1] == "expired_download_url"
    r = c.get("/me/drive/root:/d/file.bin:/content", allow_redirects=False,
              headers={"If-None-Match": c.get("/me/drive/root:/d/file.bin:").json()["cTag"]})
    assert r.status_code == 304


def test_download_counts_the_bytes_sent_and_flags_malformed_ranges(graph_emulator):
    emu = graph_emulator
    c = Client(emu)
    data = data_of(10_000)
    emu.put_file("/d/file.bin", data)
    loc = c.get("/me/drive/root:/d/file.bin:/content", allow_redirects=False).headers["Location"]
    plain = requests.Session()

    def get(headers):
        return plain.get(loc, headers=headers, verify=emu.ca_pem, timeout=10)

    def sent():
        return emu.counters["bytes_downloaded"]

    r = get({"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == data[100:200] and sent() == 100
    assert plain.head(loc, verify=emu.ca_pem, timeout=10).status_code == 200
    assert sent() == 100  # a HEAD sends no body
    emu.faults.add("truncate", "download.get", keep=300)
    with pytest.raises(requests.RequestException):
        get({"Range": "bytes=0-4999"}).content  # noqa: B018 - reading the body is the point
    assert sent() == 400  # the 300 bytes before the reset, not the 5000 asked for
    assert emu.violations == []
    # Graph ignores a Range it cannot serve as one range (RFC 9110): the whole file, 200
    bad = ["bytes=5-3", "bytes=abc", "bytes=0-1,5-9", "items=0-5", "bytes=-", "bytes= 1-2"]
    for value in bad:
        r = get({"Range": value})
        assert r.status_code == 200 and r.content == data, value
    assert rules(emu) == ["malformed_range"] * len(bad)
    assert get({"Range": "bytes=-0"}).status_code == 416  # valid syntax, nothing to send


# ==================================================================== simple upload
def test_simple_upload_limits_zero_bytes_and_conflicts(graph_emulator):
    emu = graph_emulator
    c = Client(emu)
    r = c.put("/me/drive/root:/new/empty.bin:/content", data=b"")
    assert r.status_code == 201 and r.json()["size"] == 0
    assert r.json()["file"]["hashes"]["quickXorHash"] == "AAAAAAAAAAAAAAAAAAAAAAAAAAA="
    r = c.put("/me/drive/root:/new/empty.bin:/content", data=b"1")
    assert r.status_code == 200
    r = c.put("/me/drive/root:/new/empty.bin:/content?@microsoft.graph.conflictBehavior=fail",
              data=b"2")
    assert err(r)[:2] == (409, "nameAlreadyExists")
    item = c.get("/me/drive/root:/new/empty.bin:").json()
    r = c.put(f"/me/drive/items/{item['id']}/content", data=b"by id")
    assert r.status_code == 200 and emu.read_file("/new/empty.bin") == b"by id"
    assert emu.violations == []
    r = c.put("/me/drive/root:/big.bin:/content", data=b"\0" * (4 * MIB + 1))
    assert r.status_code == 413
    assert rules(emu) == ["simple_upload_too_large"]
    r = c.put("/me/drive/root:/gen.bin:/content", data=iter([b"ab", b"cd"]))
    assert r.status_code == 201  # personal tolerates chunked bodies, but it is recorded
    assert rules(emu)[-1] == "chunked_transfer_encoding"


@pytest.mark.graphemu(mode="business")
def test_business_rejects_chunked_simple_upload(graph_emulator):
    c = Client(graph_emulator)
    r = c.put("/me/drive/root:/gen.bin:/content", data=iter([b"ab", b"cd"]))
    assert err(r)[:2] == (400, "invalidRequest")
    assert "chunked" in r.json()["error"]["message"]
    r = c.put("/me/drive/root:/ok.bin:/content", data=b"abcd")
    assert "sha1Hash" not in r.json()["file"]["hashes"]  # Business: quickXorHash only


# ==================================================================== upload sessions
def test_upload_session_happy_path_personal(graph_emulator):
    emu = graph_emulator
    c = Client(emu)
    data = data_of(3 * FRAG + 1234)
    r = c.post("/me/drive/root:/snap/vol.000001:/createUploadSession",
               json={"item": {"@microsoft.graph.conflictBehavior": "fail",
                              "fileSystemInfo": {"lastModifiedDateTime":
                                                 "2024-01-02T03:04:05Z"}}})
    assert r.status_code == 200
    created = r.json()
    url = created["uploadUrl"]
    assert created["nextExpectedRanges"] == ["0-"] and created["expirationDateTime"]
    assert urlsplit(url).port == urlsplit(emu.files_url).port
    r = c.fragment(url, data[:2 * FRAG], 0, len(data))
    assert r.status_code == 202 and r.json()["nextExpectedRanges"] == [f"{2 * FRAG}-"]
    r = c.get(url, auth=False)
    assert r.json()["nextExpectedRanges"] == [f"{2 * FRAG}-"]
    r = c.get(url)  # GET status with Authorization is tolerated (rclone does it)
    assert r.status_code == 200
    r = c.fragment(url, data[2 * FRAG:], 2 * FRAG, len(data))
    assert r.status_code == 201
    item = r.json()
    hashes = item["file"]["hashes"]
    assert hashes["quickXorHash"] == quickxor_reference(data)
    assert hashes["sha1Hash"] == hashlib.sha1(data).hexdigest().upper()
    assert hashes["sha256Hash"] == hashlib.sha256(data).hexdigest().upper()
    assert item["size"] == len(data) and item["fileSystemInfo"]["lastModifiedDateTime"] == \
        "2024-01-02T03:04:05Z"
    assert emu.read_file("/snap/vol.000001") == data  # parents created lazily
    assert err(c.get(url, auth=False))[:3] == (404, "itemNotFound", "uploadSessionNotFound")
    # replacing through a session by id answers 200
    url = c.post(f"/me/drive/items/{item['id']}/createUploadSession").json()["uploadUrl"]
    r = c.fragment(url, b"new", 0, 3)
    assert r.status_code == 200 and emu.read_file("/snap/vol.000001") == b"new"
    assert emu.counters["sessions_created"] == 2 and emu.counters["sessions_completed"] == 2
    assert emu.counters["bytes_uploaded"] == len(data) + 3
    assert emu.counters["sessions_resumed"] == 1
    assert emu.violations == []


@pytest.mark.graphemu(mode="business")
def test_upload_session_business_url_verbatim_and_closed_ranges(graph_emulator):
    emu = graph_emulator
    c = Client(emu)
    data = data_of(FRAG + 10)
    url = c.session("/x y.bin", {"item": {"fileSize": len(data)}})
    parts = urlsplit(url)
    assert "'" in parts.query and "~tmp" in parts.query and "&tempauth=" in parts.query
    assert parts.path.endswith("/uploadSession")
    r = c.fragment(url, data[:FRAG], 0, len(data))
    assert r.json()["nextExpectedRanges"] == [f"{FRAG}-{len(data) - 1}"]
    mangled = url.replace("'", "%27")
    r = c.fragment(mangled, data[FRAG:], FRAG, len(data))
    assert err(r)[:2] == (400, "invalidRequest")
    assert rules(emu) == ["upload_url_modified"]
    r = c.fragment(url, data[FRAG:], FRAG, len(data))
    assert r.status_code == 201
    assert set(r.json()["file"]["hashes"]) == {"quickXorHash"}


def test_fragment_rules_each_enforced(graph_emulator):
    emu = graph_emulator
    c = Client(emu)
    total = 4 * FRAG
    data = data_of(total)
    url = c.session("/rules.bin")

    def expect(resp, status, code, inner, rule):
        assert err(resp) == (status, code, inner), resp.text
        assert emu.violations[-1]["rule"] == rule
        assert emu.violations[-1]["endpoint"] == "upload.fragment"

    r = c.fragment(url, data[:FRAG], 0, total, headers={"Authorization": "Bearer " + c.token})
    assert err(r)[:2] == (401, "unauthenticated")
    assert rules(emu) == ["authorization_on_upload_url"]
    r = c.call("PUT", url, auth=False, data=data[:FRAG])
    expect(r, 400, "invalidRequest", None, "bad_content_range")
    r = c.call("PUT", url, auth=False, data=data[:FRAG],
               headers={"Content-Range": f"bytes 0-{FRAG - 1}/*"})
    expect(r, 400, "invalidRequest", None, "bad_content_range")
    r = c.fragment(url, data[:1000], 0, total)  # non-final, not 320 KiB
    expect(r, 400, "invalidRequest", "invalidRange", "unaligned_fragment")
    r = c.call("PUT", url, auth=False, data=data[:FRAG],
               headers={"Content-Range": f"bytes 0-{2 * FRAG - 1}/{total}"})
    expect(r, 400, "invalidRequest", "fragmentLengthMismatch", "content_length_mismatch")
    assert c.fragment(url, data[:FRAG], 0, total).status_code == 202
    r = c.fragment(url, data[FRAG:2 * FRAG], FRAG, total + 1)
    expect(r, 400, "invalidRequest", "fragmentLengthMismatch", "fragment_total_mismatch")
    assert "declares a total of" in r.json()["error"]["message"]
    r = c.fragment(url, data[:FRAG], 0, total)
    expect(r, 416, "invalidRange", "fragmentOverlap", "fragment_overlap")
    r = c.fragment(url, data[2 * FRAG:3 * FRAG], 2 * FRAG, total)
    expect(r, 416, "invalidRange", "fragmentOutOfOrder", "fragment_out_of_order")
    # no Content-Length at all (and not chunked): 411
    ctx = ssl.create_default_context(cafile=emu.ca_pem)
    parts = urlsplit(url)
    conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=ctx, timeout=10)
    conn.putrequest("PUT", parts.path + ("?" + parts.query if parts.query else ""))
    conn.putheader("Content-Range", f"bytes {FRAG}-{2 * FRAG - 1}/{total}")
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 411
    resp.read()
    conn.close()
    assert rules(emu)[-1] == "missing_content_length"
    # the session is intact: a correct client carries on
    assert c.get(url, auth=False).json()["nextExpectedRanges"] == [f"{FRAG}-"]
    assert c.upload(url, data, chunk=FRAG, start=FRAG).status_code == 201
    r = c.delete(url, auth=False)
    assert err(r)[:3] == (404, "itemNotFound", "uploadSessionNotFound")


def test_fragment_of_60_mib_is_too_large(graph_emulator):
    emu = graph_emulator
    c = Client(emu)
    total = 60 * MIB + FRAG
    url = c.session("/huge.bin", {"item": {"fileSize": total}})
    r = c.fragment(url, b"\0" * (60 * MIB), 0, total)
    assert err(r) == (413, "invalidRequest", "maxFragmentLengthExceeded")
    assert rules(emu) == ["fragment_too_large"]
    ok = 191 * FRAG  # the largest legal fragment
    assert c.fragment(url, b"\0" * ok, 0, total).status_code == 202


@pytest.mark.graphemu(mode="business")
def test_business_chunked_fragment_and_cancel(graph_emulator):
    emu = graph_emulator
    c = Client(emu)
    url = c.session("/c.bin")
    r = c.call("PUT", url, auth=False, data=iter([b"a" * 10]),
               headers={"Content-Range": "bytes 0-9/10"})
    assert err(r)[:2] == (400, "invalidRequest")
    assert rules(emu) == ["chunked_transfer_encoding"]
    r = c.delete(url)  # Authorization on DELETE: 401
    assert r.status_code == 401 and rules(emu)[-1] == "authorization_on_upload_url"
    assert c.delete(url, auth=False).status_code == 204
    assert c.get(url, auth=False).status_code == 404
    assert emu.counters["sessions_cancelled"] == 1


def test_session_creation_rules(graph_emulator):
    emu = graph_emulator
    c = Client(emu)
    r = c.post("/me/drive/root:/z.bin:/createUploadSession", json={"item": {"fileSize": 0}})
    assert err(r)[:2] == (400, "invalidRequest") and rules(emu) == ["zero_byte_session"]
    r = c.post("/me/drive/root:/a.bin:/createUploadSession", json={"item": {"name": "b.bin"}})
    assert err(r)[:2] == (400, "invalidRequest") and rules(emu)[-1] == "name_mismatch"
    emu.clear_violations()
    emu.put_file("/exists.bin", b"old")
    r = c.post("/me/drive/root:/exists.bin:/createUploadSession",
               json={"item": {"@microsoft.graph.conflictBehavior": "fail"}})
    assert err(r)[:2] == (409, "nameAlreadyExists")
    first = c.session("/exists.bin")  # default conflictBehavior: replace
    r = c.post("/me/drive/root:/exists.bin:/createUploadSession")
    assert err(r)[:2] == (409, "nameAlreadyExists")
    assert "already exists for this file" in r.json()["error"]["message"]
    assert c.delete(first, auth=False).status_code == 204
    second = c.session("/exists.bin")
    assert c.fragment(second, b"new!", 0, 4).status_code == 200
    # a new path is held by its pending session as well, until it is cancelled or expires
    pending = c.session("/new.bin", {"item": {"fileSize": 8}})
    r = c.post("/me/drive/root:/NEW.bin:/createUploadSession", json={"item": {"fileSize": 8}})
    assert err(r)[:2] == (409, "nameAlreadyExists")
    assert c.delete(pending, auth=False).status_code == 204
    assert c.fragment(c.session("/new.bin"), b"12345678", 0, 8).status_code == 201
    # a name taken while the session was open: 409 at the last byte, session kept
    url = c.session("/race.bin", {"item": {"@microsoft.graph.conflictBehavior": "fail"}})
    emu.put_file("/race.bin", b"someone else")
    r = c.fragment(url, b"mine", 0, 4)
    assert err(r)[:2] == (409, "nameAlreadyExists")
    assert c.get(url, auth=False).json()["nextExpectedRanges"] == []  # bytes are kept
    r = c.put("/me/drive/root:/race.bin", json={  # personal: commit them under a new name
        "name": "race.bin", "@microsoft.graph.conflictBehavior": "rename",
        "@microsoft.graph.sourceUrl": url})
    assert r.status_code == 201 and r.json()["name"] == "race 1.bin"
    assert c.delete(f"/me/drive/items/{r.json()['id']}").status_code == 204
    url = c.session("/race.bin", {"item": {"@microsoft.graph.conflictBehavior": "rename"}})
    assert c.fragment(url, b"mine", 0, 4).json()["name"] == "race 1.bin"
    emu.config.update(session_default_conflict="fail")
    r = c.post("/me/drive/root:/race.bin:/createUploadSession")
    assert err(r)[:2] == (409, "nameAlreadyExists")
    assert emu.violations == []


@pytest.mark.graphemu(mode="business")
def test_session_sliding_expiry_and_24h_cap(graph_emulator):
    emu = graph_emulator
    c = Client(emu)
    data = data_of(8 * FRAG)
    url = c.session("/slow.bin")
    for i in range(4):  # 10 min between fragments: each one extends the 15 min window
        emu.clock.advance(10 * 60)
        assert c.fragment(url, data[i * FRAG:(i + 1) * FRAG], i * FRAG, len(data)
                          ).status_code == 202
    emu.clock.advance(16 * 60)
    r = c.fragment(url, data[4 * FRAG:5 * FRAG], 4 * FRAG, len(data))
    assert err(r) == (404, "itemNotFound", "uploadSessionNotFound")
    assert rules(emu) == ["expired_upload_session"]
    emu.config.update(session_lifetime=48 * 3600)  # only the tempauth cap is left
    url = c.session("/long.bin")
    assert c.fragment(url, data[:FRAG], 0, len(data)).status_code == 202
    emu.clock.advance(24 * 3600 + 1)
    r = c.fragment(url, data[FRAG:2 * FRAG], FRAG, len(data))
    assert err(r) == (401, "unauthenticated", "expiredToken")


def test_defer_commit_personal_source_url(graph_emulator):
    emu = graph_emulator
    c = Client(emu)
    url = c.session("/dc/final.bin", {"deferCommit": True})
    r = c.fragment(url, b"abc", 0, 3)
    assert r.status_code == 202 and r.json()["nextExpectedRanges"] == []
    assert not emu.exists("/dc/final.bin")
    r = c.put("/me/drive/root:/dc:", json={"name": "final.bin",
                                          "@microsoft.graph.sourceUrl": url})
    assert err(r)[:2] == (400, "invalidRequest")  # must target the file path
    r = c.put("/me/drive/root:/dc/final.bin", json={
        "name": "final.bin", "@microsoft.graph.conflictBehavior": "rename",
        "@microsoft.graph.sourceUrl": url})
    assert r.status_code == 201, r.text
    assert emu.read_file("/dc/final.bin") == b"abc"


@pytest.mark.graphemu(mode="business")
def test_defer_commit_business_post(graph_emulator):
    emu = graph_emulator
    c = Client(emu)
    url = c.session("/dc.bin", {"deferCommit": True})
    r = c.call("POST", url, auth=False, data=b"")
    assert err(r)[:3] == (400, "invalidRequest", "uploadSessionIncomplete")
    assert c.fragment(url, b"abc", 0, 3).status_code == 202
    assert not emu.exists("/dc.bin")
    r = c.call("POST", url, auth=False, data=b"")
    assert r.status_code == 201 and emu.read_file("/dc.bin") == b"abc"


def test_sessions_and_files_survive_restart(graph_emulator, tmp_path):
    emu = graph_emulator
    c = Client(emu)
    data = data_of(3 * FRAG)
    url = c.session("/r/vol.bin")
    assert c.fragment(url, data[:FRAG], 0, len(data)).status_code == 202
    emu.put_file("/r/kept.txt", b"kept")
    emu.restart()
    r = c.get(url, auth=False)
    assert r.status_code == 200 and r.json()["nextExpectedRanges"] == [f"{FRAG}-"]
    assert c.get("/me/drive").status_code == 200  # tokens survive too
    assert c.fragment(url, data[FRAG:2 * FRAG], FRAG, len(data)).status_code == 202
    emu.stop()
    emu2 = GraphEmulator(emu.data_dir).start()  # a new instance, as a new process would
    try:
        assert emu2.graph_url == emu.graph_url and emu2.ca_pem == emu.ca_pem
        assert emu2.read_file("/r/kept.txt") == b"kept"
        c2 = Client(emu2, c.token)
        r = c2.fragment(url, data[2 * FRAG:], 2 * FRAG, len(data))
        assert r.status_code == 201 and emu2.read_file("/r/vol.bin") == data
    finally:
        emu2.stop()
        emu.start()  # for the fixture's teardown


# ==================================================================== throttling & faults
def test_retry_after_seconds_date_and_missing(graph_emulator):
    emu = graph_emulator
    c = Client(emu)
    emu.faults.add("throttle", "graph.drive", retry_after=2)
    r = c.get("/me/drive")
    assert err(r) == (429, "activityLimitReached", "throttledRequest")
    assert r.headers["Retry-After"] == "2"
    r = c.get("/me/drive")  # too early: violation, and throttled again
    assert r.status_code == 429 and emu.retry_after_violations == 1
    log = emu.requests
    assert log[-1]["retry_not_before"] is not None and log[-1]["t"] < \
        log[-1]["retry_not_before"]
    emu.clock.advance(2)  # what a polite client's wait looks like on the emulator clock
    assert c.get("/me/drive").status_code == 200
    emu.faults.add("throttle", "graph.drive", status=503, retry_after="date+3")
    r = c.get("/me/drive")
    assert r.status_code == 503
    when = email.utils.parsedate_to_datetime(r.headers["Retry-After"]).timestamp()
    assert 2 <= when - emu.clock.now() <= 4
    emu.clock.advance(4)
    assert c.get("/me/drive").status_code == 200
    emu.faults.add("throttle", "graph.drive", retry_after=None)
    r = c.get("/me/drive")
    assert r.status_code == 429 and "Retry-After" not in r.headers
    assert c.get("/me/drive").status_code == 200  # no header, no gate (configurable)
    assert rules(emu) == ["ignored_retry_after"]


def test_lost_response_and_partial_commit_recovery(graph_emulator):
    emu = graph_emulator
    c = Client(emu)
    data = data_of(12 * FRAG + 77)
    url = c.session("/faulty.bin")
    emu.faults.add("lost_response", "upload.fragment", nth=2)
    emu.faults.add("partial_commit", "upload.fragment", nth=4, keep=100_001)
    emu.faults.add("error_after", "upload.fragment", nth=5, status=503)
    pos, chunk = 0, 2 * FRAG
    outcomes = []
    while pos < len(data):
        end = min(pos + chunk, len(data))
        if end < len(data) and end % FRAG:
            end -= end % FRAG  # realign after a partial commit
        try:
            r = c.fragment(url, data[pos:end], pos, len(data))
            outcomes.append(r.status_code)
            if r.status_code in (200, 201):
                break
            if r.status_code == 202:
                pos = end
                continue
        except requests.ConnectionError:
            outcomes.append("conn")
        status = c.get(url, auth=False).json()  # the correct recovery: ask, then skip
        pos = int(status["nextExpectedRanges"][0].split("-")[0])
    assert outcomes == [202, "conn", 202, "conn", 503, 202, 202, 201], outcomes
    assert emu.read_file("/faulty.bin") == data
    assert emu.item("/faulty.bin")["file"]["hashes"]["quickXorHash"] == quickxor_b64(data)
    # the last fragment's answer lost: the file exists, the session is gone (404)
    url = c.session("/last.bin")
    emu.faults.add("lost_response", "upload.fragment")
    with pytest.raises(requests.ConnectionError):
        c.fragment(url, b"tail", 0, 4)
    assert c.get(url, auth=False).status_code == 404
    item = c.get("/me/drive/root:/last.bin:").json()
    assert item["size"] == 4 and item["file"]["hashes"]["quickXorHash"] == quickxor_b64(b"tail")
    # a partial commit of a 1-byte last fragment has nothing to withhold: the file is
    # committed and only the answer is lost (as above), never a session stuck at "all bytes"
    url = c.session("/one.bin")
    emu.faults.add("partial_commit", "upload.fragment")
    with pytest.raises(requests.ConnectionError):
        c.fragment(url, b"1", 0, 1)
    assert c.get(url, auth=False).status_code == 404
    assert emu.read_file("/one.bin") == b"1"
    assert emu.violations == []


def test_fault_injection_is_deterministic_by_seed(tmp_path):
    def run(seed: int, sub: str) -> list:
        with GraphEmulator(tmp_path / sub, seed=seed, enforce_retry_after=False) as emu:
            emu.faults.set(throttle_rate=0.2, error_rate=0.1, retry_after=0)
            c = Client(emu)
            statuses = [c.get("/me/drive").status_code for _ in range(40)]
            assert statuses.count(200) < 40
            return statuses, list(emu.faults.history)

    a, b, other = run(7, "a"), run(7, "b"), run(8, "c")
    assert a == b
    assert a[0] != other[0]


def test_connection_reset_and_scheduled_errors(graph_emulator):
    emu = graph_emulator
    c = Client(emu)
    emu.faults.add("reset", "graph.drive")
    with pytest.raises(requests.ConnectionError):
        c.get("/me/drive")
    emu.faults.add("error", "graph.item.get", nth=2, times=2, status=500)
    codes = [c.get("/me/drive/root").status_code for _ in range(4)]
    assert codes == [200, 500, 500, 200]
    emu.faults.add("drop", "graph.drive")
    with pytest.raises(requests.ConnectionError):
        c.get("/me/drive")
    assert c.get("/me/drive").status_code == 200
    assert emu.counters["faults_injected"] == 4


def test_session_expiry_fault_and_missing_ranges(graph_emulator):
    emu = graph_emulator
    c = Client(emu)
    data = data_of(3 * FRAG)
    url = c.session("/m.bin")
    emu.faults.add("missing_ranges", "upload.fragment")
    r = c.fragment(url, data[:FRAG], 0, len(data))
    assert r.status_code == 202 and "nextExpectedRanges" not in r.json()
    emu.faults.add("expire_session", "upload.fragment")
    r = c.fragment(url, data[FRAG:2 * FRAG], FRAG, len(data))
    assert err(r) == (404, "itemNotFound", "uploadSessionNotFound")
    assert emu.violations == []  # expired by the service, not the client's fault


# ==================================================================== the whole correct flow
def test_correct_client_flow_end_to_end_has_no_violations(graph_emulator):
    emu = graph_emulator
    app = msal_public(emu)
    token = device_login(emu, app)["access_token"]
    c = Client(emu, token)
    assert c.post("/me/drive/root/children", json={
        "name": "backups", "folder": {}, "@microsoft.graph.conflictBehavior": "fail"}
    ).status_code == 201
    data = data_of(7 * FRAG + 4321, seed=9)
    r = c.post("/me/drive/root:/backups/host_1.tar.zst.age:/createUploadSession",
               json={"item": {"@microsoft.graph.conflictBehavior": "fail",
                              "fileSize": len(data)}})
    url = r.json()["uploadUrl"]
    emu.faults.add("reset", "upload.fragment", nth=3)  # the network drops mid-upload
    emu.faults.add("throttle", "upload.fragment", nth=5, retry_after=1)
    chunk = 2 * FRAG
    pos = 0
    item = None
    while item is None:
        piece = data[pos:pos + chunk]
        try:
            r = c.fragment(url, piece, pos, len(data))
        except requests.ConnectionError:
            pos = int(c.get(url, auth=False).json()["nextExpectedRanges"][0].split("-")[0])
            continue
        if r.status_code in (429, 503):
            emu.clock.advance(int(r.headers.get("Retry-After", "1")))
            continue
        assert r.status_code in (201, 202), r.text
        if r.status_code == 201:
            item = r.json()
        else:
            pos += len(piece)
    qx = QuickXorHash()
    qx.update(data)
    assert item["file"]["hashes"]["quickXorHash"] == qx.b64digest()
    assert item["size"] == len(data)
    # read back a random slice through the download URL
    dl = c.get(f"/me/drive/items/{item['id']}").json()["@microsoft.graph.downloadUrl"]
    r = requests.get(dl, headers={"Range": "bytes=1000000-1000999"}, verify=emu.ca_pem,
                     timeout=10)
    assert r.status_code == 206 and r.content == data[1_000_000:1_001_000]
    emu.assert_no_violations()
    assert emu.counters["requests.upload.fragment"] == 6
    assert emu.counters["sessions_resumed"] == 1


# ==================================================================== more Graph surface
def test_patch_rename_move_etag_and_conflict(graph_emulator):
    emu = graph_emulator
    c = Client(emu)
    item = emu.put_file("/tmp/upload.part", b"data")
    emu.mkdir("/final")
    emu.put_file("/final/taken.bin", b"x")
    r = c.call("PATCH", f"/me/drive/items/{item['id']}", json={
        "name": "taken.bin", "parentReference": {"path": "/drive/root:/final"}})
    assert err(r)[:2] == (409, "nameAlreadyExists")
    r = c.call("PATCH", f"/me/drive/items/{item['id']}", headers={"If-Match": item["eTag"]},
               json={"name": "vol.bin", "parentReference": {"path": "/drive/root:/final"},
                     "fileSystemInfo": {"lastModifiedDateTime": "2020-05-06T07:08:09Z"}})
    assert r.status_code == 200, r.text
    moved = r.json()
    assert moved["parentReference"]["path"] == "/drive/root:/final"
    assert moved["eTag"] != item["eTag"] and moved["cTag"] == item["cTag"]
    assert moved["fileSystemInfo"]["lastModifiedDateTime"] == "2020-05-06T07:08:09Z"
    assert emu.read_file("/final/vol.bin") == b"data" and not emu.exists("/tmp/upload.part")
    r = c.call("PATCH", f"/me/drive/items/{item['id']}", headers={"If-Match": item["eTag"]},
               json={"name": "again.bin"})
    assert err(r)[:2] == (412, "resourceModified")


def test_app_folder_scope_is_confined(graph_emulator):
    emu = graph_emulator
    c = Client(emu, emu.access_token(scopes="Files.ReadWrite.AppFolder"))
    r = c.put("/me/drive/special/approot:/state.json:/content", data=b"{}")
    assert r.status_code == 201
    assert r.json()["parentReference"]["path"] == "/drive/root:/Apps/odbackupd"
    assert err(c.get("/me/drive/root/children"))[:2] == (403, "accessDenied")
    assert c.get("/me/drive/special/approot/children").json()["value"][0]["name"] == \
        "state.json"


def test_refresh_token_revoked_mid_run_by_fault(graph_emulator):
    emu = graph_emulator
    app = msal_public(emu)
    first = device_login(emu, app)
    c = Client(emu, first["access_token"])
    emu.faults.add("revoke_refresh", "identity.token")
    result = app.acquire_token_silent_with_error(["Files.ReadWrite"],
                                                 account=app.get_accounts()[0],
                                                 force_refresh=True)
    assert result["error"] == "invalid_grant" and 50173 in result["error_codes"]
    assert err(c.get("/me/drive"))[:2] == (401, "InvalidAuthenticationToken")
    assert emu.violations == []


@pytest.mark.graphemu(ru_budget_per_minute=10)
def test_resource_unit_budget_headers_and_429(graph_emulator):
    emu = graph_emulator
    c = Client(emu)
    now = emu.clock.now()
    emu.clock.advance(60 - now % 60 + 1)  # start of a fresh minute window
    seen = []
    for _ in range(4):
        r = c.get("/me/drive/root/children")  # 2 RU each
        seen.append((r.status_code, r.headers.get("RateLimit-Remaining")))
    assert seen == [(200, None), (200, None), (200, None), (200, "2")]
    assert c.get("/me/drive").headers["RateLimit-Remaining"] == "1"
    r = c.get("/me/drive/root/children")
    assert err(r)[:2] == (429, "activityLimitReached") and int(r.headers["Retry-After"]) >= 1
    emu.clock.advance(int(r.headers["Retry-After"]))
    assert c.get("/me/drive").status_code == 200
    assert emu.violations == []


def test_final_response_without_hashes(graph_emulator):
    emu = graph_emulator
    c = Client(emu)
    url = c.session("/h.bin")
    emu.faults.add("hashes_missing", "upload.fragment")
    item = c.fragment(url, b"abc", 0, 3).json()
    assert "hashes" not in item["file"]
    again = c.get(f"/me/drive/items/{item['id']}").json()
    assert again["file"]["hashes"]["quickXorHash"] == quickxor_b64(b"abc")


def test_retry_after_gate_is_per_app_across_connections(graph_emulator):
    emu = graph_emulator
    emu.register_app("other-app")
    a1, a2 = Client(emu), Client(emu)  # same app, two connections (two "workers")
    other = Client(emu, emu.access_token(client_id="other-app"))
    emu.faults.add("throttle", "graph.drive", retry_after=30)
    assert a1.get("/me/drive").status_code == 429
    assert other.get("/me/drive").status_code == 200  # another app is not gated
    assert a2.get("/me/drive").status_code == 429  # the sibling worker must wait too
    assert emu.retry_after_violations == 1
    emu.clock.advance(30)
    assert a2.get("/me/drive").status_code == 200


def test_parallel_uploads_under_random_faults(graph_emulator):
    """Several volumes at once, as the daemon uploads them, through seeded faults."""
    import threading

    emu = graph_emulator
    emu.faults.set(throttle_rate=0.1, retry_after=0, lost_response_rate=0.1,
                   partial_commit_rate=0.05, error_rate=0.05)
    token = emu.access_token()
    results: dict[int, bytes] = {}
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            c = Client(emu, token)
            data = data_of(5 * FRAG + n * 1000, seed=n)
            while True:  # creating the session may be throttled too
                r = c.post(f"/me/drive/root:/par/vol{n}:/createUploadSession", json={})
                if r.status_code == 200:
                    break
            url = r.json()["uploadUrl"]
            pos = 0
            while True:
                end = min(len(data), (pos // FRAG + 1) * FRAG)  # re-aligns after partials
                try:
                    r = c.fragment(url, data[pos:end], pos, len(data))
                except requests.ConnectionError:
                    r = None
                if r is not None and r.status_code in (200, 201):
                    break
                if r is not None and r.status_code == 202:
                    pos = end
                    continue
                while True:
                    st = c.get(url, auth=False)
                    if st.status_code == 200:
                        pos = int(st.json()["nextExpectedRanges"][0].split("-")[0])
                        break
                    if st.status_code == 404:  # last answer lost: the file is there
                        pos = len(data)
                        break
                if pos == len(data):
                    break
            results[n] = data
        except BaseException as e:  # noqa: BLE001 - surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for n, data in results.items():
        assert emu.read_file(f"/par/vol{n}") == data
    assert len(results) == 4
    assert emu.counters["faults_injected"] > 0
    emu.assert_no_violations()


def test_requests_ca_bundle_trap_and_the_three_ways_out(graph_emulator, monkeypatch):
    """REQUESTS_CA_BUNDLE beats Session.verify (which is all msal's verify= sets)."""
    emu = graph_emulator
    # any bundle without the emulator's CA will do: certifi's ships with requests
    system = certifi.where()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", system)
    with pytest.raises(requests.exceptions.SSLError):
        msal_public(emu).initiate_device_flow(scopes=["Files.ReadWrite"])
    # 1. a Session that ignores the environment
    s = requests.Session()
    s.trust_env = False
    s.verify = emu.ca_pem
    app = msal.PublicClientApplication(emu.client_id, authority=emu.authority,
                                       instance_discovery=False, http_client=s)
    assert "user_code" in app.initiate_device_flow(scopes=["Files.ReadWrite"])
    # 2. point the environment at system CAs + ours
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emu.ca_bundle)
    assert "user_code" in msal_public(emu).initiate_device_flow(scopes=["Files.ReadWrite"])
    # 3. plain requests: verify= per request always wins
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", system)
    assert requests.get(emu.graph_url + "/me/drive", verify=emu.ca_pem).status_code == 401
