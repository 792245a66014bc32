"""The commands a sysadmin types: odbackupd --check-config/--once,
odctl snapshots/verify/restore/prune."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

from tests.layout import series_dir

from .treegen import assert_same_tree, make_awkward_tree


def odbackupd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "odbackupd.main", *args], capture_output=True, text=True
    )


def odctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "odctl.cli", *args], capture_output=True, text=True
    )


def test_check_config_names_file_line_and_key(setup, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    cfg = setup.write([src], volume_size="lots")
    r = odbackupd("--config", str(cfg), "--check-config")
    assert r.returncode != 0
    assert str(cfg) in r.stderr and "job.t.volume_size" in r.stderr
    line = next(i for i, ln in enumerate(cfg.read_text().splitlines(), 1) if "lots" in ln)
    assert f":{line}:" in r.stderr
    cfg = setup.write([tmp_path / "missing"])
    r = odbackupd("--config", str(cfg), "--check-config")
    assert r.returncode != 0 and str(tmp_path / "missing") in r.stderr
    cfg = setup.write([src])
    r = odbackupd("--config", str(cfg), "--check-config")
    assert r.returncode == 0, r.stderr


def test_full_cycle_through_the_commands(setup, tmp_path, age_key):
    key, recipient = age_key
    src = make_awkward_tree(tmp_path)
    # fulls only here (test_incremental.py has the chains)
    cfg = setup.write([src], recipients=[recipient], extra="keep_last = 2\nfull_every = 1\n")
    for _ in range(3):
        r = odbackupd("--config", str(cfg), "--once", "t")
        assert r.returncode == 0, r.stderr
        assert "completed" in r.stdout
    r = odctl("--config", str(cfg), "snapshots", "t", "--json")
    assert r.returncode == 0, r.stderr
    snaps = json.loads(r.stdout)["destinations"]["usb"]["snapshots"]
    assert len(snaps) == 2  # keep_last = 2 pruned the first
    assert all(s["encrypted"] and s["files"] > 10 for s in snaps)
    for s in snaps:  # RFC 3339 in UTC, as jq's fromdate and datetime.fromisoformat read it
        when = datetime.strptime(s["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert abs(when.timestamp() - time.time()) < 3600

    r = odctl("--config", str(cfg), "snapshots", "t")
    assert r.returncode == 0 and snaps[0]["snapshot"] in r.stdout and "SNAPSHOT" in r.stdout

    r = odctl("--config", str(cfg), "verify", "t", "all", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["ok"]
    by_id = {x["snapshot"]: x for x in json.loads(r.stdout)["reports"]}
    for s in snaps:  # the volumes `snapshots` lists; the index is checked as well, not counted
        assert by_id[s["snapshot"]]["volumes"] == s["volumes"] and by_id[s["snapshot"]]["index"]
    r = odctl("--config", str(cfg), "verify", "t")
    assert f"({snaps[-1]['volumes']} volume" in r.stdout and "and the index" in r.stdout
    r = odctl("--config", str(cfg), "verify", "t", "--download", "-i", str(key), "--json")
    rep = json.loads(r.stdout)
    assert (r.returncode == 0
            and rep["reports"][0]["method"] == "read back, decrypted and decompressed")
    r = odctl("--config", str(cfg), "verify", "t", "--download", "--json")  # no identity: says so
    rep = json.loads(r.stdout)
    assert r.returncode == 0 and "not decrypted" in rep["reports"][0]["method"], rep

    out = tmp_path / "out"
    r = odctl("--config", str(cfg), "restore", "t", "--to", str(out))
    assert r.returncode == 2 and "--identity" in r.stderr  # encrypted: says what is missing
    r = odctl("--config", str(cfg), "restore", "t", "2", "--to", str(out), "-i", str(key))
    assert r.returncode == 3 and "matches 2 snapshots" in r.stderr  # an ambiguous prefix is refused
    # the tree has a device node; this snapshot is our own
    r = odctl("--config", str(cfg), "restore", "t", snaps[0]["snapshot"], "--to", str(out),
              "-i", str(key), "--special-files")
    assert r.returncode == 0, r.stderr
    assert_same_tree(src, out / str(src).lstrip("/"))

    r = odctl("--config", str(cfg), "restore", "t", "nosuch", "--to", str(out), "-i", str(key))
    assert r.returncode == 3 and "no snapshot 'nosuch'" in r.stderr
    r = odctl("--config", str(cfg), "snapshots", "nojob")
    assert r.returncode == 3 and "no job 'nojob'" in r.stderr

    cfg = setup.write([src], recipients=[recipient], extra="keep_last = 1\nfull_every = 1\n")
    r = odctl("--config", str(cfg), "prune", "t", "--dry-run", "--json")
    plan = json.loads(r.stdout)["destinations"]["usb"]
    assert plan["delete"] == [snaps[0]["snapshot"]] and plan["keep"] == [snaps[1]["snapshot"]]
    r = odctl("--config", str(cfg), "snapshots", "t", "--json")
    # dry run deleted nothing
    assert len(json.loads(r.stdout)["destinations"]["usb"]["snapshots"]) == 2


def test_config_sample_is_valid(tmp_path):
    r = odctl("config", "sample")
    assert r.returncode == 0 and "[job." in r.stdout
    p = tmp_path / "sample.toml"
    p.write_text(r.stdout)
    r = odbackupd("--config", str(p), "--check-config")
    # the sample names example sources that may not exist here; only those may be reported
    assert r.returncode == 0 or all("source" in ln or "does not exist" in ln
                                    for ln in r.stderr.splitlines()[1:])


def test_once_refuses_while_the_job_runs_elsewhere(setup, tmp_path):
    """A cron run overlapping another run of the same job waits for nothing and says so."""
    from odbackupd.runner import job_lock

    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a")
    cfg = setup.write([src])
    with job_lock(setup.state, "t"):
        r = odbackupd("--config", str(cfg), "--once", "t")
    assert r.returncode == 75, r.stderr
    assert "already running" in r.stderr
    assert not (series_dir(setup.dest)).exists() or not any((series_dir(setup.dest)).iterdir())
    r = odbackupd("--config", str(cfg), "--once", "t")
    assert r.returncode == 0, r.stderr


def test_once_on_a_drop_only_job_takes_complete_files(setup, tmp_path, age_key):
    """Cron users of a drop directory: --once stores each settled file as its own encrypted
    snapshot and removes it; temporary names, files still changing and files still open for
    writing stay."""
    import os
    import time

    key, recipient = age_key
    drop = tmp_path / "drop"
    drop.mkdir()
    setup.write([tmp_path], recipients=[recipient])
    text = setup.config_path.read_text().replace(
        f'sources = ["{tmp_path}"]', f'drop_dir = "{drop}"'
    )
    setup.config_path.write_text(text + 'quiet_period = "10min"\n')
    old = time.time() - 3600
    for name, data in [("a.sql", b"A" * 3000), ("b.sql", b"B" * 10), (".c.sql", b"hidden"),
                       ("d.part", b"part")]:
        (drop / name).write_bytes(data)
        os.utime(drop / name, (old, old))
    (drop / "fresh.sql").write_bytes(b"still being written")
    (drop / "held.sql").write_bytes(b"BEGIN;\n")  # old, but its writer still has it open
    os.utime(drop / "held.sql", (old, old))
    with open(drop / "held.sql", "ab"):
        r = odbackupd("--config", str(setup.config_path), "--once", "t")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(drop)) == [".c.sql", "d.part", "fresh.sql", "held.sql"]
    assert "fresh.sql: changed less than 600s ago" in r.stdout
    assert "held.sql: still open for writing; left for the next run" in r.stdout
    r = odctl("--config", str(setup.config_path), "snapshots", "t+drop", "--json")
    assert r.returncode == 0, r.stderr
    snaps = json.loads(r.stdout)["destinations"]["usb"]["snapshots"]
    assert len(snaps) == 2 and all(s["files"] == 1 for s in snaps)
    out = tmp_path / "out"
    r = odctl("--config", str(setup.config_path), "restore", "t+drop", snaps[0]["snapshot"],
              "--to", str(out), "--identity", str(key))
    assert r.returncode == 0, r.stderr
    assert (out / str(drop).lstrip("/") / "a.sql").read_bytes() == b"A" * 3000


def test_a_wrong_identity_is_a_usage_error_before_anything_is_written(setup, tmp_path, age_key):
    key, recipient = age_key
    wrong = tmp_path / "wrong.txt"
    subprocess.run(["age-keygen", "-o", str(wrong)], check=True, capture_output=True)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("data")
    cfg = setup.write([src], recipients=[recipient])
    assert odbackupd("--config", str(cfg), "--once", "t").returncode == 0
    out = tmp_path / "out"
    r = odctl("--config", str(cfg), "restore", "t", "--to", str(out), "-i", str(wrong))
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "none of the --identity keys opens" in r.stderr
    assert not out.exists()  # refused before the target was made
    r = odctl("--config", str(cfg), "verify", "t", "--download", "-i", str(wrong))
    assert r.returncode == 2 and "DAMAGED" not in r.stdout  # a wrong key is not damage
    r = odctl("--config", str(cfg), "restore", "t", "--to", str(out),
              "-i", str(wrong), "-i", str(key))
    assert r.returncode == 0, r.stderr  # one matching key among several is enough
    assert (out / str(src).lstrip("/") / "f").read_text() == "data"


def test_an_identity_file_missing_or_not_a_key_is_named_in_one_line(setup, tmp_path, age_key):
    key, recipient = age_key
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("data")
    cfg = setup.write([src], recipients=[recipient])
    assert odbackupd("--config", str(cfg), "--once", "t").returncode == 0
    missing = tmp_path / "no-such-key.txt"
    for argv in (["restore", "t", "--to", str(tmp_path / "out")], ["ls", "t"]):
        for bad, what in ((missing, "age-keygen"), (cfg, "AGE-SECRET-KEY-1")):  # e.g. the config
            r = odctl("--config", str(cfg), *argv, "-i", str(bad))
            assert r.returncode == 2, r.stderr  # usage (odctl(1) EXIT STATUS)
            assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
            assert f"--identity {bad}" in r.stderr and what in r.stderr, r.stderr
            assert "[Errno" not in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


def test_ctrl_c_during_once_checkpoints_and_the_next_run_resumes(setup, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"f{i}").write_bytes(os.urandom(1 << 20))  # incompressible: zstd -19 takes its time
    cfg = setup.write([src])
    cfg.write_text(cfg.read_text().replace("compression_level = 3", "compression_level = 19"))
    p = subprocess.Popen([sys.executable, "-m", "odbackupd.main", "--config", str(cfg),
                          "--once", "t"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while (not list(series_dir(setup.dest).glob("*/vol.*")) and p.poll() is None
           and time.monotonic() < deadline):
        time.sleep(0.01)  # polls the condition: the first volume is stored
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "Traceback" not in err and "interrupted; the next run resumes snapshot" in err
    snapshot = err.rsplit("snapshot ", 1)[1].split()[0]
    r = odctl("--config", str(cfg), "snapshots", "t", "--json")
    usb = json.loads(r.stdout)["destinations"]["usb"]
    assert usb["snapshots"] == [] and usb["incomplete"] == [snapshot]  # nothing half made is listed
    r = odbackupd("--config", str(cfg), "--once", "t")
    assert r.returncode == 0 and f"snapshot {snapshot} completed" in r.stdout, r.stderr  # resumed


def test_an_unmounted_destination_is_an_error_not_an_empty_listing(setup, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("data")
    cfg = setup.write([src])
    assert odbackupd("--config", str(cfg), "--once", "t").returncode == 0
    setup.dest.rename(tmp_path / "elsewhere")  # the disk is not mounted
    for argv in (["snapshots", "t"], ["restore", "t", "--to", str(tmp_path / "out")],
                 ["verify", "t"], ["prune", "t", "--dry-run"]):
        r = odctl("--config", str(cfg), *argv)
        assert r.returncode == 1, (argv, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr and f"{setup.dest} does not exist" in r.stderr, argv
        assert "is the disk mounted?" in r.stderr and "SNAPSHOT" not in r.stdout, argv
    r = odbackupd("--config", str(cfg), "--once", "t")
    assert r.returncode == 1 and "is the disk mounted?" in r.stderr and not setup.dest.exists()


def test_restore_path_that_matches_nothing_says_so(setup, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("data")
    cfg = setup.write([src])
    assert odbackupd("--config", str(cfg), "--once", "t").returncode == 0
    archived = str(src).lstrip("/")
    out = tmp_path / "out"
    r = odctl("--config", str(cfg), "restore", "t", "--to", str(out), "--path", f"{archived}/sbu")
    assert r.returncode == 3, r.stderr  # a typo is not a successful restore of 0 files
    assert (f"--path {archived}/sbu: nothing in snapshot" in r.stderr
            and f"e.g. {archived}" in r.stderr)
    assert "restored" not in r.stdout and not out.exists()  # nothing was, nothing is made
    r = odctl("--config", str(cfg), "restore", "t", "--to", str(out), "--json",
              "--path", f"/{archived}/sub", "--path", "nope")
    assert r.returncode == 3 and json.loads(r.stdout)["unmatched"] == ["nope"]
    assert (out / archived / "sub" / "f").read_text() == "data"  # the leading '/' is optional


def test_ctrl_c_during_restore_says_what_is_left_and_how_to_finish(setup, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(os.urandom(3 << 20))
    cfg = setup.write([src], volume_size="1MiB")
    assert odbackupd("--config", str(cfg), "--once", "t").returncode == 0
    vol2 = next(series_dir(setup.dest).glob("*/vol.000002.zst"))
    vol2.rename(tmp_path / "vol2")
    os.mkfifo(vol2)  # fetching volume 2 waits until the test lets it go: the restore is mid-way
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-m", "odctl.cli", "--config", str(cfg),
                          "restore", "t", "--to", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    restored = out / str(src).lstrip("/") / "f"
    deadline = time.monotonic() + 30
    while not restored.exists() and time.monotonic() < deadline:
        time.sleep(0.01)  # polls the condition: volume 1 is being extracted
    p.send_signal(signal.SIGINT)
    with open(vol2, "wb"):  # releases the fetcher (it reads an empty volume 2)
        pass
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130 and "Traceback" not in err, err
    assert f"{out} holds a partial restore" in err and "run the same command again" in err
    vol2.unlink()
    (tmp_path / "vol2").rename(vol2)
    r = odctl("--config", str(cfg), "restore", "t", "--to", str(out))
    assert r.returncode == 0, r.stderr
    assert restored.read_bytes() == (src / "f").read_bytes()


def test_a_closed_pipe_ends_odctl_quietly(setup, tmp_path):
    cfg = setup.write([tmp_path])
    r_fd, w_fd = os.pipe()
    os.close(r_fd)  # `odctl ... | head` after head has exited
    try:
        p = subprocess.run([sys.executable, "-m", "odctl.cli", "--config", str(cfg),
                            "config", "sample"],
                           stdout=w_fd, stderr=subprocess.PIPE, text=True)
    finally:
        os.close(w_fd)
    assert p.returncode == 141 and p.stderr == ""


def test_a_missing_source_fails_and_prunes_nothing(setup, tmp_path):
    """An unmounted source disk must not produce an empty "successful" snapshot that
    retention counts, pushing the good ones out."""
    src = tmp_path / "mnt" / "data"
    src.mkdir(parents=True)
    (src / "a.txt").write_text("precious\n")
    cfg = setup.write([src], extra="keep_last = 1\n")
    r = odbackupd("--config", str(cfg), "--once", "t")
    assert r.returncode == 0, r.stderr
    good = json.loads(odctl("--config", str(cfg), "snapshots", "t", "--json").stdout)
    (src / "a.txt").unlink()
    src.rmdir()  # the disk is gone
    r = odbackupd("--config", str(cfg), "--once", "t")
    assert r.returncode == 1
    assert f"source {src} does not exist (not mounted? moved?)" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    after = json.loads(odctl("--config", str(cfg), "snapshots", "t", "--json").stdout)
    for listing in (good, after):  # the disk's free space moves with everything else on it
        assert listing["destinations"]["usb"].pop("space")["total"] > 0
    assert after == good  # the one good snapshot is still there; nothing new, nothing pruned


def test_check_config_warns_about_a_missing_destination_directory(setup, tmp_path):
    cfg = setup.write([tmp_path])
    setup.dest.rmdir()  # the USB disk is not plugged in
    r = odbackupd("--config", str(cfg), "--check-config")
    assert r.returncode == 0  # it may be mounted only around backup time
    assert f"at 'destination.usb.path': {setup.dest} does not exist" in r.stderr, r.stderr
    assert "not mounted?" in r.stderr


def test_a_configured_destination_named_local_must_exist_too(tmp_path):
    """Only the embedded default is created on first use: a [destination.local] the
    sysadmin wrote is a disk like any other, so a missing directory is an error."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("data")
    dest = tmp_path / "usb" / "backups"
    (tmp_path / "usb").mkdir()
    cfg = tmp_path / "odbackupd.toml"
    cfg.write_text(
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\nspool_dir = "{tmp_path / "spool"}"\n'
        f'[destination.local]\ntype = "local"\npath = "{dest}"\n'
        f'[job.t]\nsources = ["{src}"]\ndestinations = ["local"]\n'
    )
    r = odbackupd("--config", str(cfg), "--once", "t")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "is the disk mounted?" in r.stderr
    assert not dest.exists()


def test_check_config_counts_the_destinations_in_use(setup, tmp_path):
    """The built-in default counts only when a job writes to it (not as a second
    destination beside the one configured)."""
    src = tmp_path / "src"
    src.mkdir()
    cfg = setup.write([src])  # one job, one configured destination
    r = odbackupd("--config", str(cfg), "--check-config")
    assert r.returncode == 0 and "OK (1 job, 1 destination)" in r.stdout, r.stdout
    r = odctl("--config", str(cfg), "config", "check")
    assert r.returncode == 0 and "OK (1 job, 1 destination)" in r.stdout, r.stdout
    plain = tmp_path / "plain.toml"  # no [destination]: the job goes to the built-in default
    plain.write_text(f'[job.t]\nsources = ["{src}"]\n')
    r = odbackupd("--config", str(plain), "--check-config")
    assert r.returncode == 0 and "OK (1 job, 1 destination)" in r.stdout, r.stdout
