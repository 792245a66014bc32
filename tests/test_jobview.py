"""odbackupd.jobview: one description of a job and of its snapshots, for the daemon's
D-Bus API and for odctl without a daemon."""
from __future__ import annotations

import datetime as dt
import time

from odbackupd import jobview
from odbackupd.bus.adapter import to_asv
from odbackupd.config import load_config_text
from odbackupd.snapshot.manifest import Manifest
from odbackupd.state import StateStore
from odctl.client import unpack

CONFIG = """
[destination.disk]
type = "local"
path = "/srv/backup"

[job.web]
sources = ["/srv/www"]
destinations = ["disk"]
schedule = "30 2 * * *"

[job.inbox]
sources = ["/srv/shared"]
destinations = ["disk"]
drop_dir = "/srv/inbox"
watch = true
"""


def _config():  # noqa: ANN202
    return load_config_text(CONFIG, "odbackupd.toml")


def test_next_fire_is_local_wall_clock_time_after_the_given_moment():
    start = dt.datetime(2026, 3, 10, 2, 30).timestamp()  # exactly a cron time: the next one
    nxt = jobview.next_fire("30 2 * * *", start)
    assert dt.datetime.fromtimestamp(nxt) == dt.datetime(2026, 3, 11, 2, 30)
    utc = dt.UTC
    after = dt.datetime(2026, 1, 1, 5, 10, tzinfo=utc).timestamp()
    assert jobview.next_fire("0 * * * *", after, utc) == after + 50 * 60


def test_last_run_skips_runs_still_queued_or_running(tmp_path):
    state = StateStore(tmp_path / "state.db")
    try:
        assert jobview.last_run(state.last_runs("web")) is None
        done = state.run_started("web", "schedule", started=100.0)
        state.run_finished(done, "failed", "disk full", finished=160.0)
        state.run_started("web", "manual")  # running now
        state.run_queued("web", "watch")
        last = jobview.last_run(state.last_runs("web", 5))
    finally:
        state.close()
    # no snapshot: the key is left out
    assert last == {"run_id": done, "status": "failed", "message": "disk full",
                    "trigger": "schedule", "started": 100.0, "finished": 160.0}


def test_job_info_says_what_the_caller_knows_and_omits_the_rest():
    cfg = _config()
    web = jobview.job_info("web", cfg.jobs["web"], next_run=1234.0,
                           last={"run_id": 3, "status": "completed"})
    assert web == {"name": "web", "state": "idle", "queued": False, "sources": ["/srv/www"],
                   "destinations": ["disk"], "encrypted": False, "watch": False,
                   "schedule": "30 2 * * *", "next_run": 1234.0,
                   "last_run": {"run_id": 3, "status": "completed"}}
    inbox = jobview.job_info("inbox", cfg.jobs["inbox"], state="running", run_id=7,
                             progress={"percent": 12.5}, next_run=99.0)
    assert inbox["drop_dir"] == "/srv/inbox" and inbox["watch"] is True
    assert inbox["run_id"] == 7 and inbox["progress"] == {"percent": 12.5}
    assert "next_run" not in inbox and "schedule" not in inbox  # no schedule: no cron time


def _manifest(**kw) -> Manifest:  # noqa: ANN003
    base = dict(job="web", snapshot="20260101T020000Z-ab12", host="h1", started=time.time() - 60,
                finished=time.time(), tool_version="0", compression={}, encryption=None,
                sources=["/srv/www"], files=3, dirs=1, others=0, data_bytes=300, tar_bytes=4096,
                volumes=[{"name": "vol.000001.zst", "size": 200}], sequence=4)
    base.update(kw)
    return Manifest(**base)


def test_the_daemons_listing_and_the_offline_listing_give_odctl_the_same_rows():
    """A snapshot listed by the daemon (through the bus, where None is left out) and one
    listed by odctl itself read the same, in the words of a run's result."""
    for m in (_manifest(),
              _manifest(kind="incremental", base="20251231T020000Z-cd34", warnings={"vanished": 2},
                        changes={"new": 1, "changed": 0, "unchanged": 2, "deleted": 0})):
        entry = jobview.snapshot_entry(m, "disk")
        assert entry["status"] == "complete" and entry["id"] == m.snapshot
        over_the_bus = unpack(to_asv(entry))
        offline = jobview.listing_row(entry, str)
        daemon = jobview.listing_row(over_the_bus, str)
        assert daemon == {k: v for k, v in offline.items() if v is not None or k == "base"}
        assert offline["snapshot"] == m.snapshot and offline["time"] == str(m.started)
        assert offline["stored_bytes"] == 200 and offline["volumes"] == 1
    assert offline["status"] == "completed with warnings"
    assert offline["base"] == "20251231T020000Z-cd34"
    full = jobview.listing_row(jobview.snapshot_entry(_manifest(), "disk"), str)
    assert full["status"] == "completed" and full["base"] is None
