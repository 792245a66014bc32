"""Cancelling a run that is really going, through the daemon on the private bus.

The run goes to OneDrive on the Graph emulator with ``[daemon] bandwidth_limit`` and one
upload at a time, so storing its volumes takes seconds while building them takes none:
the test cancels once the emulator has committed a volume (an observed state, not a
duration). A sysadmin relies on: ``odctl cancel`` (or the bare D-Bus Cancel) stopping the
run, RunFinished saying "cancelled", ``odctl backup-now --wait`` that was following it
exiting with the documented code, the job going back to idle, and the next run carrying
on the same snapshot without sending again what was stored, which then restores intact.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from odbackupd.bus import names
from tests.layout import HOST
from tests.onedrive.conftest import OneDriveSetup, wait_until
from tests.snapshot.treegen import assert_same_tree

from .conftest import Daemon, PrivateBus, busctl, odctl

LIMIT = 'bandwidth_limit = "1MiB"\n'  # the run's volumes take about six seconds to store


class Follower:
    """``odctl backup-now t --wait --json`` started before the cancel, in the background."""

    def __init__(self, bus: PrivateBus) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "odctl.cli", "backup-now", "t", "--wait", "--json"],
            env=bus.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(self, timeout: float = 60) -> tuple[int, dict, str]:
        out, err = self.proc.communicate(timeout=timeout)
        assert out, err
        return self.proc.returncode, json.loads(out), err


def job_property(bus: PrivateBus, prop: str) -> str:
    r = busctl(bus, "get-property", names.BUS_NAME, names.job_path("t"), names.JOB_IFACE, prop)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def write_config(od: OneDriveSetup, src: Path, *, limited: bool) -> None:
    od.write([src], parallel=1, daemon_extra=LIMIT if limited else "")


@pytest.fixture
def slow_onedrive(graph_emulator, private_bus: PrivateBus, tmp_path: Path):  # noqa: ANN001, ANN201
    """A logged-in OneDrive job "t" of about seven 1 MiB volumes (incompressible), uploaded
    at 1 MiB/s, one volume at a time; the daemon serving it."""
    src = tmp_path / "tree"
    (src / "d").mkdir(parents=True)
    for i in range(7):
        (src / "d" / f"blob{i}").write_bytes(os.urandom(900 * 1024))
    (src / "small.txt").write_text("small\n")
    od = OneDriveSetup(tmp_path, graph_emulator)
    write_config(od, src, limited=True)
    od.login()
    daemon = Daemon(od.config_path, private_bus)
    try:
        yield od, src, daemon
    finally:
        daemon.stop()


def test_cancel_a_live_run_then_the_next_run_resumes_it(slow_onedrive, graph_emulator, private_bus,
                                                        tmp_path):
    od, src, daemon = slow_onedrive
    emu = graph_emulator

    # 1: odctl cancel while the first volumes go up
    follower = Follower(private_bus)
    wait_until(lambda: emu.counters["sessions_completed"] >= 1, "the first volume stored",
               proc=follower.proc)
    r = odctl(private_bus, "cancel", "t")
    assert (r.returncode, r.stdout) == (
        0, "t: cancelling; the next run resumes the snapshot\n"), r.stderr
    rc, out, err = follower.result()
    first = out["result"]
    assert first["status"] == "cancelled" and "resumes" in first["message"], out
    # as odctl --help documents
    assert rc == names.EXIT_FAILED and "cancelled" in names.EXIT_CODES[rc]
    assert first["snapshot"] and not emu.exists(
        f"{od.folder}/{HOST}/t/{first['snapshot']}/manifest.json")
    # RunFinished comes once the job is idle
    assert job_property(private_bus, "State") == 's "idle"'
    assert job_property(private_bus, "LastResult") == 's "cancelled"'
    assert job_property(private_bus, "RunId") == "t 0"

    # 2: the next run resumes it; cancelled again, this time with a bare D-Bus call
    stored = emu.counters["sessions_completed"]
    follower = Follower(private_bus)
    wait_until(lambda: emu.counters["sessions_completed"] > stored, "another volume stored",
               proc=follower.proc)
    r = busctl(private_bus, "call", names.BUS_NAME, names.ROOT_PATH, names.MANAGER_IFACE,
               "Cancel", "s", "t")
    assert (r.returncode, r.stdout.strip()) == (0, "b true"), r.stderr
    rc, out, _ = follower.result()
    second = out["result"]
    assert rc == names.EXIT_FAILED and second["status"] == "cancelled", out
    assert second["snapshot"] == first["snapshot"] and second["resumed"] is True
    assert second["reused_volumes"] >= 1
    assert job_property(private_bus, "State") == 's "idle"'

    # 3: without the bandwidth limit (reload), the third run finishes the same snapshot
    write_config(od, src, limited=False)
    assert odctl(private_bus, "reload").returncode == 0
    sessions_before = emu.counters["sessions_created"]
    r = odctl(private_bus, "backup-now", "t", "--wait", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    third = json.loads(r.stdout)["result"]
    assert third["status"] == "completed" and third["snapshot"] == first["snapshot"]
    assert third["resumed"] is True and third["reused_volumes"] >= 2
    volumes = [n for n in emu.list_dir(f"{od.folder}/{HOST}/t/{first['snapshot']}")
               if n.startswith("vol.")]
    # only the volumes not stored before were sent again (and a session left half-way resumed)
    assert (emu.counters["sessions_created"] - sessions_before
            <= len(volumes) - third["reused_volumes"])

    out_dir = tmp_path / "restored"
    r = odctl(private_bus, "restore", "t", "--to", str(out_dir), "--config", str(od.config_path),
              "--json", "--special-files")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["snapshot"] == first["snapshot"]
    assert_same_tree(src, out_dir / str(src).lstrip("/"))

    # 4: nothing runs now: cancelling is a plain "nothing to cancel", not an error
    r = odctl(private_bus, "cancel", "t")
    assert (r.returncode, r.stdout) == (0, "t: nothing running or queued\n"), r.stderr
    r = busctl(private_bus, "call", names.BUS_NAME, names.ROOT_PATH, names.MANAGER_IFACE,
               "Cancel", "s", "t")
    assert (r.returncode, r.stdout.strip()) == (0, "b false"), r.stderr
    assert daemon.alive and job_property(private_bus, "LastResult") == 's "completed"'
    emu.assert_no_violations()
