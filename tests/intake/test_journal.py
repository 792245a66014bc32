"""Who sent what: the structured fields each stored file is logged with (what the journald
handler sends as fields), from the app served in-process over loopback."""
from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path

import aiohttp
from aiohttp import web

from odbackupd.config import load_config
from odbackupd.intake.app import make_app
from odbackupd.intake.store import Store
from odbackupd.intake.tokens import Tokens, load_hashes
from odbackupd.journal import MSG_INTAKE_STORED

from .conftest import TOKENS, Intake


def test_a_stored_file_is_logged_with_who_what_and_from_where(tmp_path: Path, caplog) -> None:  # noqa: ANN001
    config = load_config(Intake(tmp_path).config)
    store = Store(config.intake, config.jobs)
    store.open()
    app = make_app(config, store, Tokens(load_hashes(config.intake.users)))
    data = b"pg_dump output\n" * 1000

    async def body() -> int:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            async with aiohttp.ClientSession() as s:
                r = await s.put(f"http://127.0.0.1:{port}/upload/..%2Fdb.sql", data=data, headers={
                    "Authorization": f"Bearer {TOKENS['bob']}", "X-Forwarded-For": "192.0.2.7"})
                return r.status
        finally:
            await runner.cleanup()

    with caplog.at_level(logging.INFO, logger="odbackupd.intake"):
        assert asyncio.run(body()) == 201
    [rec] = [r for r in caplog.records if getattr(r, "journal_fields", {}).get("MESSAGE_ID")]
    f = rec.journal_fields
    assert f["MESSAGE_ID"] == MSG_INTAKE_STORED and f["INTAKE_USER"] == "bob"
    assert f["INTAKE_NAME"] == "db.sql" and f["INTAKE_REQUESTED_NAME"] == "../db.sql"
    assert f["INTAKE_BYTES"] == len(data) and f["INTAKE_SHA256"] == hashlib.sha256(data).hexdigest()
    assert f["INTAKE_CLIENT"] == "127.0.0.1" and f["INTAKE_FORWARDED_FOR"] == "192.0.2.7"
    assert f["JOB"] == "bob-files" and f["INTAKE_PROTOCOL"] == "put"
    assert TOKENS["bob"] not in caplog.text
