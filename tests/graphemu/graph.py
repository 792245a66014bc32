"""The Graph host: /v1.0 drives, items, children, content, upload-session creation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlencode

from .drive import GraphError, iso
from .httpd import Request, Response

if TYPE_CHECKING:
    from .emulator import GraphEmulator

WWW_AUTH = ('Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
            'oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"')
CONFLICT_KEYS = ("@microsoft.graph.conflictBehavior", "@name.conflictBehavior")
ACTIONS = {"children", "content", "createUploadSession", "permanentDelete"}
READ_SCOPES = {"files.read", "files.read.all", "sites.read.all"}
WRITE_SCOPES = {"files.readwrite", "files.readwrite.all", "sites.readwrite.all",
                "sites.fullcontrol.all", "sites.selected", ".default",
                "files.readwrite.appfolder"}


def error_response(req: Request, status: int, code: str, message: str,
                   inner: str | None = None,
                   headers: list[tuple[str, str]] | None = None) -> Response:
    inner_obj: dict[str, Any] = {}
    if inner:
        inner_obj["code"] = inner
    inner_obj.update({
        "date": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(req.arrived)),
        "request-id": req.request_id,
        "client-request-id": req.client_request_id or req.request_id,
    })
    body = {"error": {"code": code, "message": message, "innerError": inner_obj}}
    return Response.json(status, body, headers)


def from_exc(req: Request, e: GraphError) -> Response:
    return error_response(req, e.status, e.code, e.message, e.inner, e.headers)


class Address:
    """A parsed Graph path."""

    def __init__(self) -> None:
        self.kind = ""  # me | me_drives | drive | drives | site | site_drives | item
        self.drive_sel: tuple[str, str] = ("", "")  # ("me"|"drive"|"user"|"site", value)
        self.base: tuple[str, str] = ("", "")  # ("root"|"item"|"special", value)
        self.rel: list[str] | None = None  # segments after ':' (decoded)
        self.action: str | None = None
        self.site: str | None = None
        self.site_path: tuple[str, str] | None = None  # (hostname, server-relative path)


def parse_path(raw: str) -> Address:
    """Parse the raw (percent-encoded) path; raises GraphError(400) on nonsense."""
    bad = GraphError(400, "invalidRequest", f"Invalid request: resource not found for the "
                                            f"segment in '{raw}'.")
    if not raw.startswith("/v1.0/"):
        raise GraphError(400, "invalidRequest", "Invalid version: use /v1.0.")
    rest = raw[len("/v1.0"):]
    a = Address()
    m = re.match(r"^/sites/([^/:]+):(/[^:]*):?(/drive)?$", rest)
    if m:
        a.kind = "site_drive" if m.group(3) else "site"
        a.site_path = (unquote(m.group(1)), unquote(m.group(2)).rstrip("/"))
        return a
    m = re.match(r"^/me/?$", rest)
    if m:
        a.kind = "me"
        return a
    m = re.match(r"^/(me/drives|sites/([^/]+)/drives|users/([^/]+)/drives)/?$", rest)
    if m:
        a.kind = "drives"
        a.drive_sel = ("site", unquote(m.group(2))) if m.group(2) else \
            ("user", unquote(m.group(3))) if m.group(3) else ("me", "")
        return a
    m = re.match(r"^/sites/([^/]+)/?$", rest)
    if m:
        a.kind = "site"
        a.site = unquote(m.group(1))
        return a
    m = re.match(r"^/(me/drive|drives/([^/]+)|users/([^/]+)/drive|sites/([^/]+)/drive)(.*)$",
                 rest)
    if not m:
        raise bad
    if m.group(2):
        a.drive_sel = ("drive", unquote(m.group(2)))
    elif m.group(3):
        a.drive_sel = ("user", unquote(m.group(3)))
    elif m.group(4):
        a.drive_sel = ("site", unquote(m.group(4)))
    else:
        a.drive_sel = ("me", "")
    tail = m.group(5)
    if tail in ("", "/"):
        a.kind = "drive"
        return a
    m = re.match(r"^/(root|items/([^/:]+)|special/([^/:]+))(.*)$", tail)
    if not m:
        raise bad
    if m.group(2):
        a.base = ("item", unquote(m.group(2)))
    elif m.group(3):
        a.base = ("special", unquote(m.group(3)).lower())
    else:
        a.base = ("root", "")
    after = m.group(4)
    if after.startswith(":"):
        body = after[1:]
        if ":" in body:
            rel, after = body.split(":", 1)
        else:
            rel, after = body, ""
        if rel and not rel.startswith("/"):
            raise bad
        try:
            a.rel = [unquote(s, errors="strict") for s in rel.split("/") if s]
        except UnicodeDecodeError:
            raise GraphError(400, "invalidRequest", "Invalid percent-encoding in the path.",
                             "invalidPath") from None
    if after in ("", "/"):
        a.action = None
    elif after.startswith("/") and after[1:] in ACTIONS:
        a.action = after[1:]
    else:
        raise bad
    a.kind = "item"
    return a


class Graph:
    def __init__(self, emu: GraphEmulator) -> None:
        self.emu = emu
        self.model = emu.model

    # ------------------------------------------------------------ routing
    def route(self, req: Request) -> tuple[str, Callable[[Request], Response]]:
        try:
            addr = parse_path(req.path)
        except GraphError as e:
            return "graph.invalid", lambda r, e=e: from_exc(r, e)
        req.meta["addr"] = addr
        m = req.method
        if addr.kind == "me" and m == "GET":
            return "graph.me", self.get_me
        if addr.kind in ("site", "site_drive") and m == "GET":
            return "graph.site", self.get_site
        if addr.kind == "drives" and m == "GET":
            return "graph.drives", self.list_drives
        if addr.kind == "drive" and m == "GET":
            return "graph.drive", self.get_drive
        if addr.kind == "item":
            act = addr.action
            table = {
                (None, "GET"): ("graph.item.get", self.get_item),
                (None, "PATCH"): ("graph.item.patch", self.patch_item),
                (None, "DELETE"): ("graph.item.delete", self.delete_item),
                (None, "PUT"): ("graph.item.put", self.put_item),
                ("children", "GET"): ("graph.children.list", self.list_children),
                ("children", "POST"): ("graph.children.create", self.create_child),
                ("content", "GET"): ("graph.content.get", self.get_content),
                ("content", "PUT"): ("graph.content.put", self.put_content),
                ("createUploadSession", "POST"): ("graph.session.create",
                                                  self.create_session),
                ("permanentDelete", "POST"): ("graph.item.permanent_delete",
                                              self.permanent_delete),
            }
            if (act, m) in table:
                return table[(act, m)]
        return "graph.invalid", self.method_not_allowed

    def method_not_allowed(self, req: Request) -> Response:
        return error_response(req, 405, "invalidRequest",
                              f"The method {req.method} is not allowed on this resource.")

    # ------------------------------------------------------------ auth
    def authenticate(self, req: Request) -> Response | None:
        emu = self.emu
        claims, problem = emu.identity.validate_access_token(req.header("Authorization"))
        if req.fault("rps_401"):
            return error_response(req, 401, "InvalidAuthenticationToken",
                                  "Unable to initialize RPS", headers=[
                                      ("WWW-Authenticate", WWW_AUTH)])
        if req.fault("revoke_access") and claims is not None:
            if claims.get("upn"):
                emu.revoke_access_tokens(claims["upn"])
            else:
                emu.revoke_access_tokens(None)
            claims, problem = emu.identity.validate_access_token(req.header("Authorization"))
        if problem is None:
            req.token = claims
            return None
        messages = {
            "missing": "Access token is empty.",
            "malformed": "CompactToken parsing failed with error code: 80049217",
            "expired": "Access token has expired or is not yet valid.",
            "forced_expired": "Access token has expired or is not yet valid.",
            "revoked": "Access token validation failure. Invalid audience.",
        }
        if problem == "missing":
            emu.violation("missing_access_token", req, "Graph call without Authorization")
        elif problem == "expired":
            emu.violation("expired_access_token", req,
                          "used an access token after its expires_in had passed; refresh "
                          "before expiry")
        emu.count("graph_401")
        www = WWW_AUTH
        if problem in ("expired", "forced_expired"):
            www += ', error="invalid_token", error_description="expired_token"'
        return error_response(req, 401, "InvalidAuthenticationToken", messages[problem],
                              headers=[("WWW-Authenticate", www)])

    def need_write(self, req: Request) -> None:
        tok = req.token or {}
        if tok.get("idtyp") == "app":
            return
        scopes = {s.lower() for s in tok.get("scp", "").split()}
        if not scopes & WRITE_SCOPES:
            raise GraphError(403, "accessDenied", "Access denied: the token has no write "
                                                  "scope (Files.ReadWrite*).")

    def need_read(self, req: Request) -> None:
        tok = req.token or {}
        if tok.get("idtyp") == "app":
            return
        scopes = {s.lower() for s in tok.get("scp", "").split()}
        if not scopes & (WRITE_SCOPES | READ_SCOPES):
            raise GraphError(403, "accessDenied", "Either scp or roles claim need to be "
                                                  "present in the token.")

    def app_folder_only(self, req: Request) -> bool:
        tok = req.token or {}
        scopes = {s.lower() for s in tok.get("scp", "").split()}
        return tok.get("idtyp") == "user" and scopes & WRITE_SCOPES == \
            {"files.readwrite.appfolder"} and not scopes & READ_SCOPES

    # ------------------------------------------------------------ resolution
    def caller_user(self, req: Request) -> dict | None:
        tok = req.token or {}
        if tok.get("idtyp") != "user":
            return None
        return self.emu.users.get(tok["upn"].lower())

    def drive_for(self, req: Request, sel: tuple[str, str]) -> dict:
        emu = self.emu
        kind, value = sel
        tok = req.token or {}
        if kind == "me":
            if tok.get("idtyp") == "app":
                raise GraphError(400, "invalidRequest", "Call was made to the default "
                                 "drive, which is not supported for apponly tokens.")
            drive = emu.drives[self.caller_user(req)["drive"]]
        elif kind == "drive":
            drive = emu.drives.get(value) or next(
                (d for d in emu.drives.values() if d["id"].lower() == value.lower()), None)
            if drive is None and emu.config.drive_id_quirk:
                drive = next((d for d in emu.drives.values()
                              if d["id"].lstrip("0").lower() == value.lstrip("0").lower()),
                             None)
        elif kind == "user":
            user = emu.find_user(value)
            drive = emu.drives.get(user["drive"]) if user else None
        else:
            site = emu.find_site(value)
            drive = emu.drives.get(site["drive"]) if site else None
        if drive is None:
            raise GraphError(404, "itemNotFound", "The requested drive was not found.")
        owner = drive["owner"]
        caller = self.caller_user(req)
        if caller is not None and "upn" in owner and owner["upn"] != caller["upn"]:
            raise GraphError(403, "accessDenied", "Access denied")
        return drive

    def base_item(self, req: Request, drive: dict, base: tuple[str, str]) -> dict:
        emu = self.emu
        kind, value = base
        if kind == "root":
            item = emu.items[drive["root"]]
        elif kind == "special":
            if value != "approot":
                raise GraphError(404, "itemNotFound", f"Special folder '{value}' not found.")
            item = self.approot(drive)
        else:
            item = self.model.get(value)
            if item is None or item["drive"] != drive["id"]:
                raise GraphError(404, "itemNotFound", "Item not found")
        return item

    def approot(self, drive: dict) -> dict:
        root = self.emu.items[drive["root"]]
        apps = self.model.ensure_folders(root, ["Apps"], create=True)
        folder = self.model.ensure_folders(apps, [self.emu.config.app_folder_name], True)
        if folder.get("special") != "approot":
            folder["special"] = "approot"
            self.model.save_item(folder)
        return folder

    def target(self, req: Request) -> tuple[dict, dict, list[str]]:
        """(drive, base item, rel segments) of an item address."""
        addr: Address = req.meta["addr"]
        drive = self.drive_for(req, addr.drive_sel)
        base = self.base_item(req, drive, addr.base)
        if self.app_folder_only(req):
            approot = self.approot(drive)
            if not self.model.is_under(base, approot):
                raise GraphError(403, "accessDenied", "Access denied: the token only grants "
                                                      "the app folder.")
        return drive, base, addr.rel or []

    def existing(self, req: Request) -> tuple[dict, dict]:
        drive, base, rel = self.target(req)
        item = self.model.resolve(base, rel)
        if item is None:
            raise GraphError(404, "itemNotFound", "The resource could not be found.")
        return drive, item

    def split_new(self, req: Request) -> tuple[dict, dict, list[str], str]:
        """For create-by-path: (drive, base, parent segments, name)."""
        drive, base, rel = self.target(req)
        if not rel:
            raise GraphError(400, "invalidRequest", "A file name is required in the path.")
        return drive, base, rel[:-1], rel[-1]

    # ------------------------------------------------------------ helpers
    def download_url(self, req: Request, item: dict) -> str:
        return self.emu.files.make_download_url(item, (req.token or {}).get("appid"))

    def item_json(self, req: Request, item: dict, with_url: bool = True) -> dict:
        url = self.download_url(req, item) if with_url and not item["folder"] else None
        return self.select(req, self.model.render(item, url))

    @staticmethod
    def select(req: Request, obj: dict) -> dict:
        sel = req.query.get("$select") or req.query.get("select")
        if not sel:
            return obj
        keep = {s.strip() for s in sel.split(",") if s.strip()}
        return {k: v for k, v in obj.items() if k in keep or k.startswith("@odata")}

    def conflict_behavior(self, req: Request, value: Any, default: str) -> str:
        if value is None:
            return default
        if value not in ("fail", "replace", "rename"):
            self.emu.violation("invalid_conflict_behavior", req,
                               f"conflictBehavior {value!r}; use fail, replace or rename")
            raise GraphError(400, "invalidRequest",
                             f"Invalid value '{value}' for conflictBehavior; expected fail, "
                             f"replace or rename.")
        return value

    def check_if_match(self, req: Request, item: dict) -> None:
        want = req.header("If-Match")
        if want is None:
            return
        tags = set(re.findall(r'(?:W/)?"[^"]*"', want))  # eTags themselves hold commas
        if want.strip() == "*":
            return
        if self.model.etag(item) not in tags and self.model.ctag(item) not in tags:
            raise GraphError(412, "resourceModified",
                             "ETag does not match current item's value")

    def make_room(self, parent: dict, name: str, behavior: str,
                  moving: dict | None = None) -> str:
        """Apply conflictBehavior for a new child ``name``; returns the name to use."""
        other = self.model.child(parent, name)
        if other is None or (moving is not None and other["id"] == moving["id"]):
            return name
        if behavior == "fail":
            raise GraphError(409, "nameAlreadyExists", "The specified item name already exists.")
        if behavior == "rename":
            return self.model.unique_name(parent, name)
        self.model.delete(other)
        return name

    def check_framing(self, req: Request, what: str) -> None:
        """Uploads need a real Content-Length: chunked is refused on Business [obs]."""
        emu = self.emu
        if req.chunked:
            emu.violation("chunked_transfer_encoding", req,
                          f"{what} sent with Transfer-Encoding: chunked")
            if emu.config.mode == "business":
                raise GraphError(400, "invalidRequest", "The size of the provided stream is "
                                 "not known. Make sure the request is not chunked, and the "
                                 "Content-Length header is specified")
        elif req.content_length is None:
            emu.violation("missing_content_length", req, f"{what} without Content-Length")
            raise GraphError(411, "invalidRequest", "Length Required")

    def json_body(self, req: Request) -> dict:
        try:
            body = req.json()
        except (ValueError, UnicodeDecodeError):
            raise GraphError(400, "invalidRequest",
                             "Unable to read JSON request payload.") from None
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise GraphError(400, "invalidRequest", "The request body must be a JSON object.")
        return body

    # ------------------------------------------------------------ handlers
    def get_me(self, req: Request) -> Response:
        user = self.caller_user(req)
        if user is None:
            raise GraphError(400, "BadRequest", "/me request is only valid with delegated "
                                                "authentication flow.")
        return Response.json(200, {"id": user["oid"], "userPrincipalName": user["upn"],
                                   "displayName": user["name"], "mail": user["upn"]})

    def get_site(self, req: Request) -> Response:
        addr: Address = req.meta["addr"]
        if addr.site_path:
            host, path = addr.site_path
            site = self.emu.find_site_by_path(host, path)
        else:
            site = self.emu.find_site(addr.site)
        if site is None:
            raise GraphError(404, "itemNotFound", "Requested site could not be found")
        if addr.kind == "site_drive":
            return Response.json(200, self.select(
                req, self.model.render_drive(self.emu.drives[site["drive"]])))
        return Response.json(200, self.select(req, {
            "id": site["id"], "name": site["name"], "displayName": site["name"],
            "webUrl": f"https://{site['hostname']}{site['path']}",
            "siteCollection": {"hostname": site["hostname"]},
        }))

    def list_drives(self, req: Request) -> Response:
        emu = self.emu
        kind, value = req.meta["addr"].drive_sel
        if kind == "site":
            site = emu.find_site(value)
            if site is None:
                raise GraphError(404, "itemNotFound", "Requested site could not be found")
            drives = [emu.drives[site["drive"]]]
        else:
            drives = [self.drive_for(req, (kind, value))]
        return Response.json(200, {"value": [self.model.render_drive(d) for d in drives]})

    def get_drive(self, req: Request) -> Response:
        drive = self.drive_for(req, req.meta["addr"].drive_sel)
        return Response.json(200, self.select(req, self.model.render_drive(drive)))

    def get_item(self, req: Request) -> Response:
        self.need_read(req)
        _, item = self.existing(req)
        inm = req.header("If-None-Match")
        if inm and inm in (self.model.etag(item), self.model.ctag(item)):
            return Response.empty(304)
        return Response.json(200, self.item_json(req, item))

    def list_children(self, req: Request) -> Response:
        self.need_read(req)
        emu = self.emu
        cfg = emu.config
        drive, folder = self.existing(req)
        if not folder["folder"]:
            raise GraphError(400, "invalidRequest", "The item is not a folder.")
        top_text = req.query.get("$top", req.query.get("top"))
        token = req.query.get("$skiptoken", req.query.get("$skipToken"))
        offset = 0
        if token is not None:
            state = emu.verify_blob("skip", token)
            if state is None or state.get("p") != folder["id"]:
                raise GraphError(400, "invalidRequest", "The skip token is invalid.")
            if emu.clock.now() - state["t"] > cfg.skiptoken_lifetime:
                raise GraphError(400, "invalidRequest", "The skip token has expired.")
            offset = state["o"]
            if top_text is None:
                top_text = str(state["n"])
        if top_text is None:
            top = cfg.page_size
        else:
            try:
                top = int(top_text)
                if top < 1:
                    raise ValueError
            except ValueError:
                raise GraphError(400, "invalidRequest", f"Invalid $top value '{top_text}'.") \
                    from None
            top = min(top, cfg.max_page_size)
        kids = self.model.children_of(folder)
        order = (req.query.get("$orderby") or "name").strip()
        key_name, _, direction = order.partition(" ")
        keys = {"name": lambda i: i["name"].lower(),
                "lastModifiedDateTime": lambda i: i["modified"],
                "size": lambda i: i["size"]}
        if key_name not in keys or direction.strip() not in ("", "asc", "desc"):
            raise GraphError(400, "invalidRequest", f"Unsupported $orderby '{order}'.")
        kids.sort(key=keys[key_name], reverse=direction.strip() == "desc")
        page = kids[offset:offset + top]
        next_offset = offset + len(page)
        if req.fault("empty_page") and page:
            page, next_offset = [], offset
        body: dict[str, Any] = {
            "value": [self.item_json(req, it) for it in page],
        }
        if next_offset < len(kids):
            skip = emu.sign_blob("skip", {"p": folder["id"], "o": next_offset, "n": top,
                                          "t": emu.clock.now()})
            params = {"$skiptoken": skip}
            if "$select" in req.query:
                params["$select"] = req.query["$select"]
            if "$orderby" in req.query:
                params["$orderby"] = req.query["$orderby"]
            base = f"{emu.graph_url}/drives/{drive['id']}/items/{folder['id']}/children"
            body["@odata.nextLink"] = base + "?" + urlencode(params, safe="$,")
        return Response.json(200, body)

    def create_child(self, req: Request) -> Response:
        self.need_write(req)
        model = self.model
        drive, parent = self.existing(req)
        if not parent["folder"]:
            raise GraphError(400, "invalidRequest", "The parent item is not a folder.")
        body = self.json_body(req)
        name = body.get("name")
        if not isinstance(name, str):
            raise GraphError(400, "invalidRequest", "The name property is required.")
        if "folder" not in body:
            raise GraphError(400, "invalidRequest", "Only folders can be created this way; "
                             "use PUT content or an upload session for files.")
        raw = next((body[k] for k in CONFLICT_KEYS if k in body), None)
        behavior = self.conflict_behavior(req, raw, "fail")
        model.check_name(name)
        model.check_path_length(parent, name)
        name = self.make_room(parent, name, behavior)
        item = model.new_item(drive, parent, name, folder=True, now=self.emu.clock.now(),
                              fs=body.get("fileSystemInfo"))
        self.emu.counters["folders_created"] += 1
        return Response.json(201, self.item_json(req, item))

    def patch_item(self, req: Request) -> Response:
        self.need_write(req)
        model = self.model
        drive, item = self.existing(req)
        self.check_if_match(req, item)
        body = self.json_body(req)
        if item.get("parent") is None and ("name" in body or "parentReference" in body):
            raise GraphError(403, "accessDenied", "The root cannot be renamed or moved.")
        parent = self.emu.items[item["parent"]] if item.get("parent") else None
        new_parent = parent
        ref = body.get("parentReference")
        if isinstance(ref, dict) and ("id" in ref or "path" in ref):
            if "id" in ref:
                new_parent = model.get(ref["id"])
            else:
                path = str(ref["path"])
                prefix = next((p for p in ("/drive/root:", f"/drives/{drive['id']}/root:")
                               if path.startswith(p)), None)
                if prefix is None:
                    raise GraphError(400, "invalidRequest", "Invalid parentReference.path.")
                segs = [unquote(s) for s in path[len(prefix):].split("/") if s]
                new_parent = model.resolve(self.emu.items[drive["root"]], segs)
            if new_parent is None or not new_parent["folder"] or \
                    new_parent["drive"] != drive["id"]:
                raise GraphError(404, "itemNotFound", "The destination folder was not found.")
            if model.is_under(new_parent, item):
                raise GraphError(400, "invalidRequest", "Cannot move a folder into itself.")
        name = body.get("name", item["name"])
        if not isinstance(name, str):
            raise GraphError(400, "invalidRequest", "Invalid name.")
        raw = next((body[k] for k in CONFLICT_KEYS if k in body), None) or \
            req.query.get("@microsoft.graph.conflictBehavior")
        behavior = self.conflict_behavior(req, raw, "fail")
        if new_parent is not None and (name != item["name"] or new_parent is not parent):
            model.check_name(name)
            name = self.make_room(new_parent, name, behavior, moving=item)
            model.unindex(item)
            item["name"] = name
            item["parent"] = new_parent["id"]
            model.index(item)
            now = self.emu.clock.now()
            model.touch(parent, now)
            if new_parent is not parent:
                model.touch(new_parent, now)
        if "fileSystemInfo" in body:
            model.apply_fs_info(item, body["fileSystemInfo"])
            if drive["driveType"] != "personal" and self.emu.config.business_versions \
                    and not item["folder"]:
                drive["versions"] += item["size"]  # a metadata change makes a new version
                model.save_drive(drive)
        if "description" in body:
            item["description"] = body["description"]
        item["ver"] += 1
        item["modified"] = self.emu.clock.now()
        model.save_item(item)
        return Response.json(200, self.item_json(req, item))

    def delete_item(self, req: Request) -> Response:
        self.need_write(req)
        _, item = self.existing(req)
        if item.get("parent") is None:
            raise GraphError(403, "accessDenied", "The root folder cannot be deleted.")
        self.check_if_match(req, item)
        self.model.delete(item)
        self.emu.counters["items_deleted"] += 1
        return Response.empty(204)

    def permanent_delete(self, req: Request) -> Response:
        self.need_write(req)
        drive, item = self.existing(req)
        if drive["driveType"] == "personal":
            raise GraphError(400, "invalidRequest", "OneDrive personal accounts do not "
                                                    "support the permanentDelete API.")
        if item.get("parent") is None:
            raise GraphError(403, "accessDenied", "The root folder cannot be deleted.")
        self.check_if_match(req, item)
        self.model.delete(item, permanent=True)
        self.emu.counters["items_deleted"] += 1
        return Response.empty(204)

    def get_content(self, req: Request) -> Response:
        self.need_read(req)
        _, item = self.existing(req)
        if item["folder"]:
            raise GraphError(400, "invalidRequest", "Cannot download a folder.")
        inm = req.header("If-None-Match")
        if inm and inm in (self.model.etag(item), self.model.ctag(item)):
            return Response.empty(304)
        url = self.download_url(req, item)
        return Response(302, b"", [("Location", url)])

    def put_content(self, req: Request) -> Response:
        self.need_write(req)
        emu = self.emu
        model = self.model
        addr: Address = req.meta["addr"]
        drive, base, rel = self.target(req)
        size = req.body_length
        self.check_framing(req, "simple upload")
        if size > emu.config.simple_upload_max:
            emu.violation("simple_upload_too_large", req,
                          f"{size} bytes by simple upload; the limit is "
                          f"{emu.config.simple_upload_max}; use an upload session")
            raise GraphError(413, "invalidRequest", "The request is too large for a simple "
                             "upload; use an upload session.", "maxFileSizeExceeded")
        behavior = self.conflict_behavior(
            req, req.query.get("@microsoft.graph.conflictBehavior"), "replace")
        if addr.rel is None and addr.base[0] == "item":  # PUT /items/{id}/content: replace
            item = base
            if item["folder"]:
                raise GraphError(400, "invalidRequest", "Cannot upload content to a folder.")
            parent = emu.items[item["parent"]]
            existing = item
        else:
            if not rel:
                raise GraphError(400, "invalidRequest", "A file name is required.")
            parent = model.ensure_folders(base, rel[:-1], emu.config.put_auto_create_parents)
            name = rel[-1]
            model.check_name(name)
            model.check_path_length(parent, name)
            existing = model.child(parent, name)
            if existing is not None and existing["folder"]:
                raise GraphError(409, "nameAlreadyExists", "A folder with this name exists.")
            if existing is not None and behavior == "fail":
                raise GraphError(409, "nameAlreadyExists",
                                 "The specified item name already exists.")
            if existing is not None and behavior == "rename":
                name = model.unique_name(parent, name)
                existing = None
        self.check_if_match(req, existing) if existing is not None else None
        if model.size_delta(drive, existing, size) > model.remaining(drive):
            raise GraphError(507, "quotaLimitReached", "Insufficient Space Available")
        tmp = emu.store.part_path("put-" + secrets.token_hex(8))
        tmp.write_bytes(req.body)
        hashes = self.emu.hashes_for(tmp)
        if existing is None:
            item = model.new_item(drive, parent, name, folder=False, now=emu.clock.now())
            status = 201
        else:
            item, status = existing, 200
        model.set_content(item, tmp, size, hashes)
        emu.counters["simple_uploads"] += 1
        emu.counters["bytes_uploaded"] += size
        return Response.json(status, self.item_json(req, item, with_url=False))

    def create_session(self, req: Request) -> Response:
        self.need_write(req)
        return self.emu.files.create_session(req, self)

    def put_item(self, req: Request) -> Response:
        """Personal deferCommit commit: PUT {item path} with @microsoft.graph.sourceUrl."""
        self.need_write(req)
        return self.emu.files.commit_by_source_url(req, self)


def sign_blob(secret: bytes, purpose: str, obj: dict) -> str:
    data = json.dumps(obj, separators=(",", ":")).encode()
    mac = hmac.new(secret, purpose.encode() + b"\0" + data, hashlib.sha256).digest()[:12]
    return base64.urlsafe_b64encode(data + mac).rstrip(b"=").decode()


def verify_blob(secret: bytes, purpose: str, token: str) -> dict | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError):
        return None
    data, mac = raw[:-12], raw[-12:]
    good = hmac.new(secret, purpose.encode() + b"\0" + data, hashlib.sha256).digest()[:12]
    if len(raw) < 13 or not hmac.compare_digest(mac, good):
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


__all__ = [
    "Graph",
    "error_response",
    "from_exc",
    "iso",
    "parse_path",
    "quote",
    "sign_blob",
    "verify_blob",
]
