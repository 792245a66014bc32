"""[daemon] metrics_file: what odbackupd --once writes, as promtool and a real
node_exporter (Debian's prometheus-node-exporter) read it."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.snapshot.conftest import Setup

LINE = re.compile(r'^(\w+)(?:\{(.*)\})? (\S+)$')


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    out = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if m and not line.startswith("#"):
            labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(metrics: dict, name: str, **labels: str) -> float | None:
    for (n, lab), v in metrics.items():
        if n == name and set(labels.items()) <= lab:
            return v
    return None


def once(cfg: Path, job: str = "t") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "odbackupd.main", "--config", str(cfg),
                           "--once", job], capture_output=True, text=True)


@pytest.fixture
def textfile_dir(tmp_path: Path) -> Path:
    d = tmp_path / "textfile"
    d.mkdir()
    return d


def write_config(setup: Setup, src: Path, textfile_dir: Path, extra: str = "") -> Path:
    cfg = setup.write([src], extra='keep_last = 2\nfull_every = 1\nschedule = "0 */6 * * *"\n'
                      + extra)  # fulls
    text = cfg.read_text().replace(
        "[daemon]\n", f'[daemon]\nmetrics_file = "{textfile_dir}/odbackupd.prom"\n', 1)
    cfg.write_text(text)
    return cfg


def small_source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("x")
    return src


def promtool_check(path: Path) -> None:
    r = subprocess.run(["promtool", "check", "metrics"], stdin=path.open("rb"),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_once_writes_the_metrics_the_issue_lists(setup, tmp_path, textfile_dir):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(os.urandom(300_000))
    cfg = write_config(setup, src, textfile_dir)
    for _ in range(3):
        r = once(cfg)
        assert r.returncode == 0, r.stderr
    prom = textfile_dir / "odbackupd.prom"
    promtool_check(prom)
    assert oct(prom.stat().st_mode & 0o777) == "0o644"  # node_exporter runs as another user
    assert sorted(p.name for p in textfile_dir.iterdir()) == ["odbackupd.prom"]  # no temporary left
    text = prom.read_text()
    assert 'job="' not in text  # Prometheus would rename it to exported_job
    m = parse(text)
    snaps = json.loads(subprocess.run([sys.executable, "-m", "odctl.cli", "--config", str(cfg),
                                       "snapshots", "t", "--json"],
                                      capture_output=True, text=True, check=True).stdout)
    snaps = snaps["destinations"]["usb"]["snapshots"]
    # counted across processes
    assert value(m, "odbackupd_runs_total", series="t", result="success") == 3
    assert value(m, "odbackupd_snapshots", series="t", destination="usb") == 2 == len(snaps)
    assert (value(m, "odbackupd_stored_bytes", series="t", destination="usb")
            == sum(s["stored_bytes"] for s in snaps))
    assert (value(m, "odbackupd_last_snapshot_stored_bytes", series="t", destination="usb")
            == snaps[-1]["stored_bytes"])
    assert value(m, "odbackupd_uploaded_bytes_total", destination="usb") >= 3 * 300_000
    assert value(m, "odbackupd_last_run_success", series="t") == 1
    assert abs(value(m, "odbackupd_last_success_timestamp_seconds", series="t", destination="usb")
               - time.time()) < 120
    assert value(m, "odbackupd_last_run_duration_seconds", series="t") > 0
    assert value(m, "odbackupd_schedule_interval_seconds", series="t") == 6 * 3600
    assert value(m, "odbackupd_destination_free_bytes", destination="usb") > 0
    assert value(m, "odbackupd_chain_length", series="t", destination="usb") == 1
    assert value(m, "odbackupd_build_info") == 1


def test_a_failed_run_shows_and_the_last_success_stays(setup, tmp_path, textfile_dir):
    src = small_source(tmp_path)
    cfg = write_config(setup, src, textfile_dir)
    assert once(cfg).returncode == 0
    before = parse((textfile_dir / "odbackupd.prom").read_text())
    (src / "a").unlink()
    src.rmdir()  # the source is gone: the run fails before anything is made
    assert once(cfg).returncode == 1
    promtool_check(textfile_dir / "odbackupd.prom")
    m = parse((textfile_dir / "odbackupd.prom").read_text())
    assert value(m, "odbackupd_last_run_success", series="t") == 0
    assert value(m, "odbackupd_runs_total", series="t", result="failure") == 1
    assert value(m, "odbackupd_runs_total", series="t", result="success") == 1
    key = ("series", "t"), ("destination", "usb")
    assert value(m, "odbackupd_last_success_timestamp_seconds", **dict(key)) == \
        value(before, "odbackupd_last_success_timestamp_seconds", **dict(key))


def test_an_unwritable_metrics_file_never_fails_the_backup(setup, tmp_path):
    cfg = write_config(setup, small_source(tmp_path), tmp_path / "no-such-dir")
    r = once(cfg)
    assert r.returncode == 0, r.stderr
    assert "cannot write metrics_file" in r.stderr and "ReadWritePaths" in r.stderr


def test_check_config_wants_a_prom_file(setup, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    cfg = write_config(setup, src, tmp_path)
    cfg.write_text(cfg.read_text().replace("odbackupd.prom", "odbackupd.txt"))
    r = subprocess.run([sys.executable, "-m", "odbackupd.main", "--config", str(cfg),
                        "--check-config"], capture_output=True, text=True)
    assert (r.returncode == 2 and "daemon.metrics_file" in r.stderr
            and "must end in .prom" in r.stderr)


# ---- a real node_exporter ------------------------------------------------------------------------
def free_port() -> int:
    """node_exporter cannot listen on port 0: take one the kernel hands out, then free it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def node_exporter(textfile_dir: Path):
    port = free_port()
    proc = subprocess.Popen(
        ["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{port}",
         "--collector.disable-defaults", "--collector.textfile",
         f"--collector.textfile.directory={textfile_dir}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/metrics"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("node_exporter did not start: "
                                   + proc.stderr.read().decode()) from None
            time.sleep(0.05)  # polling for the listener, not synchronising on time
    yield lambda: urllib.request.urlopen(url, timeout=10).read().decode()
    proc.terminate()
    proc.wait(10)


def test_node_exporter_serves_them_after_a_success_and_after_a_failure(
        setup, tmp_path, textfile_dir, node_exporter):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(os.urandom(50_000))
    cfg = write_config(setup, src, textfile_dir)
    assert once(cfg).returncode == 0
    m = parse(node_exporter())
    assert value(m, "node_textfile_scrape_error") == 0
    assert value(m, "odbackupd_last_run_success", series="t") == 1
    assert value(m, "odbackupd_runs_total", series="t", result="success") == 1
    assert value(m, "odbackupd_snapshots", series="t", destination="usb") == 1
    mtime = value(m, "node_textfile_mtime_seconds")
    assert mtime is not None and abs(mtime - time.time()) < 120  # what the stale-file alert reads
    # the rule's file=~ matches either
    assert any(n == "node_textfile_mtime_seconds"
               and ("file", str(textfile_dir / "odbackupd.prom")) in lab
               or ("file", "odbackupd.prom") in lab for (n, lab) in m)

    (src / "a").unlink()
    src.rmdir()
    assert once(cfg).returncode == 1
    m = parse(node_exporter())
    assert value(m, "node_textfile_scrape_error") == 0
    assert value(m, "odbackupd_last_run_success", series="t") == 0
    assert value(m, "odbackupd_runs_total", series="t", result="failure") == 1
    assert value(m, "odbackupd_runs_total", series="t", result="success") == 1


def test_the_daemon_rewrites_the_file_at_start_with_the_counters_kept(
        setup, tmp_path, textfile_dir):
    import signal

    from tests.onedrive.conftest import wait_until
    from tests.service.test_daemon import Daemon, Notify

    src = small_source(tmp_path)
    cfg = write_config(setup, src, textfile_dir)
    assert once(cfg).returncode == 0
    prom = textfile_dir / "odbackupd.prom"
    os.utime(prom, (1_000_000, 1_000_000))  # as if written long ago: the alert's view
    notify = Notify(tmp_path / "notify.sock")
    d = Daemon(cfg, tmp_path, notify)
    try:
        notify.expect(lambda msg: msg.get("READY") == "1", "READY=1")
        wait_until(lambda: prom.stat().st_mtime > 1_000_000, "the daemon's metrics file",
                   proc=d.proc)
        m = parse(prom.read_text())
        assert value(m, "odbackupd_runs_total", series="t", result="success") == 1
        assert value(m, "odbackupd_last_run_success", series="t") == 1
    finally:
        d.signal(signal.SIGTERM)
        assert d.wait(60) == 0
        notify.close()


def test_check_config_warns_of_a_missing_textfile_directory(setup, tmp_path):
    cfg = write_config(setup, small_source(tmp_path), tmp_path / "no-node-exporter")
    r = subprocess.run([sys.executable, "-m", "odbackupd.main", "--config", str(cfg),
                        "--check-config"], capture_output=True, text=True)
    assert r.returncode == 0 and "daemon.metrics_file" in r.stderr
    assert f"directory {tmp_path / 'no-node-exporter'} does not exist" in r.stderr


def test_every_declared_metric_passes_promtool_lint(tmp_path):
    """Names, units, counter suffixes and HELP texts of every metric odbackupd can write."""
    from odbackupd import metrics
    from odbackupd.config import load_config_text
    from odbackupd.state import StateStore

    config = load_config_text('[job.etc]\nsources = ["/etc"]\nschedule = "@daily"\n'
                              '[account.a]\nclient_id = "00000000-0000-0000-0000-000000000000"\n'
                              '[destination.od]\ntype = "onedrive"\naccount = "a"\n'
                              '[notify.n]\ntype = "webhook"\nurl = "https://h.example/x"\n'
                              '[daemon]\nnotify = ["n"]\n')
    labels = {"series": "etc", "destination": "od", "account": "a", "notifier": "n",
              "result": "success"}
    st = StateStore(tmp_path / "state.db")
    try:
        metrics.ensure(st)
        for m in metrics.METRICS:
            if m.name not in ("odbackupd_build_info", "odbackupd_schedule_interval_seconds",
                              "odbackupd_notifications_pending"):
                metrics.set_value(st, m.name, 1, **{k: labels[k] for k in m.labels})
        text = metrics.render(config, st, pending=0)
    finally:
        st.close()
    assert all(f"# TYPE {m.name} " in text for m in metrics.METRICS)
    path = tmp_path / "all.prom"
    path.write_text(text)
    r = subprocess.run(["promtool", "check", "metrics"], stdin=path.open("rb"),
                       capture_output=True, text=True)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r.stdout + r.stderr
