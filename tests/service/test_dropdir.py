"""Drop directories with real inotify: complete files only (closed or moved in), one real
snapshot each that restores the file, removal only after a verified upload, retries."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import subprocess
import textwrap
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from odbackupd.config import load_config
from odbackupd.crypto.age import load_identities
from odbackupd.destinations.local import LocalDestination
from odbackupd.runner import drop_series, run_job
from odbackupd.service.dropdir import DropDir, is_temporary_name, open_for_writing
from odbackupd.snapshot.catalog import list_snapshots
from odbackupd.snapshot.restore import restore_snapshot
from odbackupd.state import StateStore
from tests.layout import series_dir

SETTLE = 0.2


class Taker:
    """``on_file`` and ``on_outcome``: records each call with the file's content, answers
    from ``results`` (default True; or delegates to ``inner``) and resolves futures:
    ``called(name, nth)`` when the file is offered, ``ended(name, what)`` when the
    DropDir is done with an attempt."""

    def __init__(self, loop: asyncio.AbstractEventLoop, results: list[bool | Exception] = (),
                 inner: Callable[[Path], Awaitable[bool]] | None = None) -> None:
        self.loop = loop
        self.calls: list[tuple[str, bytes]] = []
        self.outcomes: list[tuple[str, str]] = []
        self.results = list(results)
        self.inner = inner
        self.during: Callable[[Path], Awaitable[None]] | None = None
        self._waiters: list[tuple[tuple[str, str], int, asyncio.Future]] = []

    def _resolve(self, key: tuple[str, str], n: int) -> None:
        for w in [w for w in self._waiters if w[0] == key and w[1] <= n]:
            self._waiters.remove(w)
            w[2].set_result(n)

    def _wait(self, key: tuple[str, str], nth: int) -> asyncio.Future:
        f = self.loop.create_future()
        self._waiters.append((key, nth, f))
        return f

    async def __call__(self, path: Path) -> bool:
        self.calls.append((path.name, path.read_bytes()))
        if self.during is not None:
            await self.during(path)
        self._resolve((path.name, "called"), self.names().count(path.name))
        if self.inner is not None:
            return await self.inner(path)
        r = self.results.pop(0) if self.results else True
        if isinstance(r, Exception):
            raise r
        return r

    def outcome(self, path: Path, what: str) -> None:
        self.outcomes.append((path.name, what))
        self._resolve((path.name, what), self.outcomes.count((path.name, what)))

    def called(self, name: str, nth: int = 1) -> asyncio.Future:
        """Resolves once ``name`` was offered ``nth`` times."""
        return self._wait((name, "called"), nth)

    def ended(self, name: str, what: str = "removed", nth: int = 1) -> asyncio.Future:
        """Resolves once an attempt on ``name`` ended ``what`` for the ``nth`` time."""
        return self._wait((name, what), nth)

    def names(self) -> list[str]:
        return [n for n, _ in self.calls]


@contextlib.contextmanager
def dropping(path: Path, taker: Taker, **kw: object) -> Iterator[DropDir]:
    d = DropDir(asyncio.get_running_loop(), "t", path, on_file=taker, on_outcome=taker.outcome,
                **kw)  # type: ignore[arg-type]
    d.start()
    try:
        yield d
    finally:
        d.stop()


async def marker(drop: Path, taker: Taker, name: str) -> None:
    """Move a complete file in and wait until it is taken. Files are taken in the order
    they became complete, so everything complete before the marker was offered first."""
    fut = taker.called(name)
    tmp = drop.parent / name
    tmp.write_text("marker\n")
    os.rename(tmp, drop / name)
    await asyncio.wait_for(fut, 10)


def test_slow_writer_is_not_taken_until_it_closes(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()

    async def body() -> None:
        taker = Taker(asyncio.get_running_loop())
        with dropping(drop, taker, settle=SETTLE):
            done = taker.ended("dump.sql")
            with open(drop / "dump.sql", "wb") as w:
                for i in range(3):
                    w.write(b"INSERT %d;\n" % i * 1000)
                    w.flush()
                    await marker(drop, taker, f"m{i}")
                    assert "dump.sql" not in taker.names()
                    assert (drop / "dump.sql").exists()
            await asyncio.wait_for(done, 10)
            whole = b"".join(b"INSERT %d;\n" % i * 1000 for i in range(3))
            assert [c for c in taker.calls if c[0] == "dump.sql"] == [("dump.sql", whole)]
            assert sorted(os.listdir(drop)) == []

    asyncio.run(body())


def test_temporary_names_and_subdirectories(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    assert all(map(is_temporary_name, [".x", "a.tmp", "b.part", "c~"]))
    assert not any(map(is_temporary_name, ["a.txt", "tmp", "x.partial"]))

    async def body() -> None:
        taker = Taker(asyncio.get_running_loop())
        with dropping(drop, taker, settle=SETTLE):
            for name in (".upload.abc", "big.iso.part", "data.tmp", "notes~"):
                (drop / name).write_text("being written\n")
            (drop / "sub").mkdir()
            (drop / "sub" / "inner.txt").write_text("in a subdirectory\n")
            await marker(drop, taker, "m1")
            assert taker.names() == ["m1"]
            # renamed to its final name: complete
            done = taker.ended("big.iso")
            os.rename(drop / "big.iso.part", drop / "big.iso")
            await asyncio.wait_for(done, 10)
            assert sorted(os.listdir(drop)) == [".upload.abc", "data.tmp", "notes~", "sub"]
            assert (drop / "sub" / "inner.txt").exists()

    asyncio.run(body())


def test_files_present_at_start_are_taken_once_stable(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "old1.bin").write_bytes(b"1" * 1000)
    (drop / "old2.bin").write_bytes(b"2" * 1000)
    (drop / ".hidden").write_bytes(b"h")

    async def body() -> None:
        loop = asyncio.get_running_loop()
        taker = Taker(loop)
        started = loop.time()
        with dropping(drop, taker, settle=SETTLE):
            first = taker.called("old1.bin")
            await asyncio.wait_for(asyncio.gather(first, taker.ended("old1.bin"),
                                                  taker.ended("old2.bin")), 10)
            assert first.result() and loop.time() - started >= SETTLE - 0.01  # once stable
            assert os.listdir(drop) == [".hidden"]

    asyncio.run(body())


class Holder:
    """Another process that holds ``path`` open for writing (appending) until ``release()``."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(["sh", "-c", 'exec 3>>"$0"; echo held; read x', str(path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline() == "held\n"

    def release(self) -> None:
        self.proc.communicate("\n", timeout=30)


