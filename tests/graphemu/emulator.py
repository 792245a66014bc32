"""GraphEmulator: wires the three HTTPS hosts, the state, faults and bookkeeping."""

from __future__ import annotations

import collections
import email.utils
import math
import random
import secrets
import threading
import time
import traceback
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .config import Clock, EmulatorConfig
from .drive import DriveModel, GraphError, hash_file
from .faults import Faults
from .files import Files
from .graph import Graph, error_response, from_exc, sign_blob, verify_blob
from .httpd import BadFraming, EmuHTTPServer, Request, Response
from .identity import MSA_TENANT, Identity, read_jwt
from .store import Store
from .tls import TLSFiles

DEFAULT_CLIENT_ID = "b1f6c7e2-5d43-4a8e-9c1d-0d5b0ac0ffee"
DEFAULT_USER = "alice@example.com"
TENANT_DOMAIN = "contoso.onmicrosoft.com"
SITE_HOST = "contoso.sharepoint.com"


class Counters(collections.Counter):
    """A Counter that answers 0 for anything never counted (see the package docstring)."""


class GraphEmulator:
    """A strict local stand-in for Microsoft Graph (OneDrive) and the identity platform.

    See the package docstring (``tests.graphemu``) for the API and the rules enforced.
    """

    def __init__(self, data_dir: str | Path, mode: str = "personal", seed: int = 0,
                 port: int = 0, **options: Any) -> None:
        self.data_dir = Path(data_dir)
        self.seed = seed
        self.requested_port = port
        self.config = EmulatorConfig(mode=mode, **options).resolve()
        self.lock = threading.RLock()
        self.faults = Faults(seed)
        self.counters: Counters = Counters()
        self._violations: list[dict] = []
        self._requests: list[dict] = []
        self.issued_tokens: list[dict] = []
        self.internal_errors: list[str] = []
        self.gates: dict[str | None, float] = {}
        self.ru_used: dict[tuple[str | None, int], int] = {}
        self.authorize_deny = False
        self.servers: dict[str, EmuHTTPServer] = {}
        self.tls = TLSFiles(self.data_dir / "tls")
        self.model = DriveModel(self)
        self.identity = Identity(self)
        self.graph = Graph(self)
        self.files = Files(self)
        self._stopped = False
        self._load()

    # ================================================================ state
    def _load(self) -> None:
        self.store = Store(self.data_dir)
        meta = self.store.get("meta", "meta") or {}
        if meta.get("mode") and meta["mode"] != self.config.mode:
            raise ValueError(f"{self.data_dir} holds a {meta['mode']} drive, not "
                             f"{self.config.mode}")
        meta.setdefault("mode", self.config.mode)
        meta.setdefault("secret", secrets.token_hex(32))
        meta["boots"] = meta.get("boots", 0) + 1
        self.meta = meta
        self.secret = bytes.fromhex(meta["secret"])
        self.rng = random.Random(f"{self.seed}/{meta['boots']}")
        self.clock = Clock(offset=meta.get("clock_offset", 0.0), on_change=self._clock_moved)
        self.apps = dict(self.store.all("app"))
        self.users = dict(self.store.all("user"))
        self.sites = dict(self.store.all("site"))
        self.drives = dict(self.store.all("drive"))
        self.items = dict(self.store.all("item"))
        self.children: dict[str, dict[str, str]] = {}
        for item in self.items.values():
            self.model.index(item)
        self.sessions = dict(self.store.all("session"))
        for s in self.sessions.values():  # bytes beyond what was acknowledged are gone
            part = self.store.part_path(s["id"])
            if not part.exists():
                part.write_bytes(b"")
            with open(part, "r+b") as f:
                f.truncate(s["received"])
        self.refresh_tokens = dict(self.store.all("rt"))
        self.device_codes = dict(self.store.all("device"))
        self.auth_codes = dict(self.store.all("authcode"))
        if "tenant" not in meta:
            meta["tenant"] = MSA_TENANT if self.config.mode == "personal" else \
                str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        self.tenant: str = meta["tenant"]
        self.tenant_domain = TENANT_DOMAIN
        self._save_meta()
        with self.lock:
            if DEFAULT_CLIENT_ID not in self.apps:
                self.register_app(DEFAULT_CLIENT_ID)
            if DEFAULT_USER not in self.users:
                self.add_user(DEFAULT_USER, "Alice Example")
            if self.config.mode == "business" and not self.sites:
                self._add_site("root", "", "Communication site")
                self._add_site("backups", "/sites/backups", "Backups")

    def _save_meta(self) -> None:
        self.store.put("meta", "meta", self.meta)

    def _clock_moved(self, offset: float) -> None:
        with self.lock:
            self.meta["clock_offset"] = offset
            self._save_meta()

    def next_serial(self, name: str) -> int:
        with self.lock:
            n = self.meta.get(name, 0) + 1
            self.meta[name] = n
            self._save_meta()
            return n

    def sign_blob(self, purpose: str, obj: dict) -> str:
        return sign_blob(self.secret, purpose, obj)

    def verify_blob(self, purpose: str, token: str) -> dict | None:
        return verify_blob(self.secret, purpose, token)

    def hashes_for(self, path: Path) -> dict:
        return hash_file(path, self.config.mode == "personal")

    def _add_site(self, key: str, path: str, name: str) -> dict:
        g1 = uuid.UUID(int=self.rng.getrandbits(128), version=4)
        g2 = uuid.UUID(int=self.rng.getrandbits(128), version=4)
        site_id = f"{SITE_HOST},{g1},{g2}"
        site = {"id": site_id, "key": key, "hostname": SITE_HOST, "path": path, "name": name}
        drive = self.model.create_drive("documentLibrary", {"site": site_id, "name": name},
                                        name="Documents")
        site["drive"] = drive["id"]
        self.sites[site_id] = site
        self.store.put("site", site_id, site)
        return site

    # ================================================================ lifecycle
    def start(self) -> GraphEmulator:
        if self.servers:
            return self
        if self._stopped:  # start() after stop(): reload from disk like a new process
            self._load()
            self._stopped = False
        ctx = self.tls.server_context()
        saved = self.meta.get("ports") or {}
        kinds = ("login", "graph", "files")
        for i, kind in enumerate(kinds):
            want = self.requested_port + i if self.requested_port else saved.get(kind, 0)
            try:
                server = EmuHTTPServer(want, kind, ctx, self._serve)
            except OSError:
                if self.requested_port:
                    raise
                server = EmuHTTPServer(0, kind, ctx, self._serve)
            self.servers[kind] = server
        self.meta["ports"] = {k: s.port for k, s in self.servers.items()}
        self._save_meta()
        for server in self.servers.values():
            server.start()
        return self

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers = {}
        self.store.close()
        self._stopped = True

    def restart(self) -> GraphEmulator:
        """Stop, reload everything from the data directory, start on the same ports.

        Counters, violations and the request log of this object are kept; fault rules
        too. What survives is exactly what a new process would see.
        """
        self.stop()
        return self.start()

    def __enter__(self) -> GraphEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ================================================================ addresses
    def _port(self, kind: str) -> int:
        if kind in self.servers:
            return self.servers[kind].port
        return (self.meta.get("ports") or {}).get(kind, 0)

    @property
    def authority_url(self) -> str:
        """``https://127.0.0.1:PORT`` of the login host; clients append ``/<tenant>``."""
        return f"https://127.0.0.1:{self._port('login')}"

    @property
    def authority(self) -> str:
        """``authority_url`` + ``/<tenant>``: what msal's ``authority=`` wants."""
        return f"{self.authority_url}/{self.tenant}"

    @property
    def graph_url(self) -> str:
        return f"https://127.0.0.1:{self._port('graph')}/v1.0"

    @property
    def files_url(self) -> str:
        return f"https://127.0.0.1:{self._port('files')}"

    @property
    def ca_pem(self) -> str:
        return str(self.tls.ca_pem)

    @property
    def ca_bundle(self) -> str:
        """The system CAs plus ours, for REQUESTS_CA_BUNDLE-style configuration."""
        return str(self.tls.bundle)

    @property
    def client_id(self) -> str:
        return DEFAULT_CLIENT_ID

    @property
    def default_user(self) -> str:
        return DEFAULT_USER

    @property
    def drive_id(self) -> str:
        return self.users[DEFAULT_USER]["drive"]

    @property
    def site_id(self) -> str | None:
        site = next((s for s in self.sites.values() if s["key"] == "backups"), None)
        return site["id"] if site else None

    @property
    def site_drive_id(self) -> str | None:
        site = next((s for s in self.sites.values() if s["key"] == "backups"), None)
        return site["drive"] if site else None

    # ================================================================ directory
    def register_app(self, client_id: str, secret: str | None = None,
                     redirect_uris: Iterable[str] | None = None,
                     certificate: str | None = None) -> dict:
        """Register an app; with ``secret`` it is confidential (secret required); with
        ``certificate`` (PEM) it may authenticate with a signed client assertion."""
        with self.lock:
            app = {"client_id": client_id, "secret": secret, "certificate": certificate,
                   "redirect_uris": list(redirect_uris) if redirect_uris else None,
                   "oid": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                   "min_sn": 0}
            self.apps[client_id] = app
            self.store.put("app", client_id, app)
            return app

    def add_user(self, upn: str, name: str | None = None) -> dict:
        """Create a user with their own drive (personal or business per mode)."""
        with self.lock:
            upn = upn.lower()
            if upn in self.users:
                return self.users[upn]
            oid = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
            if self.config.mode == "personal":
                oid = "00000000-0000-0000-" + oid[-17:]  # MSA-style oid
            user = {"upn": upn, "name": name or upn.split("@")[0].title(), "oid": oid,
                    "tid": self.tenant, "min_sn": 0}
            self.users[upn] = user
            drive_type = "personal" if self.config.mode == "personal" else "business"
            drive = self.model.create_drive(drive_type, {"upn": upn, "oid": oid,
                                                         "name": user["name"]})
            user["drive"] = drive["id"]
            self.store.put("user", upn, user)
            return user

    def find_user(self, key: str) -> dict | None:
        key = key.lower()
        return self.users.get(key) or next(
            (u for u in self.users.values() if u["oid"].lower() == key), None)

    def find_site(self, key: str | None) -> dict | None:
        if key is None:
            return None
        if key.lower() == "root":
            return next((s for s in self.sites.values() if s["key"] == "root"), None)
        return next((s for s in self.sites.values() if s["id"].lower() == key.lower()), None)

    def find_site_by_path(self, host: str, path: str) -> dict | None:
        return next((s for s in self.sites.values() if s["hostname"] == host.lower()
                     and s["path"].lower() == path.lower()), None)

    # ================================================================ identity controls
    def _pending_device(self, user_code: str | None) -> dict:
        pending = [d for d in self.device_codes.values() if d["status"] == "pending"
                   and self.clock.now() < d["expires"]]
        if user_code is not None:
            pending = [d for d in pending if d["user_code"] == user_code.strip().upper()]
        if not pending:
            raise KeyError(user_code or "no pending device code")
        return max(pending, key=lambda d: d["issued"])

    def approve_device_code(self, user_code: str | None = None,
                            user: str | None = DEFAULT_USER) -> str:
        """Sign ``user`` in for a pending device code (None: the latest); returns the code."""
        with self.lock:
            rec = self._pending_device(user_code)
            rec["status"] = "approved"
            rec["user"] = self.add_user(user or DEFAULT_USER)["upn"]
            self.store.put("device", rec["device_code"], rec)
            return rec["user_code"]

    def decline_device_code(self, user_code: str | None = None) -> str:
        with self.lock:
            rec = self._pending_device(user_code)
            rec["status"] = "declined"
            self.store.put("device", rec["device_code"], rec)
            return rec["user_code"]

    def revoke_access_tokens(self, user: str | None = None) -> None:
        """Access tokens issued so far (to ``user``, or everyone) stop working: 401."""
        with self.lock:
            cut = self.meta.get("token_sn", 0) + 1
            if user is None:
                self.meta["min_sn"] = cut
                self._save_meta()
            else:
                rec = self.users[user.lower()]
                rec["min_sn"] = cut
                self.store.put("user", rec["upn"], rec)

    def revoke_tokens(self, user: str | None = None) -> None:
        """Revoke refresh tokens and access tokens of ``user`` (None: everyone's)."""
        with self.lock:
            self.revoke_access_tokens(user)
            for rt, rec in self.refresh_tokens.items():
                if user is None or rec["user"] == user.lower():
                    rec["revoked"] = True
                    self.store.put("rt", rt, rec)

    def expire_access_tokens(self) -> None:
        """Every access token issued so far counts as expired (clients must refresh)."""
        with self.lock:
            self.meta["expire_sn"] = self.meta.get("token_sn", 0) + 1
            self._save_meta()

    def access_token(self, user: str | None = DEFAULT_USER, client_id: str | None = None,
                     scopes: str = "Files.ReadWrite.All") -> str:
        """Mint an access token directly (no OAuth round trip). ``user=None``: app-only."""
        cid = client_id or DEFAULT_CLIENT_ID
        fake = Request("login", "POST", "/", "/", "", {}, {}, b"", False, 0, 0, False,
                       self.clock.now())
        with self.lock:
            u = self.add_user(user) if user else None
            body = self.identity.issue(fake, cid, u, scopes.split(), False)
        return body["access_token"]

    def token_claims(self, token: str) -> dict | None:
        return read_jwt(token, self.secret)

    # ================================================================ drive controls
    def expire_upload_sessions(self) -> None:
        with self.lock:
            for s in self.sessions.values():
                s["expires"], s["forced_expiry"] = self.clock.now() - 1, True
                self.files.save(s)

    def upload_sessions(self) -> list[dict]:
        with self.lock:
            return [dict(s) for s in self.sessions.values()]

    def _drive(self, drive_id: str | None) -> dict:
        return self.drives[drive_id or self.drive_id]

    def set_quota(self, total: int | None, drive_id: str | None = None) -> None:
        """Quota total in bytes for a drive (None: back to config.quota_total)."""
        with self.lock:
            drive = self._drive(drive_id)
            drive["quota_total"] = total
            self.model.save_drive(drive)

    def quota(self, drive_id: str | None = None) -> dict:
        with self.lock:
            return self.model.quota(self._drive(drive_id))

    def empty_recycle_bin(self, drive_id: str | None = None) -> None:
        with self.lock:
            self.model.empty_recycle_bin(self._drive(drive_id))

    def _segments(self, path: str) -> list[str]:
        return [p for p in path.split("/") if p]

    def _item(self, path: str, drive_id: str | None) -> dict | None:
        drive = self._drive(drive_id)
        return self.model.resolve(self.items[drive["root"]], self._segments(path))

    def item(self, path: str, drive_id: str | None = None) -> dict | None:
        """The driveItem JSON of ``path`` ('/a/b.bin'), or None."""
        with self.lock:
            it = self._item(path, drive_id)
            return self.model.render(it) if it else None

    def exists(self, path: str, drive_id: str | None = None) -> bool:
        with self.lock:
            return self._item(path, drive_id) is not None

    def read_file(self, path: str, drive_id: str | None = None) -> bytes:
        with self.lock:
            it = self._item(path, drive_id)
            if it is None or it["folder"]:
                raise FileNotFoundError(path)
            return self.store.blob_path(it["id"]).read_bytes()

    def list_dir(self, path: str = "/", drive_id: str | None = None) -> list[str]:
        with self.lock:
            it = self._item(path, drive_id)
            if it is None or not it["folder"]:
                raise FileNotFoundError(path)
            return sorted(c["name"] for c in self.model.children_of(it))

    def mkdir(self, path: str, drive_id: str | None = None) -> dict:
        with self.lock:
            root = self.items[self._drive(drive_id)["root"]]
            return self.model.render(self.model.ensure_folders(root, self._segments(path),
                                                               True))

    def put_file(self, path: str, data: bytes, drive_id: str | None = None) -> dict:
        """Seed a file directly (no HTTP, no counters); parents are created."""
        with self.lock:
            drive = self._drive(drive_id)
            segs = self._segments(path)
            parent = self.model.ensure_folders(self.items[drive["root"]], segs[:-1], True)
            item = self.model.child(parent, segs[-1])
            if item is None:
                item = self.model.new_item(drive, parent, segs[-1], False, self.clock.now())
            tmp = self.store.part_path("seed-" + secrets.token_hex(8))
            tmp.write_bytes(data)
            self.model.set_content(item, tmp, len(data), self.hashes_for(tmp))
            return self.model.render(item)

    # ================================================================ bookkeeping
    def count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counters[key] += n

    def violation(self, rule: str, req: Request, detail: str) -> None:
        with self.lock:
            self._violations.append({"rule": rule, "request": req.describe(),
                                     "endpoint": req.label, "detail": detail,
                                     "t": req.arrived})
            self.counters[f"violations.{rule}"] += 1

    @property
    def violations(self) -> list[dict]:
        """Every rule a client broke, in order: dicts with rule, request, endpoint, detail."""
        with self.lock:
            return list(self._violations)

    def violations_of(self, rule: str) -> list[dict]:
        return [v for v in self.violations if v["rule"] == rule]

    def clear_violations(self) -> None:
        with self.lock:
            self._violations.clear()

    def assert_no_violations(self, ignore: Iterable[str] = ()) -> None:
        skip = set(ignore)
        bad = [v for v in self.violations if v["rule"] not in skip]
        assert not bad, "client broke Graph rules:\n" + "\n".join(
            f"  {v['rule']}: {v['request']} -- {v['detail']}" for v in bad)

    @property
    def requests(self) -> list[dict]:
        """Log of every request: t (emulator clock), host, method, path, label, status,
        client, faults, retry_not_before (the throttle gate in force when it arrived),
        sets_gate, user_agent."""
        with self.lock:
            return list(self._requests)

    @property
    def connections_accepted(self) -> dict[str, int]:
        """TCP connections accepted per host since start() (keep-alive checks)."""
        return {kind: server.accepted for kind, server in self.servers.items()}

    @property
    def retry_after_violations(self) -> int:
        return self.counters["violations.ignored_retry_after"]

    # ================================================================ request pipeline
    def _serve(self, handler, kind: str) -> None:
        arrived = self.clock.now()
        try:
            req = handler.read_request(kind, arrived)
        except BadFraming as e:
            handler.close_connection = True
            handler.send(Response(400, str(e).encode(), [("Content-Type", "text/plain")]))
            return
        req.request_id = str(uuid.uuid4())
        req.client_request_id = req.header("client-request-id") or ""
        try:
            resp = self._process(req)
        except Exception:  # noqa: BLE001 - an emulator bug must be visible, not a hung client
            self.internal_errors.append(traceback.format_exc())
            resp = error_response(req, 500, "generalException", "graphemu internal error")
        if resp.action is None:
            for name, value in req.meta.get("ratelimit", ()):
                resp.set_header(name, value)
            if kind != "login":
                resp.set_header("request-id", req.request_id)
                if req.client_request_id:
                    resp.set_header("client-request-id", req.client_request_id)
            gate = self._throttle_gate(req, resp)
            entry_gate = gate
        else:
            entry_gate = None
        with self.lock:
            self._requests.append({
                "t": arrived, "monotonic": time.monotonic(), "host": kind,
                "method": req.method, "path": req.path,
                "label": req.label, "status": resp.status if resp.action is None
                else resp.action, "client": req.client,
                "faults": [f.action for f in req.faults],
                "retry_not_before": req.meta.get("gate"), "sets_gate": entry_gate,
                "user_agent": req.header("User-Agent"),
            })
        delay = next((f for f in req.faults if f.action == "delay"), None)
        if delay is not None:
            time.sleep(float(delay.get("seconds", 1.0)))
        try:
            handler.send(resp, head_only=req.method == "HEAD")
        except OSError:
            handler.close_connection = True

    def _route(self, req: Request):
        if req.host == "login":
            return self.identity.route(req)
        if req.host == "graph":
            auth = req.header("Authorization") or ""
            claims = read_jwt(auth.partition(" ")[2].strip(), self.secret) if auth else None
            req.client = claims.get("appid") if claims else None
            return self.graph.route(req)
        return self.files.route(req)

    def _process(self, req: Request) -> Response:
        label, fn = self._route(req)
        req.label = label
        with self.lock:
            self.counters["requests"] += 1
            self.counters[f"requests.{label}"] += 1
            gate = self.gates.get(req.client) if req.host != "login" else None
        req.meta["gate"] = gate
        if gate is not None and req.arrived < gate - self.config.retry_after_tolerance:
            self.violation("ignored_retry_after", req,
                           f"request {gate - req.arrived:.2f}s before Retry-After allowed")
            if self.config.enforce_retry_after:
                wait = max(1, math.ceil(gate - req.arrived))
                return self._throttled(req, 429, wait)
        if self.config.ru_budget_per_minute and req.host != "login":
            over = self._charge_resource_units(req)
            if over is not None:
                return over
        req.faults = self.faults.draw(label)
        if req.faults:
            self.count("faults_injected", len(req.faults))
        for f in req.faults:
            if f.action == "reset":
                return Response.reset()
            if f.action == "drop":
                return Response.drop()
            if f.action == "throttle":
                return self._throttled(req, int(f.get("status", 429)), f.get("retry_after", 1))
            if f.action == "error":
                status = int(f.get("status", 503))
                resp = self._error_status(req, status, f.get("code"))
                ra = f.get("retry_after")
                if ra is not None:
                    self._set_retry_after(resp, ra)
                return resp
        if req.host == "graph":
            denied = self.graph.authenticate(req)
            if denied is not None:
                return denied
        try:
            with self.lock:
                resp = fn(req)
        except GraphError as e:
            resp = from_exc(req, e)
        if resp.status >= 400 and req.host != "login":
            self.count(f"status.{resp.status}")
        if req.fault("lost_response"):
            return Response.drop()
        after = req.fault("error_after")
        if after is not None:
            return self._error_status(req, int(after.get("status", 503)), after.get("code"))
        return resp

    RU_COST = {"graph.children.list": 2, "graph.children.create": 2, "graph.item.patch": 2,
               "graph.item.delete": 2, "graph.item.permanent_delete": 2,
               "graph.content.put": 2, "graph.session.create": 2, "graph.item.put": 2,
               "upload.fragment": 2, "upload.commit": 2}

    def _charge_resource_units(self, req: Request) -> Response | None:
        """Charge the request to its app's per-minute RU budget; a 429 when over it."""
        budget = int(self.config.ru_budget_per_minute)
        now = self.clock.now()
        window = math.floor(now / 60)
        reset = max(1, math.ceil((window + 1) * 60 - now))
        with self.lock:
            key = (req.client, window)
            used = self.ru_used.get(key, 0) + self.RU_COST.get(req.label, 1)
            self.ru_used = {k: v for k, v in self.ru_used.items() if k[1] >= window}
            self.ru_used[key] = used  # throttled requests count too [doc]
        headers = []
        if used >= 0.8 * budget:
            headers = [("RateLimit-Limit", str(budget)),
                       ("RateLimit-Remaining", str(max(0, budget - used))),
                       ("RateLimit-Reset", str(reset))]
        req.meta["ratelimit"] = headers
        if used > budget:
            return self._throttled(req, 429, reset)
        return None

    def _error_status(self, req: Request, status: int, code: str | None) -> Response:
        codes = {500: "generalException", 502: "serviceNotAvailable",
                 503: "serviceNotAvailable", 504: "serviceNotAvailable",
                 509: "bandwidthLimitExceeded"}
        return error_response(req, status, code or codes.get(status, "generalException"),
                              "The service is not available. Try the request again after a "
                              "delay." if status >= 500 else "Injected error.")

    def _throttled(self, req: Request, status: int, retry_after: Any) -> Response:
        self.count("throttled")
        if status == 429:
            resp = error_response(req, 429, "activityLimitReached",
                                  "The request has been throttled", "throttledRequest")
        else:
            resp = self._error_status(req, status, None)
        if retry_after is not None:
            self._set_retry_after(resp, retry_after)
        resp.headers.append(("x-graphemu-throttle", "1"))
        return resp

    def _set_retry_after(self, resp: Response, retry_after: Any) -> None:
        if retry_after == "date":
            when = math.ceil(self.clock.now() + 2)
            resp.set_header("Retry-After", email.utils.formatdate(when, usegmt=True))
        elif isinstance(retry_after, str) and retry_after.startswith("date+"):
            when = math.ceil(self.clock.now() + float(retry_after[5:]))
            resp.set_header("Retry-After", email.utils.formatdate(when, usegmt=True))
        else:
            resp.set_header("Retry-After", str(int(retry_after)))

    def _throttle_gate(self, req: Request, resp: Response) -> float | None:
        """After a 429/503/509 answer, the client must not come back before this time."""
        if resp.status not in (429, 503, 509) or req.host == "login":
            return None
        ra = resp.header("Retry-After")
        now = self.clock.now()
        if ra is None:
            wait = self.config.missing_retry_after_wait
            if wait <= 0:
                return None
            until = now + wait
        elif ra.strip().isdigit():
            until = now + int(ra)
        else:
            parsed = email.utils.parsedate_to_datetime(ra)
            until = parsed.timestamp()
        with self.lock:
            self.gates[req.client] = max(self.gates.get(req.client, 0), until)
        return until
