"""The Microsoft identity platform subset: OIDC discovery, device code, token, authorize.

Token endpoint grants: device_code, refresh_token (rotating), client_credentials,
authorization_code (with PKCE). Errors use AAD's body: ``error``, ``error_description``
starting with ``AADSTSnnnnn:``, ``error_codes``, ``timestamp``, ``trace_id``,
``correlation_id``. AADSTS numbers the docs do not pin down are marked [inf].
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from .httpd import Request, Response

if TYPE_CHECKING:
    from .emulator import GraphEmulator

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
MSA_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
OIDC_SCOPES = {"openid", "profile", "offline_access", "email"}
GRAPH_PREFIX = "https://graph.microsoft.com/"
KNOWN_SCOPES = {
    "files.read", "files.read.all", "files.readwrite", "files.readwrite.all",
    "files.readwrite.appfolder", "sites.read.all", "sites.readwrite.all", "sites.selected",
    "sites.fullcontrol.all", "user.read", ".default",
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_jwt(claims: dict, secret: bytes) -> str:
    header = b64url(json.dumps({"typ": "JWT", "alg": "HS256", "kid": "graphemu"}).encode())
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(sig)}"


def read_jwt(token: str, secret: bytes) -> dict | None:
    """Claims of a token this emulator signed, or None if it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        sig = b64url_decode(parts[2])
        good = hmac.new(secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(sig, good):
            return None
        return json.loads(b64url_decode(parts[1]))
    except (ValueError, json.JSONDecodeError):
        return None


class Identity:
    def __init__(self, emu: GraphEmulator) -> None:
        self.emu = emu

    # ------------------------------------------------------------------ routing
    def route(self, req: Request):
        parts = [p for p in req.path.split("/") if p]
        if req.path == "/devicelogin":
            return "identity.devicelogin", self.devicelogin
        if len(parts) >= 2 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            return "identity.openid", self.openid_configuration
        if len(parts) == 4 and parts[1:3] == ["oauth2", "v2.0"]:
            action = parts[3]
            if action == "devicecode" and req.method == "POST":
                return "identity.devicecode", self.devicecode
            if action == "token" and req.method == "POST":
                return "identity.token", self.token
            if action == "authorize" and req.method == "GET":
                return "identity.authorize", self.authorize
        return "identity.unknown", self.not_found

    def tenant_of(self, req: Request) -> str:
        return req.path.strip("/").split("/", 1)[0]

    def tenant_ok(self, tenant: str) -> bool:
        emu = self.emu
        return tenant.lower() in {
            "common", "organizations", "consumers", emu.tenant.lower(), emu.tenant_domain,
        }

    # ------------------------------------------------------------------ helpers
    def oauth_error(self, req: Request, status: int, error: str, code: int, text: str,
                    **extra: Any) -> Response:
        now = self.emu.clock.now()
        ts = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(now))
        trace = str(uuid.uuid4())
        corr = req.client_request_id or str(uuid.uuid4())
        body = {
            "error": error,
            "error_description": f"AADSTS{code}: {text}\r\nTrace ID: {trace}\r\n"
                                 f"Correlation ID: {corr}\r\nTimestamp: {ts}",
            "error_codes": [code],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": corr,
            "error_uri": f"{self.emu.authority_url}/error?code={code}",
        }
        body.update(extra)
        return Response.json(status, body)

    def not_found(self, req: Request) -> Response:
        return Response.json(404, {"error": "not_found", "error_description": req.path})

    @staticmethod
    def normalize_scopes(scope: str) -> tuple[list[str], list[str]]:
        """(all requested scopes as given, unknown ones)."""
        given = [s for s in scope.split() if s]
        unknown = []
        for s in given:
            short = s[len(GRAPH_PREFIX):] if s.lower().startswith(GRAPH_PREFIX) else s
            if s in OIDC_SCOPES:
                continue
            if short.lower() not in KNOWN_SCOPES:
                unknown.append(s)
        return given, unknown

    def check_client(self, req: Request, form: dict, need_secret: bool = False):
        """The app record, or an error Response."""
        client_id = form.get("client_id", "")
        app = self.emu.apps.get(client_id)
        if app is None:
            return self.oauth_error(
                req, 400, "unauthorized_client", 700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.emu.tenant}'.")
        if "client_assertion" in form:
            problem = self.assertion_problem(req, form, app)
            if problem:
                return self.oauth_error(req, 401, "invalid_client", 700027, problem)
            return app
        secret = form.get("client_secret")
        if app.get("secret"):
            if secret is None:
                return self.oauth_error(
                    req, 401, "invalid_client", 7000218,
                    "The request body must contain the following parameter: "
                    "'client_assertion' or 'client_secret'.")
            if not hmac.compare_digest(secret, app["secret"]):
                return self.oauth_error(
                    req, 401, "invalid_client", 7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the "
                    "request is the client secret value, not the client secret ID.")
        elif secret is not None:
            return self.oauth_error(
                req, 401, "invalid_client", 700025,
                "Client is public so neither 'client_assertion' nor 'client_secret' "
                "should be presented.")
        elif need_secret:
            return self.oauth_error(
                req, 401, "invalid_client", 7000218,
                "The request body must contain the following parameter: "
                "'client_assertion' or 'client_secret'.")
        return app

    def assertion_problem(self, req: Request, form: dict, app: dict) -> str | None:
        """Why a certificate client assertion (RFC 7523 JWT, RS256/PS256, ``x5t`` or
        ``x5t#S256`` thumbprint header) is not acceptable, or None if it is."""
        from cryptography import x509
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        if form.get("client_assertion_type") != \
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return "The client_assertion_type is not supported."
        if not app.get("certificate"):
            return "Client assertion failed signature validation: the application has no " \
                   "certificate registered."
        cert = x509.load_pem_x509_certificate(app["certificate"].encode())
        try:
            head, body, sig = form["client_assertion"].split(".")
            header = json.loads(b64url_decode(head))
            claims = json.loads(b64url_decode(body))
            signature = b64url_decode(sig)
        except (ValueError, json.JSONDecodeError):
            return "The client assertion is not a well-formed JWT."
        thumbs = {"x5t": hashes.SHA1(), "x5t#S256": hashes.SHA256()}  # noqa: S303
        if not any(str(header.get(k, "")).rstrip("=") == b64url(cert.fingerprint(h))
                   for k, h in thumbs.items()):
            return "Client assertion contains an invalid signature: the certificate " \
                   "thumbprint does not match a registered certificate."
        pads = {"RS256": padding.PKCS1v15(),
                "PS256": padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO)}
        if header.get("alg") not in pads:
            return f"Client assertion algorithm {header.get('alg')!r} is not supported."
        try:
            cert.public_key().verify(signature, f"{head}.{body}".encode(),
                                     pads[header["alg"]], hashes.SHA256())
        except InvalidSignature:
            return "Client assertion contains an invalid signature."
        token_endpoint = self.emu.authority_url + req.path
        if claims.get("aud") != token_endpoint:
            return f"The audience claim must be {token_endpoint}."
        if claims.get("iss") != app["client_id"] or claims.get("sub") != app["client_id"]:
            return "The iss and sub claims must be the client_id."
        if float(claims.get("exp", 0)) <= self.emu.clock.now():
            return "The client assertion has expired."
        return None

    # ------------------------------------------------------------------ tokens
    def issue(self, req: Request, client_id: str, user: dict | None, scopes: list[str],
              with_refresh: bool, nonce: str | None = None, family: str | None = None) -> dict:
        """Mint a token response (caller holds emu.lock)."""
        emu = self.emu
        now = emu.clock.now()
        lifetime = int(emu.config.access_token_lifetime)
        sn = emu.next_serial("token_sn")
        graph_scopes = [s[len(GRAPH_PREFIX):] if s.lower().startswith(GRAPH_PREFIX) else s
                        for s in scopes if s not in OIDC_SCOPES]
        claims: dict[str, Any] = {
            "aud": GRAPH_APP_ID,
            "iss": f"https://sts.windows.net/{emu.tenant}/",
            "iat": int(now), "nbf": int(now), "exp": int(now + lifetime),
            "appid": client_id, "tid": emu.tenant, "ver": "1.0",
            "sn": sn, "jti": b64url(secrets.token_bytes(9)),
        }
        if user is None:
            claims.update(idtyp="app", oid=emu.apps[client_id]["oid"],
                          sub=emu.apps[client_id]["oid"],
                          roles=["Files.ReadWrite.All", "Sites.ReadWrite.All"])
        else:
            claims.update(idtyp="user", oid=user["oid"], sub=user["oid"], upn=user["upn"],
                          name=user["name"], scp=" ".join(graph_scopes))
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": make_jwt(claims, emu.secret),
        }
        if user is not None:
            body["scope"] = " ".join(s for s in scopes if s != "offline_access")
            home_tid = user["tid"]
            id_claims = {
                "aud": client_id, "iss": f"{emu.authority_url}/{home_tid}/v2.0",
                "iat": int(now), "nbf": int(now), "exp": int(now + 3600),
                "name": user["name"], "oid": user["oid"],
                "sub": b64url(hashlib.sha256((user["oid"] + client_id).encode()).digest()),
                "preferred_username": user["upn"], "tid": home_tid, "ver": "2.0",
            }
            if nonce:
                id_claims["nonce"] = nonce
            body["id_token"] = make_jwt(id_claims, emu.secret)
            body["client_info"] = b64url(
                json.dumps({"uid": user["oid"], "utid": home_tid}).encode())
            if with_refresh:
                rt = "0.A" + b64url(secrets.token_bytes(48))
                rec = {
                    "client_id": client_id, "user": user["upn"], "scopes": scopes,
                    "issued": now, "expires": now + emu.config.refresh_token_lifetime,
                    "revoked": False, "superseded": False,
                    "family": family or b64url(secrets.token_bytes(6)),
                }
                emu.refresh_tokens[rt] = rec
                emu.store.put("rt", rt, rec)
                body["refresh_token"] = rt
                body["refresh_token_expires_in"] = int(emu.config.refresh_token_lifetime)
        emu.counters["tokens_issued"] += 1
        emu.issued_tokens.append({"t": now, "client_id": client_id,
                                  "user": user["upn"] if user else None, "sn": sn})
        return body

    def validate_access_token(self, header: str | None) -> tuple[dict | None, str | None]:
        """(claims, problem).

        problem: None, 'missing', 'malformed', 'expired' (past its own exp: the client's
        fault), 'forced_expired' (``expire_access_tokens()``) or 'revoked'."""
        if not header:
            return None, "missing"
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, "malformed"
        claims = read_jwt(token.strip(), self.emu.secret)
        if claims is None or claims.get("aud") != GRAPH_APP_ID:
            return None, "malformed"
        emu = self.emu
        if claims["sn"] < emu.meta.get("min_sn", 0):
            return claims, "revoked"
        if claims["sn"] < emu.meta.get("expire_sn", 0):
            return claims, "forced_expired"
        if claims.get("idtyp") == "user":
            user = emu.users.get(claims.get("upn", "").lower())
            if user is None or claims["sn"] < user.get("min_sn", 0):
                return claims, "revoked"
        else:
            app = emu.apps.get(claims.get("appid"))
            if app is None or claims["sn"] < app.get("min_sn", 0):
                return claims, "revoked"
        if emu.clock.now() >= claims["exp"]:
            return claims, "expired"
        return claims, None

    # ------------------------------------------------------------------ endpoints
    def openid_configuration(self, req: Request) -> Response:
        tenant = self.tenant_of(req)
        if not self.tenant_ok(tenant):
            return self.oauth_error(req, 400, "invalid_tenant", 90002,
                                    f"Tenant '{tenant}' not found.")
        base = f"{self.emu.authority_url}/{tenant}"
        issuer_tid = self.emu.tenant if tenant not in ("common", "organizations") \
            else "{tenantid}"
        return Response.json(200, {
            "issuer": f"{self.emu.authority_url}/{issuer_tid}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token",
                                         "id_token token"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post",
                                                      "private_key_jwt",
                                                      "client_secret_basic"],
            "tenant_region_scope": None,
            "cloud_instance_name": "microsoftonline.com",
            "msgraph_host": urlsplit(self.emu.graph_url).netloc,
        })

    def preamble(self, req: Request, need_secret: bool = False) -> tuple[dict, dict] | Response:
        """(form, app) of a POST to the devicecode/token endpoints, or the error."""
        form = req.form()
        tenant = self.tenant_of(req)
        if not self.tenant_ok(tenant):
            return self.oauth_error(req, 400, "invalid_tenant", 90002,
                                    f"Tenant '{tenant}' not found.")
        app = self.check_client(req, form, need_secret)
        if isinstance(app, Response):
            return app
        return form, app

    def devicecode(self, req: Request) -> Response:
        emu = self.emu
        with emu.lock:
            pre = self.preamble(req)
            if isinstance(pre, Response):
                return pre
            form, _ = pre
            scopes, unknown = self.normalize_scopes(form.get("scope", ""))
            if unknown:
                return self.oauth_error(req, 400, "invalid_scope", 70011,
                                        f"The provided value for the input parameter "
                                        f"'scope' is not valid. The scope '{unknown[0]}' "
                                        f"does not exist.")
            now = emu.clock.now()
            alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
            user_code = "".join(emu.rng.choice(alphabet) for _ in range(9))
            device_code = "DAQABIQEAAAB" + b64url(secrets.token_bytes(48))
            rec = {
                "device_code": device_code, "user_code": user_code,
                "client_id": form["client_id"], "scopes": scopes, "issued": now,
                "expires": now + emu.config.device_code_lifetime, "status": "pending",
                "user": None, "polls": 0, "last_poll": None,
            }
            emu.device_codes[device_code] = rec
            emu.store.put("device", device_code, rec)
            emu.counters["device_codes_issued"] += 1
        uri = f"{emu.authority_url}/devicelogin"
        return Response.json(200, {
            "user_code": user_code,
            "device_code": device_code,
            "verification_uri": uri,
            "expires_in": int(emu.config.device_code_lifetime),
            "interval": int(emu.config.device_code_interval),
            "message": f"To sign in, use a web browser to open the page {uri} and enter the "
                       f"code {user_code} to authenticate.",
        })

    def token(self, req: Request) -> Response:
        grant = req.form().get("grant_type", "")
        grants = {DEVICE_GRANT: self._grant_device, "refresh_token": self._grant_refresh,
                  "client_credentials": self._grant_client,
                  "authorization_code": self._grant_code}
        if grant in grants:
            with self.emu.lock:
                pre = self.preamble(req, need_secret=grant == "client_credentials")
                if isinstance(pre, Response):
                    return pre
                return grants[grant](req, pre[0])
        return self.oauth_error(req, 400, "unsupported_grant_type", 70003,
                                f"The app requested an unsupported grant type '{grant}'.")

    def _grant_device(self, req: Request, form: dict) -> Response:
        emu = self.emu
        rec = emu.device_codes.get(form.get("device_code", ""))
        if rec is None or rec["client_id"] != form.get("client_id"):
            return self.oauth_error(req, 400, "bad_verification_code", 70019,
                                    "The device_code was not recognized.")  # [inf] number
        now = emu.clock.now()
        emu.counters["device_code_polls"] += 1
        interval = emu.config.device_code_interval
        if rec["last_poll"] is not None and interval and \
                now - rec["last_poll"] < interval * 0.9:
            emu.violation("device_poll_too_fast", req,
                          f"polled {now - rec['last_poll']:.2f}s after the previous poll; "
                          f"interval is {interval}s")
        rec["last_poll"] = now
        rec["polls"] += 1
        if rec["status"] == "pending" and now >= rec["expires"]:
            rec["status"] = "expired"
        auto = emu.config.device_code_auto_approve_after
        if rec["status"] == "pending" and auto is not None and rec["polls"] > auto:
            rec["status"], rec["user"] = "approved", emu.default_user
        emu.store.put("device", rec["device_code"], rec)
        status = rec["status"]
        if status == "pending":
            return self.oauth_error(req, 400, "authorization_pending", 70016,
                                    "OAuth 2.0 device flow error. Authorization is pending. "
                                    "Continue polling.")
        if status == "expired":
            return self.oauth_error(req, 400, "expired_token", 70020,
                                    "The provided value for the input parameter "
                                    "'device_code' is not valid. This device code has "
                                    "expired.")
        if status == "declined":
            return self.oauth_error(req, 400, "authorization_declined", 70000,
                                    "The user declined the authorization request.")
        if status == "redeemed":
            return self.oauth_error(req, 400, "invalid_grant", 70000,
                                    "The provided value for the 'device_code' is not valid. "
                                    "It was already redeemed.")
        user = emu.users[rec["user"]]
        rec["status"] = "redeemed"
        emu.store.put("device", rec["device_code"], rec)
        body = self.issue(req, rec["client_id"], user, rec["scopes"],
                          "offline_access" in rec["scopes"])
        return Response.json(200, body)

    def _grant_refresh(self, req: Request, form: dict) -> Response:
        emu = self.emu
        token = form.get("refresh_token", "")
        rec = emu.refresh_tokens.get(token)
        now = emu.clock.now()
        if req.fault("revoke_refresh") and rec is not None:
            emu.revoke_tokens(rec["user"])
        if req.fault("mfa_required"):
            return self.oauth_error(
                req, 400, "invalid_grant", 50076,
                "Due to a configuration change made by your administrator, or because you "
                "moved to a new location, you must use multi-factor authentication to "
                "access '00000003-0000-0000-c000-000000000000'.", suberror="basic_action")
        if rec is None:
            return self.oauth_error(req, 400, "invalid_grant", 9002313,
                                    "Invalid request. Request is malformed or invalid.")
        if rec["client_id"] != form.get("client_id"):
            return self.oauth_error(req, 400, "invalid_grant", 70000,
                                    "The refresh token was issued to a different client.")
        if rec["revoked"]:
            return self.oauth_error(
                req, 400, "invalid_grant", 50173,
                "The provided grant has expired due to it being revoked, a fresh auth token "
                "is needed. The user might have changed or reset their password.",
                suberror="bad_token")
        if now >= rec["expires"]:
            return self.oauth_error(
                req, 400, "invalid_grant", 700082,
                "The refresh token has expired due to inactivity.", suberror="bad_token")
        if rec["superseded"]:
            emu.violation("reused_refresh_token", req,
                          "redeemed a refresh token that was already rotated; store the "
                          "new refresh_token from every token response")
            if emu.config.refresh_token_single_use:
                return self.oauth_error(req, 400, "invalid_grant", 70000,
                                        "The refresh token has already been used.")
        scopes, unknown = self.normalize_scopes(form.get("scope", ""))
        if unknown:
            return self.oauth_error(req, 400, "invalid_scope", 70011,
                                    f"The scope '{unknown[0]}' does not exist.")
        if not [s for s in scopes if s not in OIDC_SCOPES]:
            scopes = rec["scopes"]
        user = emu.users[rec["user"]]
        rec["superseded"] = True
        emu.store.put("rt", token, rec)
        body = self.issue(req, rec["client_id"], user, scopes, True, family=rec["family"])
        emu.counters["tokens_refreshed"] += 1
        return Response.json(200, body)

    def _grant_client(self, req: Request, form: dict) -> Response:
        emu = self.emu
        if emu.config.mode == "personal":
            return self.oauth_error(
                req, 400, "unauthorized_client", 700016,
                "App-only tokens are not available for personal Microsoft accounts.")  # [inf]
        scopes = form.get("scope", "").split()
        if not scopes or not all(s.endswith("/.default") for s in scopes):
            return self.oauth_error(
                req, 400, "invalid_scope", 1002012,
                f"The provided value for scope {form.get('scope', '')} is not valid. Client "
                f"credential flows must have a scope value with /.default suffixed to the "
                f"resource identifier (application ID URI).")
        body = self.issue(req, form["client_id"], None, scopes, False)
        return Response.json(200, body)

    def _grant_code(self, req: Request, form: dict) -> Response:
        emu = self.emu
        rec = emu.auth_codes.get(form.get("code", ""))
        now = emu.clock.now()
        if rec is None or rec["client_id"] != form.get("client_id"):
            return self.oauth_error(req, 400, "invalid_grant", 9002313,
                                    "Invalid request. Request is malformed or invalid.")
        if rec["used"]:
            return self.oauth_error(req, 400, "invalid_grant", 54005,
                                    "OAuth2 Authorization code was already redeemed, please "
                                    "retry with a new valid code or use an existing refresh "
                                    "token.")
        if now >= rec["expires"]:
            return self.oauth_error(req, 400, "invalid_grant", 70008,
                                    "The provided authorization code or refresh token has "
                                    "expired due to inactivity.")
        if form.get("redirect_uri") != rec["redirect_uri"]:
            return self.oauth_error(req, 400, "invalid_grant", 500112,
                                    "The reply address does not match the reply address "
                                    "provided when requesting the authorization code.")
        challenge = rec.get("code_challenge")
        if challenge:
            verifier = form.get("code_verifier", "")
            if rec.get("code_challenge_method", "plain") == "S256":
                computed = b64url(hashlib.sha256(verifier.encode()).digest())
            else:
                computed = verifier
            if computed != challenge:
                return self.oauth_error(req, 400, "invalid_grant", 501481,
                                        "The Code_Verifier does not match the code_challenge "
                                        "supplied in the authorization request.")
        rec["used"] = True
        emu.store.put("authcode", form["code"], rec)
        user = emu.users[rec["user"]]
        body = self.issue(req, rec["client_id"], user, rec["scopes"],
                          "offline_access" in rec["scopes"], nonce=rec.get("nonce"))
        return Response.json(200, body)

    def authorize(self, req: Request) -> Response:
        emu = self.emu
        q = req.query
        with emu.lock:
            app = emu.apps.get(q.get("client_id", ""))
            if app is None:
                return Response(400, b"AADSTS700016: Application not found in the directory",
                                [("Content-Type", "text/plain")])
            redirect = q.get("redirect_uri", "")
            allowed = app.get("redirect_uris")
            if not redirect or (allowed is not None and redirect not in allowed):
                return Response(400, b"AADSTS50011: The redirect URI specified in the request "
                                     b"does not match the redirect URIs configured for the "
                                     b"application.", [("Content-Type", "text/plain")])
            sep = "&" if "?" in redirect else "?"
            params: dict[str, str] = {}
            if q.get("response_type") != "code":
                params = {"error": "unsupported_response_type",
                          "error_description": "AADSTS700054: response_type is not enabled"}
            elif emu.authorize_deny:
                params = {"error": "access_denied",
                          "error_description": "AADSTS65004: User declined to consent to "
                                               "access the app."}
            else:
                scopes, unknown = self.normalize_scopes(q.get("scope", ""))
                if unknown:
                    params = {"error": "invalid_scope",
                              "error_description": f"AADSTS70011: The scope '{unknown[0]}' "
                                                   f"does not exist."}
                else:
                    code = "M." + b64url(secrets.token_bytes(32))
                    upn = (emu.config.authorize_user or emu.default_user).lower()
                    rec = {
                        "client_id": q["client_id"], "redirect_uri": redirect,
                        "scopes": scopes, "user": upn, "nonce": q.get("nonce"),
                        "code_challenge": q.get("code_challenge"),
                        "code_challenge_method": q.get("code_challenge_method", "plain"),
                        "expires": emu.clock.now() + emu.config.auth_code_lifetime,
                        "used": False,
                    }
                    emu.auth_codes[code] = rec
                    emu.store.put("authcode", code, rec)
                    params = {"code": code}
            if "state" in q:
                params["state"] = q["state"]
        location = redirect + sep + urlencode(params)
        return Response(302, b"", [("Location", location)])

    def devicelogin(self, req: Request) -> Response:
        """A tiny page for a human running the emulator by hand."""
        if req.method == "POST":
            form = req.form()
            decline = form.get("decision") == "decline"
            try:
                if decline:
                    self.emu.decline_device_code(form.get("user_code") or None)
                else:
                    self.emu.approve_device_code(form.get("user_code") or None,
                                                 form.get("user") or None)
                text = "Declined." if decline else "You are signed in. Return to your device."
            except KeyError as e:
                text = f"No such pending code: {html.escape(str(e))}"
            page = f"<html><body><p>{text}</p></body></html>"
        else:
            page = ("<html><body><h1>graphemu device login</h1><form method='post'>"
                    "Code: <input name='user_code'> User: <input name='user' value='"
                    + html.escape(self.emu.default_user) + "'>"
                    "<button name='decision' value='approve'>Approve</button>"
                    "<button name='decision' value='decline'>Decline</button>"
                    "</form></body></html>")
        return Response(200, page.encode(), [("Content-Type", "text/html; charset=utf-8")])
