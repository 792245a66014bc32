"""Fixtures for the daemon core: a real configuration with local destinations, a real
state database, and helpers that wait on controller events instead of sleeping."""
from __future__ import annotations

import asyncio
import contextlib
import textwrap
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from odbackupd.config import load_config
from odbackupd.runner import run_job
from odbackupd.service.controller import Controller, Event


class Daemon:
    """A configuration file with a local destination and jobs named as the test asks."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.dest = tmp / "dest"
        self.dest.mkdir()
        self.state_dir = tmp / "state"
        self.spool = tmp / "spool"
        self.path = tmp / "odbackupd.toml"

    def source(self, name: str, files: int = 3, size: int = 1000) -> Path:
        src = self.tmp / "src" / name
        src.mkdir(parents=True, exist_ok=True)
        for i in range(files):
            (src / f"f{i}.txt").write_bytes(f"{name} {i}\n".encode() * (size // 8 + 1))
        return src

    def write(self, jobs: dict[str, str], daemon_extra: str = "") -> Path:
        """``jobs``: name → extra TOML lines of that job (sources are made per job)."""
        text = textwrap.dedent(f"""\
            [daemon]
            state_dir = "{self.state_dir}"
            spool_dir = "{self.spool}"
            """) + daemon_extra + textwrap.dedent(f"""
            [destination.usb]
            type = "local"
            path = "{self.dest}"
            """)
        for name, extra in jobs.items():
            src = self.source(name)
            text += (f'\n[job.{name}]\nsources = ["{src}"]\ndestinations = ["usb"]\n'
                     'volume_size = "1MiB"\n')
            text += textwrap.dedent(extra)
        self.path.write_text(text)
        return self.path

    def add_drop_job(self, name: str, drop: Path, extra: str = "") -> Path:
        """Append ``[job.NAME]`` taking the files of ``drop`` (made here) to the usb destination."""
        drop.mkdir(exist_ok=True)
        self.path.write_text(self.path.read_text() + f'\n[job.{name}]\ndrop_dir = "{drop}"\n'
                             f'destinations = ["usb"]\n' + textwrap.dedent(extra))
        return drop

    def config(self):  # noqa: ANN201
        return load_config(self.path)


class Recorder:
    """Collects controller events; ``wait`` resolves when a predicate over them holds."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()

    def __call__(self, ev: Event) -> None:
        self.events.append(ev)
        self._changed.set()

    def of(self, kind: str, job: str | None = None) -> list[Event]:
        return [e for e in self.events if e.kind == kind and (job is None or e.job == job)]

    async def wait(self, pred: Callable[[], object], timeout: float = 30.0) -> object:
        async def _loop() -> object:
            while True:
                v = pred()
                if v:
                    return v
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(_loop(), timeout)

    async def finished(self, run_id: int, timeout: float = 30.0) -> dict:
        ev = await self.wait(lambda: next((e for e in self.of("run_finished")
                                           if e.data["run_id"] == run_id), None), timeout)
        return ev.data  # type: ignore[union-attr]


class Gate:
    """Holds real runs at their start until released: a wrapper around run_job, so the run
    itself is the real thing. ``entered`` counts runs that reached the gate."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.entered: list[str] = []

    def __call__(self, config, job, state, **kw):  # noqa: ANN001, ANN204
        self.entered.append(job)
        if not self.open.wait(30):
            raise TimeoutError("gate never opened")
        return run_job(config, job, state, **kw)


@pytest.fixture
def daemon(tmp_path: Path) -> Daemon:
    return Daemon(tmp_path)


@contextlib.asynccontextmanager
async def running(d: Daemon, **kw) -> AsyncIterator[tuple[Controller, Recorder]]:  # noqa: ANN003
    """A started controller over ``d``'s configuration, stopped on the way out."""
    ctl = Controller(d.config(), d.path, **kw)
    rec = Recorder()
    ctl.subscribe(rec)
    await ctl.start()
    try:
        yield ctl, rec
    finally:
        await ctl.stop(timeout=30)
