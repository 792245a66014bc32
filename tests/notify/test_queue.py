"""Which notifier hears of what: one message per run end, the most specific event each
asks for; a failure reminds only after repeat; a success makes the next failure news."""
from __future__ import annotations

from odbackupd.config import load_config_text
from odbackupd.notify import queue
from odbackupd.state import StateStore

CONFIG = """
[notify.all]
type = "webhook"
url = "https://h.example/all"
on = ["start", "success", "failure", "recovery", "warning", "login_expired"]
[notify.plain]
type = "webhook"
url = "https://h.example/plain"
on = ["success", "failure"]
repeat = "1h"
[notify.once]
type = "webhook"
url = "https://h.example/once"
repeat = 0
[job.t]
sources = ["/etc"]
notify = ["all", "plain", "once"]
"""


def sent(state, config, candidates, now):  # noqa: ANN001, ANN201
    return dict(queue.queue_event(config, state, config.jobs["t"], "t", candidates,
                                  lambda ev: {"event": ev}, now))


def test_the_most_specific_event_per_notifier_and_reminders(tmp_path):
    config = load_config_text(CONFIG)
    st = StateStore(tmp_path / "state.db")
    try:
        warn = queue.run_end_candidates(ok=True, warnings=True, login_needed=False,
                                        was_failing=False)
        assert sent(st, config, warn, 0) == {"all": "warning", "plain": "success"}
        fail = queue.run_end_candidates(ok=False, warnings=False, login_needed=True,
                                        was_failing=False)
        assert sent(st, config, fail, 100) == {"all": "login_expired", "plain": "failure",
                                               "once": "login_expired"}
        assert sent(st, config, fail, 200) == {}  # still failing: no news
        assert sent(st, config, fail, 100 + 3600) == {"plain": "failure"}  # plain's hourly reminder
        queue.series_recovered(st, "t")
        rec = queue.run_end_candidates(ok=True, warnings=False, login_needed=False,
                                       was_failing=True)
        assert sent(st, config, rec, 5000) == {"all": "recovery", "plain": "success",
                                               "once": "recovery"}
        assert sent(st, config, fail, 5100) == {"all": "login_expired", "plain": "failure",
                                                "once": "login_expired"}
        assert [p.notifier for p in queue.due(st, 10**9)].count("once") == 3
        assert (queue.note_result(st, "t", True) is False
                and queue.note_result(st, "t", False) is True)
    finally:
        st.close()
