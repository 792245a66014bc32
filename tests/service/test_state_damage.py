"""The daemon starts on a damaged state database: moved aside, a new one, jobs run."""
from __future__ import annotations

import asyncio
import os

from .conftest import running


def test_daemon_starts_on_a_damaged_state_db(daemon):  # noqa: ANN001
    daemon.write({"etc": ""})
    daemon.state_dir.mkdir()
    (daemon.state_dir / "state.db").write_bytes(os.urandom(8192))

    async def body() -> dict:
        async with running(daemon) as (ctl, rec):
            return await rec.finished(await ctl.backup_now("etc"))

    done = asyncio.run(body())
    assert done["status"] == "completed", done
    assert [p.name for p in daemon.state_dir.iterdir() if p.name.startswith("state.db.damaged-")]
