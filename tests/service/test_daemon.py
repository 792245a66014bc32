"""The real daemon in a subprocess (``odbackupd --config X --no-dbus``), watched the way
systemd watches it: through a NOTIFY_SOCKET the test binds, the state database and files.

Synchronisation is on what the daemon says (READY=1, STATUS= lines) and on the state
database, never on sleeps."""
from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from odbackupd.snapshot.catalog import find_snapshot
from odbackupd.snapshot.restore import restore_snapshot
from odbackupd.state import StateStore
from tests.onedrive.conftest import OneDriveSetup, wait_until
from tests.procs import die_with_parent
from tests.snapshot.treegen import assert_same_tree

ROOT = Path(__file__).resolve().parents[2]


class Notify:
    """The systemd side of sd_notify: a datagram socket and every message received."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[dict[str, str]] = []

    def expect(self, pred: Callable[[dict[str, str]], bool], what: str,
               timeout: float = 30.0) -> dict[str, str]:
        """The first message (from now on) for which ``pred`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no notify message {what}; got {self.messages[-10:]}")
            self.sock.settimeout(left)
            try:
                raw = self.sock.recv(65536).decode()
            except TimeoutError:
                continue
            msg = dict(line.split("=", 1) for line in raw.splitlines() if "=" in line)
            self.messages.append(msg)
            if pred(msg):
                return msg

    def close(self) -> None:
        self.sock.close()


class Daemon:
    def __init__(self, config: Path, tmp: Path, notify: Notify, *extra: str,
                 env: dict | None = None) -> None:
        self.stderr_path = tmp / f"stderr.{time.monotonic_ns()}"
        self.stderr = open(self.stderr_path, "w")  # noqa: SIM115 - closed in wait()
        e = {**os.environ, "NOTIFY_SOCKET": str(notify.path), **(env or {})}
        e.pop("JOURNAL_STREAM", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "odbackupd.main", "--config", str(config), "--no-dbus", *extra],
            stdout=subprocess.DEVNULL, stderr=self.stderr, env=e, cwd=ROOT,
            preexec_fn=die_with_parent,
        )

    def log(self) -> str:
        return self.stderr_path.read_text()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.stderr.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


def _runs(state_db: Path) -> list[tuple]:
    db = sqlite3.connect(state_db)
    try:
        return db.execute("SELECT id, job, trigger, status, stats FROM runs ORDER BY id").fetchall()
    finally:
        db.close()


def test_sighup_with_broken_config_keeps_the_old_one(daemon, tmp_path):
    """SIGHUP with a broken file: still running, says why (file:line), old jobs still work."""
    cfg = daemon.write({"w": "watch = true\nquiet_period = 0.2\nmax_delay = 1\n"})
    src = daemon.tmp / "src" / "w"
    notify = Notify(tmp_path / "notify")
    d = Daemon(cfg, tmp_path, notify, env={"WATCHDOG_USEC": "200000"})
    try:
        ready = notify.expect(lambda m: m.get("READY") == "1", "READY=1")
        assert ready["STATUS"].startswith("idle; 1 job")
        notify.expect(lambda m: m.get("WATCHDOG") == "1", "WATCHDOG=1 (WatchdogSec set)")
        good = cfg.read_text()
        cfg.write_text(good.replace('volume_size = "1MiB"', 'volume_size = "lots"'))
        d.signal(signal.SIGHUP)
        reloading = notify.expect(lambda m: m.get("RELOADING") == "1", "RELOADING=1")
        assert int(reloading["MONOTONIC_USEC"]) > 0
        after = notify.expect(lambda m: m.get("READY") == "1", "READY=1 after the reload")
        assert "reload failed, old configuration kept" in after["STATUS"]
        assert f"{cfg}:" in after["STATUS"] and "volume_size" in after["STATUS"]
        wait_until(lambda: "keeping the previous configuration" in d.log(), "the reason on stderr",
                   proc=d.proc)
        log = d.log()
        assert "reload failed" in log and f"{cfg}:" in log and "expected a number of bytes" in log
        assert d.proc.poll() is None
        # the old job still works: a change in its watched source runs it
        (src / "new.txt").write_text("changed after the failed reload\n")
        notify.expect(lambda m: m.get("STATUS", "").startswith("running w"), "STATUS=running w")
        notify.expect(lambda m: m.get("STATUS", "").startswith("idle"), "STATUS=idle after the run")
        runs = _runs(daemon.state_dir / "state.db")
        assert [(r[1], r[2], r[3]) for r in runs] == [("w", "watch", "completed")]
        # a fixed file is taken on the next SIGHUP
        cfg.write_text(good + "\n[job.second]\nsources = [\"" + str(src)
                       + "\"]\ndestinations = [\"usb\"]\n")
        d.signal(signal.SIGHUP)
        fixed = notify.expect(lambda m: m.get("READY") == "1", "READY=1 after the good reload")
        assert "2 jobs" in fixed["STATUS"] and "reload failed" not in fixed["STATUS"]
        d.signal(signal.SIGTERM)
        notify.expect(lambda m: m.get("STOPPING") == "1", "STOPPING=1")
        assert d.wait(20) == 0
    finally:
        d.kill()
        notify.close()


def test_sigterm_during_upload_then_restart_resumes(tmp_path, graph_emulator):
    """SIGTERM while volumes are going up to OneDrive: exit 0 in time, checkpoint kept;
    the next start resumes the same snapshot, which restores identical."""
    od = OneDriveSetup(tmp_path, graph_emulator)
    src = tmp_path / "tree"
    src.mkdir()
    (src / "blob").write_bytes(os.urandom(5 << 20))
    (src / "small.txt").write_text("hello\n")
    # a schedule the daemon "missed" (last run long ago) starts the run at start-up; the
    # bandwidth limit makes the upload last a few seconds, long enough to interrupt it
    cfg = od.write([src], daemon_extra='bandwidth_limit = "1MiB"\n',
                   job_extra='schedule = "0 3 * * *"\n', parallel=1)
    od.login()
    st = od.state()
    st.set("last_run:t", "0")
    st.close()
    state_db = od.state_dir / "state.db"

    def stored_volumes() -> int:
        s = StateStore(state_db)
        try:
            ip = s.inprogress("t")
            return sum(1 for v in s.volumes("t", ip.snapshot) if v.stored) if ip else 0
        finally:
            s.close()

    notify = Notify(tmp_path / "notify")
    d = Daemon(cfg, tmp_path, notify)
    try:
        notify.expect(lambda m: m.get("READY") == "1", "READY=1")
        notify.expect(lambda m: m.get("STATUS", "").startswith("running t"), "STATUS=running t")
        wait_until(lambda: stored_volumes() >= 1, "a volume stored on OneDrive", proc=d.proc)
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        assert d.wait(30) == 0, d.log()
        assert time.monotonic() - t0 < 15, "the daemon took too long to stop"
    finally:
        d.kill()
    s = StateStore(state_db)
    try:
        ip = s.inprogress("t")
        assert ip is not None, "the interrupted snapshot's checkpoint was not kept"
        snapshot = ip.snapshot
        before = sum(1 for v in s.volumes("t", snapshot) if v.stored)
        assert ([(r["trigger"], r["status"]) for r in s.last_runs("t")]
                == [("catch-up", "cancelled")])
    finally:
        s.close()
    assert before >= 1

    d = Daemon(cfg, tmp_path, notify)
    try:
        notify.expect(lambda m: m.get("READY") == "1", "READY=1 after the restart")
        notify.expect(lambda m: m.get("STATUS", "").startswith("running t"), "the resumed run")
        notify.expect(lambda m: m.get("STATUS", "").startswith("idle"), "STATUS=idle after it",
                      timeout=60)
        d.signal(signal.SIGTERM)
        assert d.wait(30) == 0
    finally:
        d.kill()
        notify.close()
    s = StateStore(state_db)
    try:
        runs = s.last_runs("t")
        assert s.inprogress("t") is None
    finally:
        s.close()
    last = runs[0]
    assert (last["trigger"], last["status"], last["snapshot"]) == ("resume", "completed", snapshot)
    assert last["stats"]["resumed"] is True and last["stats"]["reused_volumes"] >= before
    dest = od.destination()
    try:
        out = tmp_path / "restored"
        restore_snapshot(dest, find_snapshot(dest, "t", snapshot), out, special_files=True)
    finally:
        dest.close()
    assert_same_tree(src, out / str(src).lstrip("/"))
    graph_emulator.assert_no_violations()
