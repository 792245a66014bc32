"""The upload/download host: upload sessions (GRAPH-NOTES 1.10) and pre-authenticated
download URLs (1.7). Session creation and the personal sourceUrl commit arrive through
Graph; fragments, status, cancel and the business commit arrive here, unauthenticated.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, urlsplit

from .drive import GraphError, iso, iso_ms
from .graph import CONFLICT_KEYS, Graph, error_response
from .httpd import Request, Response

if TYPE_CHECKING:
    from .emulator import GraphEmulator

UPLOAD_PERSONAL = re.compile(r"^/up/([A-Za-z0-9_-]+)$")
UPLOAD_BUSINESS = re.compile(
    r"^/(personal|sites)/[^/]+/_api/v2\.0/drives/[^/]+/items/[^/]+/uploadSession$")
DOWNLOAD_PERSONAL = re.compile(r"^/y4m([A-Za-z0-9_-]+)/[^/]*$")
DOWNLOAD_BUSINESS = re.compile(r"^/(personal|sites)/[^/]+/_layouts/15/download\.aspx$")
CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
RANGE = re.compile(r"bytes=(\d*)-(\d*)")  # one range; several (a,b) are not served [inf]


class Files:
    def __init__(self, emu: GraphEmulator) -> None:
        self.emu = emu
        self.model = emu.model

    # ------------------------------------------------------------ routing
    def route(self, req: Request) -> tuple[str, Callable[[Request], Response]]:
        emu = self.emu
        sid = self.session_id(req)
        if sid is not None:
            s = emu.sessions.get(sid)
            if s is not None:
                req.client = s["client"]
            table = {"PUT": ("upload.fragment", self.put_fragment),
                     "GET": ("upload.status", self.get_status),
                     "DELETE": ("upload.cancel", self.cancel),
                     "POST": ("upload.commit", self.post_commit)}
            if req.method in table:
                return table[req.method]
        token = self.download_token(req)
        if token is not None and req.method in ("GET", "HEAD"):
            state = emu.verify_blob("dl", token)
            if state:
                req.client = state.get("c")
            return "download.get", self.download
        return "files.unknown", lambda r: error_response(r, 404, "itemNotFound",
                                                         "The resource could not be found.")

    def session_id(self, req: Request) -> str | None:
        m = UPLOAD_PERSONAL.match(req.path)
        if m:
            return m.group(1)
        if UPLOAD_BUSINESS.match(req.path):
            guid = req.query.get("guid", "").strip("'")
            return guid or "-"
        return None

    def download_token(self, req: Request) -> str | None:
        m = DOWNLOAD_PERSONAL.match(req.path)
        if m:
            return m.group(1)
        if DOWNLOAD_BUSINESS.match(req.path):
            return req.query.get("tempauth", "")
        return None

    # ------------------------------------------------------------ URLs
    def owner_prefix(self, drive: dict) -> str:
        owner = drive["owner"]
        if "site" in owner:
            return "/sites/" + owner["name"].replace(" ", "")
        return "/personal/" + re.sub(r"[^A-Za-z0-9]", "_", owner["upn"])

    def make_upload_url(self, s: dict) -> tuple[str, str, str]:
        """(url, raw path, raw query)."""
        emu = self.emu
        drive = emu.drives[s["drive"]]
        if drive["driveType"] == "personal":
            path = f"/up/{s['id']}"
            return emu.files_url + path, path, ""
        item = s.get("item_id") or s.get("base")
        path = (f"{self.owner_prefix(drive)}/_api/v2.0/drives/{drive['id']}/items/{item}"
                f"/uploadSession")
        tempauth = emu.sign_blob("tempauth", {"s": s["id"], "e": s["hard_expires"]})
        name = quote(s["name"], safe="")
        query = (f"guid='{s['id']}'&path='~tmp{secrets.token_hex(1).upper()}_{name}'"
                 f"&overwrite=True&rename=False&dc=0&tempauth=eyJ0eXAiOiJKV1Qi.{tempauth}")
        return f"{emu.files_url}{path}?{query}", path, query

    def make_download_url(self, item: dict, client_id: str | None) -> str:
        emu = self.emu
        drive = emu.drives[item["drive"]]
        token = emu.sign_blob("dl", {"i": item["id"], "c": client_id,
                                     "e": emu.clock.now() + emu.config.download_url_lifetime})
        if drive["driveType"] == "personal":
            return f"{emu.files_url}/y4m{token}/{quote(item['name'], safe='')}" \
                   f"?download&psid=1"
        guid = self.model._guid(item)
        return (f"{emu.files_url}{self.owner_prefix(drive)}/_layouts/15/download.aspx?"
                f"UniqueId={guid.lower()}&Translate=false&tempauth={token}&ApiVersion=2.0")

    # ------------------------------------------------------------ session creation
    def create_session(self, req: Request, graph: Graph) -> Response:
        emu = self.emu
        cfg = emu.config
        model = self.model
        addr = req.meta["addr"]
        if req.content_length is None and not req.chunked:
            emu.violation("missing_content_length", req,
                          "createUploadSession POST without Content-Length")
            raise GraphError(411, "invalidRequest", "Length Required")
        drive, base, rel = graph.target(req)
        body = graph.json_body(req)
        opts = body.get("item") or {}
        if not isinstance(opts, dict):
            raise GraphError(400, "invalidRequest", "'item' must be an object.")
        raw = next((opts[k] for k in CONFLICT_KEYS if k in opts), None)
        if raw is None:
            raw = next((body[k] for k in CONFLICT_KEYS if k in body), None)
        behavior = graph.conflict_behavior(req, raw, cfg.session_default_conflict)
        file_size = opts.get("fileSize")
        if file_size is not None and (not isinstance(file_size, int) or file_size < 0):
            raise GraphError(400, "invalidRequest", "Invalid fileSize.")
        by_id = addr.rel is None and addr.base[0] == "item"
        target = None
        if by_id:
            if base["folder"]:
                raise GraphError(400, "invalidRequest", "Cannot upload to a folder.")
            target, name, parent_segs, base_id = base, base["name"], [], None
            behavior = "replace"
        else:
            if not rel:
                raise GraphError(400, "invalidRequest", "A file name is required in the path.")
            parent_segs, name = rel[:-1], rel[-1]
            model.check_name(name)
            if "name" in opts and opts["name"] != name:
                emu.violation("name_mismatch", req,
                              f"item.name {opts['name']!r} differs from the path's {name!r}")
                raise GraphError(400, "invalidRequest", "The name in the provided oneDrive."
                                 "item does not match the name in the URL")
            parent = model.resolve(base, parent_segs)
            if parent is None:
                if not cfg.session_auto_create_parents:
                    raise GraphError(404, "itemNotFound", "The parent folder does not exist.")
                walk = base
                for seg in parent_segs:  # a file in the way is an error now
                    nxt = model.child(walk, seg) if walk["folder"] else None
                    if nxt is None:
                        break
                    if not nxt["folder"]:
                        raise GraphError(409, "nameAlreadyExists",
                                         f"A file named '{seg}' is in the way of the path.")
                    walk = nxt
            elif not parent["folder"]:
                raise GraphError(400, "invalidRequest", "The parent is not a folder.")
            else:
                model.check_path_length(parent, name)
                existing = model.child(parent, name)
                if existing is not None and existing["folder"]:
                    raise GraphError(409, "nameAlreadyExists",
                                     "A folder with this name already exists.")
                if existing is not None and behavior == "fail":
                    raise GraphError(409, "nameAlreadyExists",
                                     "The specified item name already exists.")
                if existing is not None and behavior == "replace":
                    target = existing
            base_id = base["id"]
        if target is not None:
            graph.check_if_match(req, target)
        if file_size == 0:
            emu.violation("zero_byte_session", req,
                          "upload session for a 0-byte file; use a simple PUT")
            raise GraphError(400, "invalidRequest",
                             "Upload sessions cannot be used for empty files.")
        if file_size and drive["driveType"] == "personal" and \
                model.size_delta(drive, target, file_size) > model.remaining(drive):
            raise GraphError(507, "quotaLimitReached", "Insufficient Space Available")
        if cfg.single_session_per_item:
            # one pending session per file: on an existing item [obs], and on a new path
            # too, which is what wedges a client that lost its session's URL (issue 9 #8)
            now = emu.clock.now()
            here = (drive["id"], base_id, tuple(x.lower() for x in parent_segs), name.lower())
            for other in emu.sessions.values():
                if now >= other["expires"]:
                    continue
                same = (other.get("target") == target["id"]) if target is not None else (
                    other.get("target") is None and here == (
                        other["drive"], other["base"], tuple(x.lower() for x in other["segments"]),
                        other["name"].lower()))
                if same:
                    raise GraphError(409, "nameAlreadyExists",
                                     "An upload session already exists for this file")
        now = emu.clock.now()
        s = {
            "id": secrets.token_urlsafe(24).replace("-", "A").replace("_", "B"),
            "drive": drive["id"], "base": base_id, "segments": parent_segs, "name": name,
            "item_id": target["id"] if by_id else None,
            "target": target["id"] if target is not None else None,
            "conflict": behavior, "fs": opts.get("fileSystemInfo"),
            "description": opts.get("description"), "defer": bool(body.get("deferCommit")),
            "total": file_size, "received": 0, "created": now,
            "expires": now + cfg.session_lifetime,
            "hard_expires": now + cfg.session_hard_cap if cfg.session_hard_cap else None,
            "client": (req.token or {}).get("appid"), "status": "active", "resumed": False,
            "forced_expiry": False,
        }
        if s["fs"] is not None and not isinstance(s["fs"], dict):
            raise GraphError(400, "invalidRequest", "Invalid fileSystemInfo.")
        s["url"], s["path"], s["raw_query"] = self.make_upload_url(s)
        emu.sessions[s["id"]] = s
        emu.store.part_path(s["id"]).write_bytes(b"")
        self.save(s)
        emu.counters["sessions_created"] += 1
        return Response.json(200, {
            "uploadUrl": s["url"],
            "expirationDateTime": iso_ms(s["expires"]),
            "nextExpectedRanges": ["0-"],
        })

    # ------------------------------------------------------------ sessions
    def save(self, s: dict) -> None:
        self.emu.store.put("session", s["id"], s)

    def drop_session(self, s: dict) -> None:
        self.emu.sessions.pop(s["id"], None)
        self.emu.store.delete("session", s["id"])
        self.emu.store.part_path(s["id"]).unlink(missing_ok=True)

    def ranges(self, s: dict) -> list[str]:
        if s["status"] == "uploaded":
            return []
        start = s["received"]
        if self.emu.config.mode == "business" and s["total"]:
            return [f"{start}-{s['total'] - 1}"]
        return [f"{start}-"]

    def find_session(self, req: Request) -> dict:
        emu = self.emu
        sid = self.session_id(req)
        s = emu.sessions.get(sid or "")
        if s is None:
            raise GraphError(404, "itemNotFound", "The upload session was not found.",
                             "uploadSessionNotFound")
        if req.path != s["path"] or req.raw_query != s["raw_query"]:
            emu.violation("upload_url_modified", req,
                          "the uploadUrl was not used verbatim (re-encoded or rebuilt)")
            raise GraphError(400, "invalidRequest", "The upload URL is malformed; use the "
                             "uploadUrl exactly as returned.")
        now = emu.clock.now()
        if s["hard_expires"] is not None and now >= s["hard_expires"]:
            raise GraphError(
                401, "unauthenticated",
                f"The access token has expired. It's valid from '{iso(s['created'])}' and "
                f"to '{iso(s['hard_expires'])}'.", "expiredToken")
        if req.fault("expire_session"):
            s["expires"], s["forced_expiry"] = now - 1, True
            self.save(s)
        if now >= s["expires"]:
            if not s["forced_expiry"]:
                emu.violation("expired_upload_session", req,
                              f"used an upload session after its expirationDateTime "
                              f"{iso(s['expires'])}")
            raise GraphError(404, "itemNotFound", "The upload session was not found.",
                             "uploadSessionNotFound")
        return s

    def reject_authorization(self, req: Request, what: str) -> None:
        if req.header("Authorization") is None:
            return
        self.emu.violation("authorization_on_upload_url", req,
                           f"{what} on the uploadUrl carried an Authorization header")
        if self.emu.config.reject_auth_on_upload_url:
            raise GraphError(401, "unauthenticated", "Authorization header is not allowed on "
                             "the upload URL; it is pre-authenticated.")

    def status_body(self, s: dict) -> dict:
        return {"expirationDateTime": iso_ms(s["expires"]), "nextExpectedRanges": self.ranges(s)}

    def put_fragment(self, req: Request) -> Response:
        emu = self.emu
        cfg = emu.config
        self.reject_authorization(req, "fragment PUT")
        s = self.find_session(req)
        emu.graph.check_framing(req, "fragment PUT")
        header = req.header("Content-Range")
        m = CONTENT_RANGE.match((header or "").strip())
        if not m or int(m.group(1)) > int(m.group(2)) or int(m.group(2)) >= int(m.group(3)):
            emu.violation("bad_content_range", req, f"Content-Range {header!r}")
            raise GraphError(400, "invalidRequest",
                             "The Content-Range header is missing or malformed.")
        start, end, total = (int(m.group(i)) for i in (1, 2, 3))
        if s["total"] is not None and total != s["total"]:
            emu.violation("fragment_total_mismatch", req,
                          f"declared total {total}, session total {s['total']}")
            raise GraphError(400, "invalidRequest",
                             f"The current upload session is for {s['total']} total bytes, "
                             f"but the current fragment declares a total of {total}",
                             "fragmentLengthMismatch")
        length = end - start + 1
        if req.body_length != length:
            emu.violation("content_length_mismatch", req,
                          f"body is {req.body_length} bytes, Content-Range says {length}")
            raise GraphError(400, "invalidRequest", "The Content-Length does not match the "
                             "Content-Range.", "fragmentLengthMismatch")
        if length >= cfg.max_fragment:
            emu.violation("fragment_too_large", req,
                          f"{length} bytes in one fragment; must be < {cfg.max_fragment}")
            raise GraphError(413, "invalidRequest", "The request message is too big.",
                             "maxFragmentLengthExceeded")
        expected = s["received"]
        if start < expected:
            emu.violation("fragment_overlap", req,
                          f"fragment starts at {start}, next expected {expected}")
            raise GraphError(416, "invalidRange", "Uploaded fragment overlaps with existing "
                             "data.", "fragmentOverlap")
        if start > expected:
            emu.violation("fragment_out_of_order", req,
                          f"fragment starts at {start}, next expected {expected}")
            raise GraphError(416, "invalidRange", "Uploaded fragment is out of order.",
                             "fragmentOutOfOrder")
        final = end == total - 1
        mult = cfg.fragment_multiple
        if not final and length % mult and (end + 1) % mult:
            emu.violation("unaligned_fragment", req,
                          f"non-final fragment of {length} bytes is not a multiple of "
                          f"{mult} (320 KiB) and does not end on a 320 KiB boundary")
            if cfg.unaligned_fragment == "reject":
                raise GraphError(400, "invalidRequest", "Fragments other than the last must "
                                 "be a multiple of 320 KiB (327,680 bytes).", "invalidRange")
        if s["total"] is None:
            s["total"] = total
        partial = req.fault("partial_commit")
        keep = length
        if partial is not None and length > 1:
            keep = partial.get("keep")
            if keep is None:
                keep = length // 2 + 1000 if length > 4000 else length // 2
            keep = max(1, min(int(keep), length - 1))
        path = emu.store.part_path(s["id"])
        with open(path, "r+b") as f:
            f.seek(start)
            f.write(req.body[:keep])
            f.truncate(start + keep)
        now = emu.clock.now()
        s["received"] = start + keep
        s["expires"] = max(s["expires"], now + cfg.session_lifetime)
        emu.counters["fragments_committed"] += 1
        emu.counters["bytes_uploaded"] += keep
        self.save(s)
        if partial is not None and keep < length:
            if str(partial.get("then", "reset")) == "503":
                return error_response(req, 503, "serviceNotAvailable",
                                      "The service is not available. Try again later.")
            return Response.reset()
        if s["received"] == total:
            s["status"] = "uploaded"  # a commit refused (409/507) can be retried later
            self.save(s)
            if s["defer"]:
                return Response.json(202, self.status_body(s))
            resp = self.commit(req, s)
            # a partial commit that had nothing to withhold (a 1-byte fragment): the
            # fragment is whole, so the file is committed and only the answer is lost
            return resp if partial is None else Response.reset()
        if partial is not None:
            return Response.reset()  # nothing withheld: the fragment stays, the answer is lost
        body = self.status_body(s)
        if req.fault("missing_ranges"):
            del body["nextExpectedRanges"]
        return Response.json(202, body)

    def get_status(self, req: Request) -> Response:
        s = self.find_session(req)
        self.emu.counters["upload_status_requests"] += 1
        if s["received"] > 0 and not s["resumed"]:
            s["resumed"] = True
            self.emu.counters["sessions_resumed"] += 1
            self.save(s)
        return Response.json(200, self.status_body(s))

    def cancel(self, req: Request) -> Response:
        self.reject_authorization(req, "DELETE")
        s = self.find_session(req)
        self.drop_session(s)
        self.emu.counters["sessions_cancelled"] += 1
        return Response.empty(204)

    def post_commit(self, req: Request) -> Response:
        """Business deferCommit: POST {uploadUrl} with Content-Length: 0."""
        self.reject_authorization(req, "commit POST")
        s = self.find_session(req)
        if self.emu.config.mode != "business":
            raise GraphError(400, "invalidRequest", "On OneDrive Personal commit a deferred "
                             "session with PUT {item path} and @microsoft.graph.sourceUrl.")
        if req.content_length is None:
            self.emu.violation("missing_content_length", req, "commit POST without "
                               "Content-Length: 0")
            raise GraphError(411, "invalidRequest", "Length Required")
        if s["status"] != "uploaded":
            raise GraphError(400, "invalidRequest", "The upload session is incomplete.",
                             "uploadSessionIncomplete")
        return self.commit(req, s)

    def commit_by_source_url(self, req: Request, graph: Graph) -> Response:
        emu = self.emu
        body = graph.json_body(req)
        source = body.get("@microsoft.graph.sourceUrl")
        if not source:
            raise GraphError(400, "invalidRequest", "PUT on an item needs content or "
                             "@microsoft.graph.sourceUrl.")
        if emu.config.mode != "personal":
            raise GraphError(400, "invalidRequest", "On Business commit a deferred session "
                             "with POST {uploadUrl}.")
        addr = req.meta["addr"]
        drive, base, rel = graph.target(req)
        if not rel:
            raise GraphError(400, "invalidRequest", "The name in the provided oneDrive.item "
                             "does not match the name in the URL")
        if body.get("name") is not None and body["name"] != rel[-1]:
            emu.violation("name_mismatch", req, "sourceUrl commit must target the file path, "
                          "not its parent")
            raise GraphError(400, "invalidRequest", "The name in the provided oneDrive.item "
                             "does not match the name in the URL")
        parts = urlsplit(source)
        fake = Request(host="files", method="PUT", target=source, path=parts.path,
                       raw_query=parts.query, query=dict(parse_qsl(parts.query)),
                       headers=req.headers, body=b"", chunked=False, content_length=0,
                       body_length=0, body_discarded=False, arrived=req.arrived)
        if parts.netloc != urlsplit(emu.files_url).netloc or self.session_id(fake) is None:
            raise GraphError(400, "invalidRequest", "Invalid @microsoft.graph.sourceUrl.")
        s = self.find_session(fake)
        if s["received"] != s["total"] or s["total"] is None:
            raise GraphError(400, "invalidRequest", "The upload session is incomplete.",
                             "uploadSessionIncomplete")
        raw = body.get("@microsoft.graph.conflictBehavior")
        behavior = graph.conflict_behavior(req, raw, "replace")
        del addr
        s.update(drive=drive["id"], base=base["id"], segments=rel[:-1], name=rel[-1],
                 item_id=None, conflict=behavior)
        return self.commit(req, s)

    def commit(self, req: Request, s: dict) -> Response:
        emu = self.emu
        model = self.model
        drive = emu.drives[s["drive"]]
        if s["item_id"]:
            existing = model.get(s["item_id"])
            if existing is None:
                raise GraphError(404, "itemNotFound", "The item being replaced was deleted.")
            parent, name = emu.items[existing["parent"]], existing["name"]
        else:
            base = model.get(s["base"])
            if base is None:
                raise GraphError(404, "itemNotFound", "The destination folder was deleted.")
            parent = model.ensure_folders(base, s["segments"],
                                          emu.config.session_auto_create_parents)
            name = s["name"]
            existing = model.child(parent, name)
            if existing is not None and existing["folder"]:
                raise GraphError(409, "nameAlreadyExists", "A folder with this name exists.")
            if existing is not None and s["conflict"] == "fail":
                raise GraphError(409, "nameAlreadyExists",
                                 "The specified item name already exists.")
            if existing is not None and s["conflict"] == "rename":
                name, existing = model.unique_name(parent, name), None
        if model.size_delta(drive, existing, s["total"]) > model.remaining(drive):
            raise GraphError(507, "quotaLimitReached", "Insufficient Space Available")
        part = emu.store.part_path(s["id"])
        hashes = emu.hashes_for(part)
        if existing is None:
            item = model.new_item(drive, parent, name, folder=False, now=emu.clock.now(),
                                  fs=s["fs"])
            status = 201
        else:
            item, status = existing, 200
            if s["fs"]:
                model.apply_fs_info(item, s["fs"])
        if s.get("description") and drive["driveType"] == "personal":
            item["description"] = s["description"]
        model.set_content(item, part, s["total"], hashes)
        self.drop_session(s)
        emu.counters["sessions_completed"] += 1
        rendered = model.render(item)
        if req.fault("hashes_missing"):  # "updated after the item is downloaded" [doc]
            rendered["file"].pop("hashes", None)
        return Response.json(status, rendered)

    # ------------------------------------------------------------ downloads
    def download(self, req: Request) -> Response:
        emu = self.emu
        state = emu.verify_blob("dl", self.download_token(req) or "")
        if state is None:
            raise GraphError(401, "unauthenticated", "Invalid or missing tempauth.")
        if req.header("Authorization") is not None:
            emu.violation("authorization_on_download_url", req,
                          "sent the Graph bearer token to the pre-authenticated download "
                          "host")
        if emu.clock.now() >= state["e"]:
            emu.violation("expired_download_url", req,
                          "used a downloadUrl after it expired; fetch a fresh one")
            status = emu.config.download_expired_status
            if status == 401:
                raise GraphError(401, "unauthenticated", "The access token has expired.",
                                 "expiredToken")
            raise GraphError(status, "gone" if status == 410 else "accessDenied",
                             "The download URL has expired.")
        item = self.model.get(state["i"])
        if item is None or item["folder"]:
            raise GraphError(404, "itemNotFound", "The resource could not be found.")
        size = item["size"]
        path = emu.store.blob_path(item["id"])
        headers = [("Content-Type", item["mime"] or "application/octet-stream"),
                   ("Accept-Ranges", "bytes"), ("ETag", self.model.etag(item)),
                   ("Content-Disposition",
                    "attachment; filename*=UTF-8''" + quote(item["name"], safe=""))]
        rng = None if req.fault("ignore_range") else req.header("Range")
        start, stop, status = 0, size, 200
        if rng is not None:
            m = RANGE.fullmatch(rng.strip())
            a, b = (m.group(1), m.group(2)) if m else ("", "")
            if not (a or b) or (a and b and int(b) < int(a)):
                # RFC 9110 14.2: an invalid Range is ignored, the whole file sent [doc 1.7]
                emu.violation("malformed_range", req, f"Range {rng!r} is not one range "
                              "bytes=A-B, A- or -N; the whole file is sent instead")
            elif a:
                first = int(a)
                if first >= size:
                    return self.unsatisfiable(req, size)
                last = min(int(b), size - 1) if b else size - 1
                start, stop, status = first, last + 1, 206
            else:
                n = int(b)
                if n == 0 or size == 0:
                    return self.unsatisfiable(req, size)
                start, stop, status = max(0, size - n), size, 206
        if status == 206:
            headers.append(("Content-Range", f"bytes {start}-{stop - 1}/{size}"))
        resp = Response(status, b"", headers, file=(path, start, stop - start))
        trunc = req.fault("truncate")
        if trunc is not None and stop - start > 1:
            resp.truncate_to = int(trunc.get("keep", (stop - start) // 2))
        emu.counters["downloads"] += 1
        resp.on_sent = lambda n: emu.count("bytes_downloaded", n)  # what goes out, not asked
        return resp

    def unsatisfiable(self, req: Request, size: int) -> Response:
        resp = error_response(req, 416, "invalidRange", "The requested range is not "
                              "satisfiable.")
        resp.set_header("Content-Range", f"bytes */{size}")
        return resp


def new_guid() -> str:
    return str(uuid.uuid4())
