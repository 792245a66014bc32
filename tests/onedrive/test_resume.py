"""``odbackupd --once`` killed with SIGKILL in the middle of a volume's upload session; the
next run resumes that session where the service says it stands."""
from __future__ import annotations

import random
import signal

from odbackupd.snapshot.catalog import list_snapshots
from odbackupd.snapshot.restore import restore_snapshot
from tests.layout import HOST
from tests.snapshot.treegen import assert_same_tree

from .conftest import CHUNK, wait_until


def test_sigkill_mid_volume_then_the_next_run_resends_at_most_one_chunk(od, tmp_path):
    emu = od.emu
    src = tmp_path / "src"
    src.mkdir()
    rnd = random.Random(9)
    for i in range(3):
        # incompressible: ~10 chunks a volume
        (src / f"f{i}.bin").write_bytes(rnd.randbytes(2 << 20))
    od.write([src], volume_size="3MiB", parallel=1)
    od.login()
    # each fragment answer takes 50 ms, so "in the middle of a volume" lasts long enough to hit
    emu.faults.add("delay", "upload.fragment", times=None, seconds=0.05)

    proc = od.once()
    wait_until(lambda: emu.counters["fragments_committed"] >= 4, "a volume half sent", proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert emu.counters["sessions_completed"] == 0, "killed too late: the volume was finished"
    state = od.state()
    (path, rec), = state.sessions("od")  # persisted after every chunk
    assert path.endswith("/vol.000001.zst") and rec["offset"] >= 3 * CHUNK
    state.close()
    sessions_before = emu.counters["sessions_created"]

    emu.faults.clear()
    again = od.once()
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err

    dest = od.destination()
    (m,) = list_snapshots(dest, "t").complete
    assert m.resumes == 1
    assert emu.counters["sessions_resumed"] == 1
    big = [v for v in m.volumes if v["size"] > CHUNK]
    assert emu.counters["sessions_created"] == sessions_before + len(big) - 1, (
        "the killed session was reused")
    stored = (sum(v["size"] for v in m.volumes)
              + emu.item(f"/{od.folder}/{HOST}/t/{m.snapshot}/manifest.json")["size"])
    assert stored <= emu.counters["bytes_uploaded"] <= stored + CHUNK, (
        "more than one chunk was sent again")

    out_dir = tmp_path / "out"
    restore_snapshot(dest, m, out_dir, special_files=True)
    assert_same_tree(src, out_dir / str(src).lstrip("/"))
    dest.close()
    emu.assert_no_violations()