def test_open_for_writing_asks_the_kernel(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"x")
    assert open_for_writing(f) is False
    h = Holder(f)
    try:
        assert open_for_writing(f) is True  # another process's writable descriptor
    finally:
        h.release()
    assert open_for_writing(f) is False
    with open(f, "rb"):
        assert open_for_writing(f) is False  # readers do not count
    with open(f, "ab"):
        assert open_for_writing(f) is True  # our own writers do
    assert open_for_writing(tmp_path / "absent") is None
    os.symlink(f, tmp_path / "link")
    assert open_for_writing(tmp_path / "link") is None  # never through a symlink


async def held_open(d: DropDir, n: int) -> None:
    """Until the ``n``-th settle check found the file stable but open for writing."""
    async def poll() -> None:
        while d.held_open < n:
            await asyncio.sleep(0.01)  # polls the condition
    await asyncio.wait_for(poll(), 10)


def test_a_file_held_open_for_writing_is_not_taken(tmp_path):
    """Present at start and unchanged for many quiet periods, but a writer still has it
    open (no close was seen: the daemon was not running when it was opened): not taken
    until the writer closes it. The same for a file one writer closed while another still
    writes it."""
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "dump.sql").write_bytes(b"BEGIN;\n")
    held = Holder(drop / "dump.sql")

    async def body() -> None:
        taker = Taker(asyncio.get_running_loop())
        with dropping(drop, taker, settle=SETTLE) as d:
            await held_open(d, 3)  # stable for three quiet periods, open for writing each time
            await marker(drop, taker, "m1")
            assert "dump.sql" not in taker.names()
            done = taker.ended("dump.sql")
            with open(drop / "dump.sql", "ab") as w:  # the last write, then we close
                w.write(b"COMMIT;\n")
            await marker(drop, taker, "m2")  # our close was seen; the holder still has it open
            await held_open(d, d.held_open + 2)
            assert "dump.sql" not in taker.names()
            held.release()
            await asyncio.wait_for(done, 10)
            assert ([c for c in taker.calls if c[0] == "dump.sql"]
                    == [("dump.sql", b"BEGIN;\nCOMMIT;\n")])

    try:
        asyncio.run(body())
    finally:
        if held.proc.poll() is None:
            held.release()


def test_a_hard_link_is_taken_once_stable(tmp_path):
    """``ln`` into the drop directory: a new name, no write, no close; it is taken once it
    has been stable for the quiet period and nobody has it open for writing."""
    drop = tmp_path / "drop"
    drop.mkdir()
    original = tmp_path / "report.pdf"
    original.write_bytes(b"%PDF-1.7 report\n")

    async def body() -> None:
        loop = asyncio.get_running_loop()
        taker = Taker(loop)
        with dropping(drop, taker, settle=SETTLE):
            done = taker.ended("report.pdf")
            linked = loop.time()
            os.link(original, drop / "report.pdf")
            await asyncio.wait_for(done, 10)
            assert loop.time() - linked >= SETTLE - 0.01
            assert taker.calls == [("report.pdf", b"%PDF-1.7 report\n")]
            assert os.listdir(drop) == [] and original.read_bytes() == b"%PDF-1.7 report\n"

    asyncio.run(body())


