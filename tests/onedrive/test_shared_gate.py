"""The Retry-After gate is the host's, not one process's: a command started right after
another one was throttled waits out the same Retry-After instead of sending at once."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

from .conftest import ROOT, wait_until


def test_a_process_started_after_a_throttled_one_waits(od, tmp_path):  # noqa: ANN001
    emu = od.emu
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x\n")
    od.write([src])
    od.login()
    emu.faults.add("throttle", "graph.*", nth=1, retry_after=3)
    first = od.once()
    try:
        wait_until(lambda: emu.counters["throttled"] >= 1, "the first run was throttled",
                   proc=first)
        # and has taken the 429 in: the host's gate (STATE_DIR/throttle/APP) holds its deadline
        gates = od.state_dir / "throttle"
        wait_until(lambda: gates.is_dir() and any(p.stat().st_size for p in gates.iterdir()),
                   "the first run closed the host's gate", timeout=10, proc=first)
    finally:
        first.send_signal(signal.SIGKILL)  # it dies waiting; its gate must outlive it
        first.wait()
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "odctl.cli", "--config", str(od.config_path),
                        "snapshots", "t"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert emu.retry_after_violations == 0, emu.violations
    assert time.monotonic() - t0 >= 2.0  # it waited (most of) the 3 s the first run was told
    emu.assert_no_violations()
