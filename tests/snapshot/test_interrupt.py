"""A second Ctrl-C stops a run at once (issue 10, item 3): the ``KeyboardInterrupt`` the
signal raises in the builder's thread goes on up instead of becoming a "failed" run, the
upload workers stop, what was checkpointed stays, and the next run resumes the snapshot."""

from __future__ import annotations

import random
import signal
import threading

import pytest

from odbackupd.crypto.age import load_identities
from odbackupd.destinations.local import LocalDestination
from odbackupd.snapshot.builder import JobSpec, SnapshotBuilder
from odbackupd.snapshot.restore import restore_snapshot
from odbackupd.state import StateStore

from .treegen import assert_same_tree


class _CtrlCAfter(LocalDestination):
    """A local disk; once it has stored ``n`` volumes, SIGINT arrives (Python's default
    handler raises KeyboardInterrupt in the main thread, wherever the builder is)."""

    def __init__(self, name, path, n: int) -> None:  # noqa: ANN001
        super().__init__(name, path)
        self.n = n
        self.stored = 0

    def put_file(self, *a, **kw):  # noqa: ANN002, ANN003, ANN201
        obj = super().put_file(*a, **kw)
        self.stored += 1
        if self.stored == self.n:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        return obj


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "age"])
def test_a_second_ctrl_c_stops_the_run_and_the_next_one_resumes(
    setup, tmp_path, age_key, encrypted
):
    src = tmp_path / "src"
    src.mkdir()
    rnd = random.Random(5)
    for i in range(12):
        (src / f"f{i:02d}.bin").write_bytes(
            rnd.randbytes(1 << 20)
        )  # 1 MiB volumes: a dozen of them
    key, recipient = age_key
    setup.write([src], volume_size="1MiB", recipients=[recipient] if encrypted else [])
    cfg = setup.config()
    spec = JobSpec.from_config(cfg.jobs["t"])
    state = StateStore(setup.state / "state.db")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        dest = _CtrlCAfter("usb", setup.dest, n=3)
        with pytest.raises(KeyboardInterrupt):
            SnapshotBuilder(spec, [dest], state, setup.spool, "h").run()
    finally:
        signal.signal(signal.SIGINT, previous)
    inprog = state.inprogress("t")
    assert inprog is not None, "the interrupted snapshot is no longer in progress"
    assert len(state.volumes("t", inprog.snapshot)) >= 3  # its checkpoints are kept

    r = SnapshotBuilder(spec, [LocalDestination("usb", setup.dest)], state, setup.spool, "h").run()
    state.close()
    assert r.ok, r.message
    assert r.resumed and r.snapshot == inprog.snapshot and r.reused_volumes >= 3
    out = tmp_path / "out"
    stats = restore_snapshot(
        LocalDestination("usb", setup.dest),
        r.manifest,
        out,
        identities=load_identities(key) if encrypted else None,
    )
    assert stats.complete
    assert_same_tree(src, out / str(src).lstrip("/"))


def test_a_second_ctrl_c_leaves_no_run_recorded_as_running(setup, tmp_path):
    """``odbackupd --once`` stopped at once: its row in the run history says it was
    cancelled (the next run resumes) instead of "running" until a daemon sweeps it."""
    from odbackupd.lifecycle import RunRequest, run_now
    from odbackupd.runstatus import RunStatus

    src = tmp_path / "src"
    src.mkdir()
    rnd = random.Random(6)
    for i in range(6):
        (src / f"f{i}.bin").write_bytes(rnd.randbytes(1 << 20))
    setup.write([src], volume_size="1MiB")
    cfg = setup.config()
    state = StateStore(setup.state / "state.db")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    original = LocalDestination.put_file

    def put_then_ctrl_c(self, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        obj = original(self, *a, **kw)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        return obj

    try:
        LocalDestination.put_file = put_then_ctrl_c
        with pytest.raises(KeyboardInterrupt):
            run_now(cfg, state, RunRequest("t", "once"))
    finally:
        LocalDestination.put_file = original
        signal.signal(signal.SIGINT, previous)
    runs = state.last_runs("t")
    state.close()
    assert [r["status"] for r in runs] == [RunStatus.CANCELLED], runs
    assert "interrupted" in runs[0]["message"]