def test_failed_upload_keeps_the_file_and_retries(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()

    async def body() -> None:
        taker = Taker(asyncio.get_running_loop(), [False, RuntimeError("destination offline")])
        with dropping(drop, taker, settle=SETTLE, retry_initial=0.05, retry_max=0.1) as d:
            failed_twice, removed = taker.ended("a.bin", "failed", 2), taker.ended("a.bin")
            (drop / "a.bin").write_bytes(b"payload")
            await asyncio.wait_for(failed_twice, 10)
            assert (drop / "a.bin").exists()  # refused, then raised: still there
            await asyncio.wait_for(removed, 10)
            assert not (drop / "a.bin").exists()
            assert taker.names() == ["a.bin"] * 3 and d.failed == 2 and d.taken == 1
            assert taker.outcomes == [("a.bin", "failed")] * 2 + [("a.bin", "removed")]

    asyncio.run(body())


def test_file_changed_during_upload_is_kept(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()

    async def body() -> None:
        taker = Taker(asyncio.get_running_loop())

        async def rewrite(path: Path) -> None:
            if len(taker.calls) == 1:
                path.write_bytes(b"version 2")  # the sender writes it again meanwhile

        taker.during = rewrite
        with dropping(drop, taker, settle=SETTLE) as d:
            removed = taker.ended("f")
            (drop / "f").write_bytes(b"version 1")
            await asyncio.wait_for(removed, 10)
            assert not (drop / "f").exists()
            assert taker.calls == [("f", b"version 1"), ("f", b"version 2")] and d.taken == 1
            assert taker.outcomes == [("f", "changed"), ("f", "removed")]

    asyncio.run(body())


def test_missing_drop_dir_is_a_clear_error(tmp_path):
    async def body() -> None:
        d = DropDir(asyncio.get_running_loop(), "t", tmp_path / "nope",
                    on_file=Taker(asyncio.get_running_loop()))
        with pytest.raises(FileNotFoundError,
                           match=r"job t: drop_dir '.*/nope' does not exist; create it"):
            d.start()

    asyncio.run(body())


def test_drop_file_becomes_a_restorable_encrypted_snapshot(tmp_path):
    """The controller's on_file, for real: run_job on the drop series of a drop-only job."""
    key = tmp_path / "key.txt"
    subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    recipient = subprocess.run(["age-keygen", "-y", str(key)], check=True, capture_output=True,
                               text=True).stdout.strip()
    drop, dest = tmp_path / "drop", tmp_path / "dest"
    drop.mkdir()
    dest.mkdir()
    cfg_path = tmp_path / "odbackupd.toml"
    cfg_path.write_text(textwrap.dedent(f"""\
        [daemon]
        state_dir = "{tmp_path / 'state'}"
        spool_dir = "{tmp_path / 'spool'}"

        [destination.usb]
        type = "local"
        path = "{dest}"

        [job.intake]
        drop_dir = "{drop}"
        destinations = ["usb"]
        recipients = ["{recipient}"]
        volume_size = "1MiB"
        """))
    config = load_config(cfg_path)
    payload = os.urandom(300_000) * 4  # 1.2 MB: two volumes
    state = StateStore(config.daemon.state_dir / "state.db")

    async def body() -> None:
        loop = asyncio.get_running_loop()
        results: list = []

        async def on_file(path: Path) -> bool:
            run = await loop.run_in_executor(None, functools.partial(
                run_job, config, "intake", state, sources=[path], series=drop_series("intake"),
                trigger="drop"))
            results.append(run)
            return run.result.ok

        taker = Taker(loop, inner=on_file)
        with dropping(drop, taker, settle=SETTLE):
            removed = taker.ended("vm.vma")
            (tmp_path / "vm.vma").write_bytes(payload)
            os.rename(tmp_path / "vm.vma", drop / "vm.vma")
            await asyncio.wait_for(removed, 60)
        assert not (drop / "vm.vma").exists()
        assert len(results) == 1 and results[0].result.ok

    try:
        asyncio.run(body())
    finally:
        state.close()
    d = LocalDestination("usb", dest)
    snaps = list_snapshots(d, "intake+drop").complete
    assert len(snaps) == 1 and snaps[0].files == 1 and len(snaps[0].volumes) == 2
    assert list_snapshots(d, "intake").complete == []
    # the manifest is plain text beside encrypted volumes: it names the directory, not the file
    manifest = next(series_dir(dest, "intake+drop").glob("*/manifest.json")).read_text()
    assert "vm.vma" not in manifest and snaps[0].sources == [str(drop)]
    out = tmp_path / "out"
    restore_snapshot(d, snaps[0], out, identities=load_identities(key))
    assert (out / str(drop / "vm.vma").lstrip("/")).read_bytes() == payload
