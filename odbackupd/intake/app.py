"""The intake's HTTP surface (aiohttp 3.8): a write-only upload service.

Exactly these, and every other method or path is refused (404 for a path, 405 for a
method; no body says more):

    GET  /                      the upload page (and /upload.js, /upload.css)
    PUT  /upload/NAME           a whole file in the body (curl -T); 201 {name, size, sha256}
    OPTIONS /files              tus 1.0 discovery
    POST /files                 tus creation  (Upload-Length, Upload-Metadata filename)
    HEAD|PATCH|DELETE /files/ID tus offset, append (checksum), termination: the uploader only

Identity comes from the bearer token alone. A name is only ever a name in the token's own
area, and an upload ID that is someone else's answers exactly like one that does not exist.
There is no way to list, download or delete a stored file.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from aiohttp import web

from ..journal import MSG_INTAKE_STORED
from .body import BodyCut, BodyTooLarge, DiskFull, Sink, stream_body
from .landing import sanitize_name
from .store import Store
from .tokens import Tokens

log = logging.getLogger("odbackupd.intake")

__all__ = ["make_app"]

Handler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
PAGE_FILES = {"/": ("index.html", "text/html"), "/upload.js": ("upload.js", "text/javascript"),
              "/upload.css": ("upload.css", "text/css")}


def text(status: int, message: str, **headers: str) -> web.Response:
    resp = web.Response(status=status, text=message + "\n", headers=headers)
    return resp


def client_fields(request: web.Request) -> dict[str, str]:
    out = {"INTAKE_CLIENT": request.remote or "local socket"}
    fwd = request.headers.get("X-Forwarded-For")
    if fwd:
        out["INTAKE_FORWARDED_FOR"] = fwd[:200]
    return out


class Intake:
    def __init__(self, config: Any, store: Store, tokens: Tokens) -> None:
        self.config = config
        self.intake = config.intake
        self.store = store
        self.tokens = tokens
        pkg = importlib.resources.files("odbackupd.intake") / "page"
        self.page = {p: (pkg.joinpath(f).read_bytes(), ct) for p, (f, ct) in PAGE_FILES.items()}
        from .tus import Tus

        self.tus = Tus(self)

    # ---- routing ------------------------------------------------------------------------

    def route(self, request: web.Request) -> tuple[dict[str, Handler] | None, str]:
        """The handlers by method for this path, and the path's argument."""
        raw = request.raw_path.split("?", 1)[0]
        if raw in PAGE_FILES:
            return {"GET": self.get_page, "HEAD": self.get_page}, raw
        if raw.startswith("/upload/") and len(raw) > len("/upload/"):
            name = unquote_to_bytes(raw[len("/upload/"):]).decode("utf-8", "replace")
            return {"PUT": self.put}, name
        if raw in ("/files", "/files/"):
            return {"OPTIONS": self.tus.options, "POST": self.tus.create}, raw
        if raw.startswith("/files/") and raw.count("/") == 2:
            arg = raw[len("/files/"):]
            return {"OPTIONS": self.tus.options, "HEAD": self.tus.head, "PATCH": self.tus.patch,
                    "DELETE": self.tus.delete}, arg
        return None, ""

    def refusal(self, request: web.Request) -> web.Response | None:
        """404/405 for what this service does not do at all, before anything else."""
        handlers, _ = self.route(request)
        if handlers is None:
            return text(404, "not found")
        if request.method not in handlers:
            return text(405, "method not allowed", Allow=", ".join(handlers))
        return None

    def user(self, request: web.Request) -> str | None:
        return self.tokens.identify(request.headers.get("Authorization"))

    def unauthorized(self, request: web.Request) -> web.Response:
        log.info("intake: refused a request without a valid token", extra={"journal_fields": {
            **client_fields(request), "INTAKE_METHOD": request.method}})
        return text(401, "a valid bearer token is needed (Authorization: Bearer TOKEN)",
                    **{"WWW-Authenticate": 'Bearer realm="odbackupd-intake"',
                       "Tus-Resumable": "1.0.0"})  # tus clients want it on every answer

    async def handle(self, request: web.Request) -> web.StreamResponse:
        refused = self.refusal(request)
        if refused is not None:
            return refused
        handlers, arg = self.route(request)
        assert handlers is not None
        return await handlers[request.method](request, arg)

    async def expect(self, request: web.Request) -> web.StreamResponse | None:
        """``Expect: 100-continue``: refuse before the client sends a (large) body."""
        refused = self.refusal(request) or (
            None if self.user(request) else self.unauthorized(request))
        if refused is None and request.method == "PUT":
            refused = self.put_precheck(request, self.user(request) or "")
        if refused is not None:
            refused.force_close()
            return refused
        if request.headers.get("Expect", "").lower() != "100-continue":
            raise web.HTTPExpectationFailed(text="only 100-continue is understood\n")
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return None

    # ---- the page -----------------------------------------------------------------------

    async def get_page(self, request: web.Request, path: str) -> web.StreamResponse:
        body, ctype = self.page[path]
        return web.Response(body=body, content_type=ctype, charset="utf-8",
                            headers={"Content-Security-Policy": CSP})

    # ---- PUT /upload/NAME ---------------------------------------------------------------

    def put_precheck(self, request: web.Request, user: str) -> web.Response | None:
        length = request.content_length
        if length is not None and length > self.intake.max_file_size:
            return text(413, f"larger than max_file_size ({self.intake.max_file_size} bytes)")
        room = self.store.room(user)
        if length is not None and room is not None and length > room:
            return self.quota_exceeded(user)
        return None

    def quota_exceeded(self, user: str) -> web.Response:
        return text(507, f"the quota of '{user}' is used up: wait until the files sent are "
                    "backed up")

    async def put(self, request: web.Request, raw_name: str) -> web.StreamResponse:
        user = self.user(request)
        if user is None:
            return self.unauthorized(request)
        refused = self.put_precheck(request, user)
        if refused is not None:
            refused.force_close()
            return refused
        name = sanitize_name(raw_name)
        area = self.store.areas[user]
        partial = self.store.put_partial(user)
        sha = hashlib.sha256()
        sink = Sink(partial, 0, [sha], create=True)
        length = request.content_length
        area.reserved += length or 0
        counted = length or 0
        base = self.store.usage(user)  # with this body's Content-Length, if it has one

        def check(received: int) -> None:  # a chunked body is checked as it grows
            nonlocal counted
            if received > (length if length is not None else self.intake.max_file_size):
                raise BodyTooLarge("size")
            if length is None and received - counted >= 1 << 16:
                area.reserved += received - counted
                counted = received
                if area.quota is not None and base + received > area.quota:
                    raise BodyTooLarge("quota")

        landed = None
        try:
            got = await stream_body(request, sink, check, [])
            if length is None and area.quota is not None and base + got > area.quota:
                raise BodyTooLarge("quota")
            if length is not None and got != length:
                return text(400, "the body ended before Content-Length")
            await sink.sync_async()
            landed = self.store.land(user, partial, name)
        except BodyTooLarge as e:
            resp = self.quota_exceeded(user) if e.what == "quota" else \
                text(413, f"larger than max_file_size ({self.intake.max_file_size} bytes)")
            resp.force_close()
            return resp
        except BodyCut:
            log.info("intake: the PUT of '%s' by %s was cut off after %d bytes; nothing stored",
                     name, user, sink.offset, extra={"journal_fields": {
                         "INTAKE_USER": user, "INTAKE_NAME": name, **client_fields(request)}})
            return text(400, "the body ended early; nothing was stored")
        except DiskFull:
            log.warning("intake: disk full while receiving '%s' from %s", name, user,
                        extra={"journal_fields": {"INTAKE_USER": user, "INTAKE_NAME": name}})
            return text(507, "the server's disk is full; nothing was stored")
        finally:
            area.reserved -= counted
            sink.close()
            if landed is None:
                partial.unlink(missing_ok=True)
        self.stored(request, user, raw_name, landed, sink.offset, sha.hexdigest(), "put")
        return web.Response(status=201, content_type="application/json", text=json.dumps(
            {"name": landed, "size": sink.offset, "sha256": sha.hexdigest()}) + "\n")

    def stored(self, request: web.Request, user: str, requested: str, name: str, size: int,
               sha256: str, protocol: str) -> None:
        job = self.intake.users[user].drop_job
        log.info("intake: %s sent %s (%d bytes, SHA-256 %s) into the drop directory of job %s",
                 user, name, size, sha256, job, extra={"journal_fields": {
                     "MESSAGE_ID": MSG_INTAKE_STORED, "INTAKE_USER": user, "INTAKE_NAME": name,
                     "INTAKE_REQUESTED_NAME": requested[:300], "INTAKE_BYTES": size,
                     "INTAKE_SHA256": sha256, "INTAKE_PROTOCOL": protocol, "JOB": job,
                     **client_fields(request)}})


@web.middleware
async def security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        resp = await handler(request)
    except web.HTTPException as e:
        resp = e
    for k, v in SECURITY_HEADERS.items():
        resp.headers.setdefault(k, v)
    resp.headers["Server"] = "odbackupd-intake"  # not aiohttp's name and version
    return resp


def make_app(config: Any, store: Store, tokens: Tokens) -> web.Application:
    intake = Intake(config, store, tokens)
    app = web.Application(middlewares=[security_headers], client_max_size=1 << 20)
    app["intake"] = intake
    app.router.add_route("*", "/{tail:.*}", intake.handle, expect_handler=intake.expect)
    return app
