"""graphemu: a strict local emulator of Microsoft Graph (OneDrive) and Microsoft identity.

Behaviour follows ``shared/GRAPH-NOTES.md`` (section numbers below refer to it). Three
HTTPS hosts on 127.0.0.1, each on its own port, like the real service:

* login  ``emu.authority_url``  OIDC discovery, device code, token, authorize
* Graph  ``emu.graph_url``      ``https://127.0.0.1:P/v1.0`` drives, items, sessions
* files  ``emu.files_url``      uploadUrls and downloadUrls (pre-authenticated)

Quick start::

    from tests.graphemu import GraphEmulator
    with GraphEmulator(tmp_path / "emu", mode="personal", seed=0,
                       device_code_interval=0) as emu:
        app = msal.PublicClientApplication(emu.client_id, authority=emu.authority,
                                           instance_discovery=False, verify=emu.ca_pem)
        flow = app.initiate_device_flow(scopes=["Files.ReadWrite"])
        emu.approve_device_code(flow["user_code"])        # or None: the latest
        token = app.acquire_token_by_device_flow(flow)["access_token"]
        requests.get(emu.graph_url + "/me/drive", verify=emu.ca_pem,
                     headers={"Authorization": "Bearer " + token})
        ...
        emu.assert_no_violations()

pytest: ``graph_emulator`` fixture in ``tests.graphemu.fixtures`` (options through
``@pytest.mark.graphemu(mode="business", ...)``).

TLS and clients -- what a client must do
----------------------------------------
The emulator makes its own CA (``emu.ca_pem``, kept in DATA/tls across restarts).
``REQUESTS_CA_BUNDLE`` (set on this machine) overrides ``Session.verify`` in requests:
requests only honours a CA given *per request* (``session.get(url, verify=ca)``), or a
Session with ``trust_env = False``. So a Graph client must pass ``verify=`` on every call
(or build its session with ``trust_env=False``). msal sets ``Session.verify`` only, so for
``msal.*ClientApplication(..., verify=emu.ca_pem)`` either unset ``REQUESTS_CA_BUNDLE`` and
``CURL_CA_BUNDLE`` (pytest ``monkeypatch.delenv``), or point ``REQUESTS_CA_BUNDLE`` at
``emu.ca_bundle`` (system CAs + ours), or hand msal ``http_client=`` a Session with
``trust_env=False`` and ``verify=emu.ca_pem``. msal needs ``instance_discovery=False``
(the authority host is not a Microsoft one).

Constructor and knobs
---------------------
``GraphEmulator(data_dir, mode="personal"|"business", seed=0, port=0, **options)``;
``port=N`` binds N (login), N+1 (Graph), N+2 (files); 0 picks free ports once and reuses
them after a restart. ``options`` are fields of ``EmulatorConfig`` (config.py), also
changeable at run time: ``emu.config.update(simple_upload_max=..., ...)``. The important
ones: ``access_token_lifetime``, ``device_code_interval`` (msal sleeps this between polls;
use 0 in tests), ``device_code_auto_approve_after``, ``strict`` (4 MiB simple upload),
``session_lifetime`` / ``session_hard_cap`` (sliding expiry; business 15 min / 24 h),
``session_default_conflict`` ("replace" as observed), ``single_session_per_item``,
``unaligned_fragment`` ("reject"), ``page_size``/``max_page_size``, ``quota_total``,
``recycle_bin_counts``, ``download_url_lifetime``, ``enforce_retry_after``,
``ru_budget_per_minute`` (SharePoint resource units per app: ``RateLimit-*`` headers from
80 %, 429 above the budget).

Test API (all thread-safe)
--------------------------
start() / stop() / restart() (reload from disk, same ports) / context manager.
Addresses: authority_url, authority (+tenant), graph_url, files_url, ca_pem, ca_bundle,
tenant, client_id (a registered public app), default_user ("alice@example.com"),
drive_id (the default user's drive), site_id / site_drive_id (business mode: site
"contoso.sharepoint.com:/sites/backups", documentLibrary drive).
Directory: register_app(client_id, secret=None, redirect_uris=None), add_user(upn).
Identity: approve_device_code(user_code=None, user=...), decline_device_code(),
revoke_tokens(user=None) (refresh + access), revoke_access_tokens(user=None),
expire_access_tokens(), access_token(user=..., scopes=...) (mint one without OAuth;
user=None: app-only), ``emu.authorize_deny = True`` (the /authorize page refuses),
``config.authorize_user``.
Drive: item(path) (driveItem JSON or None), exists(path), read_file(path) -> bytes,
list_dir(path), mkdir(path), put_file(path, data) (seed without HTTP), quota(),
set_quota(total), empty_recycle_bin(), upload_sessions(), expire_upload_sessions();
all take ``drive_id=None`` (default drive).
Time: ``emu.clock.advance(seconds)`` -- every expiry (tokens, device codes, sessions,
download URLs, skiptokens) uses this clock; real time keeps flowing too.
Faults: ``emu.faults`` -- see faults.py (scheduled rules and seeded rates).
Bookkeeping: ``emu.violations`` (list of {rule, request, endpoint, detail, t}),
violations_of(rule), assert_no_violations(ignore=()), clear_violations();
``emu.counters`` (Counter, 0 for anything never counted): ``requests``,
``requests.<endpoint>``, ``bytes_uploaded``, ``fragments_committed``,
``sessions_created`` / ``_completed`` / ``_cancelled`` / ``_resumed`` (status GET on a
session holding bytes), ``upload_status_requests``, ``simple_uploads``,
``bytes_downloaded`` (body bytes the download host sent: a range's, a truncated answer's
before the reset, none of a block the client hung up on), ``downloads``,
``tokens_issued``, ``tokens_refreshed``,
``device_codes_issued``, ``device_code_polls``, ``throttled``, ``faults_injected``,
``folders_created``, ``items_deleted``, ``graph_401``, ``status.<code>``,
``violations.<rule>``; ``emu.requests`` (per-request log: ``t`` arrival on the emulator
clock, ``monotonic``, host, method, path, label, status or "drop"/"reset", client,
faults, ``retry_not_before`` = the Retry-After gate in force when it arrived,
``sets_gate`` = the gate this answer set); ``emu.retry_after_violations``;
``emu.connections_accepted`` (TCP connections per host: keep-alive checks);
``emu.internal_errors`` (emulator bugs; the fixture asserts it stays empty).

Endpoint labels (for counters and fault rules): identity.openid, identity.devicecode,
identity.token, identity.authorize, identity.devicelogin; graph.me, graph.site,
graph.drives, graph.drive, graph.item.get, graph.item.patch, graph.item.delete,
graph.item.put (sourceUrl commit), graph.item.permanent_delete, graph.children.list,
graph.children.create, graph.content.get, graph.content.put, graph.session.create,
graph.invalid; upload.fragment, upload.status, upload.cancel, upload.commit,
download.get.

Violation rules recorded
------------------------
authorization_on_upload_url, authorization_on_download_url, missing_access_token,
expired_access_token (used past its own exp), missing_content_length,
chunked_transfer_encoding, bad_content_range (missing, malformed, ``*`` total),
fragment_total_mismatch, content_length_mismatch, fragment_too_large (>= 60 MiB),
unaligned_fragment, fragment_out_of_order, fragment_overlap, upload_url_modified (not
used verbatim), expired_upload_session (used past expirationDateTime),
expired_download_url, malformed_range (a Range that is not one bytes=A-B / A- / -N; the
whole file is sent, as RFC 9110 says), zero_byte_session, name_mismatch,
invalid_conflict_behavior, simple_upload_too_large, ignored_retry_after, reused_refresh_token,
device_poll_too_fast.

Throttling bookkeeping: after a 429/503/509 with Retry-After, every request of the same
app (client_id of the token, or of the token that created the upload session / minted
the download URL) arriving before the gate is an ``ignored_retry_after`` violation and,
with ``enforce_retry_after``, gets 429 again. Without Retry-After there is no gate unless
``missing_retry_after_wait`` is set. HTTP-date Retry-After values are on the emulator
clock: don't combine them with ``clock.advance``.

Clock caveat: ``expired_access_token`` means "used past its own exp on the emulator
clock". A test that advances the clock past the token lifetime while the client (msal)
keeps real time should expect it, ignore it, or give the client the same clock.

A non-final fragment is "aligned" when its length is a multiple of 320 KiB *or* it ends
on a 320 KiB boundary (so a client may re-align after the service kept a partial
fragment, GRAPH-NOTES 1.10 #75).
"""

from .config import FRAGMENT_MULTIPLE, Clock, EmulatorConfig
from .emulator import DEFAULT_CLIENT_ID, DEFAULT_USER, GraphEmulator
from .faults import FaultRule, Faults
from .quickxor import QuickXorHash, quickxor_b64, quickxor_file

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_USER",
    "FRAGMENT_MULTIPLE",
    "Clock",
    "EmulatorConfig",
    "FaultRule",
    "Faults",
    "GraphEmulator",
    "QuickXorHash",
    "quickxor_b64",
    "quickxor_file",
]
