"""The D-Bus API through real clients (odctl, busctl, gdbus) against the real daemon on a
private bus that enforces the shipped policy."""
from __future__ import annotations

import asyncio
import json
import queue
import subprocess
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

from odbackupd.bus import names

from .conftest import PrivateBus, busctl, odctl

XML = Path(names.__file__).with_name(names.INTROSPECTION_FILE)


def gdbus_call(bus: PrivateBus, path: str, method: str, *args: str, user: str | None = None,
               init_groups: bool = False) -> subprocess.CompletedProcess:
    from .conftest import as_user

    argv = ["gdbus", "call", "--address", bus.address, "--dest", names.BUS_NAME,
            "--object-path", path, "--method", method, *args]
    if user is not None:
        argv = as_user(user, argv, init_groups=init_groups)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def canonical(xml_text: str) -> dict[str, list]:
    """Our interfaces only, members sorted by kind and name, args in order, comments gone."""
    root = ET.fromstring(xml_text)
    out = {}
    for iface in root.iter("interface"):
        name = iface.get("name", "")
        if not name.startswith(names.BUS_NAME):
            continue
        members = []
        for m in iface:
            args = tuple((a.get("name"), a.get("direction") or "out", a.get("type"))
                         for a in m.iter("arg"))
            members.append((m.tag, m.get("name"), m.get("type"), m.get("access"), args))
        out[name] = sorted(members, key=lambda t: (t[0], t[1]))
    return out


def test_live_introspection_equals_the_committed_xml(daemon, private_bus):
    committed = canonical(XML.read_text())
    assert set(committed) == {names.MANAGER_IFACE, names.JOB_IFACE}
    live = {}
    for path in (names.ROOT_PATH, names.job_path("web-1.x")):
        r = busctl(private_bus, "introspect", "--xml-interface", names.BUS_NAME, path)
        assert r.returncode == 0, r.stderr
        live.update(canonical(r.stdout))
    assert live == committed


def test_job_objects_use_systemd_path_escaping(daemon, private_bus):
    r = busctl(private_bus, "tree", "--list", names.BUS_NAME)
    assert r.returncode == 0, r.stderr
    paths = set(r.stdout.split())
    assert f"{names.JOB_PATH_PREFIX}t" in paths
    assert f"{names.JOB_PATH_PREFIX}web_2d1_2ex" in paths  # '-' → _2d, '.' → _2e
    assert names.unescape_path_element("web_2d1_2ex") == "web-1.x"


def test_status_and_jobs_json(daemon, private_bus):
    r = odctl(private_bus, "status", "--json")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["daemon_running"] is True
    d = st["daemon"]
    assert (d["state"] in ("idle", "running") and d["jobs"] == 2
            and d["interface_version"] == names.INTERFACE_VERSION)
    assert d["config_path"] == str(daemon.config)
    assert [j["name"] for j in st["jobs"]] == ["t", "web-1.x"]
    web = st["jobs"][1]
    assert (web["schedule"] == "0 3 * * *" and web["next_run"] > 0
            and web["path"] == names.job_path("web-1.x"))

    r = odctl(private_bus, "jobs", "--json")
    assert r.returncode == 0, r.stderr
    jobs = json.loads(r.stdout)
    assert jobs["daemon_running"] is True and [j["name"] for j in jobs["jobs"]] == ["t", "web-1.x"]

    r = odctl(private_bus, "status")
    assert (r.returncode == 0 and "JOB" in r.stdout and "web-1.x" in r.stdout
            and "\033[" not in r.stdout)


def test_backup_now_wait_follows_the_run_and_snapshots_come_from_the_daemon(daemon, private_bus):
    r = odctl(private_bus, "backup-now", "t", "--wait", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    res = out["result"]
    assert res["status"] == "completed" and res["snapshot"] and res["files"] == 20
    assert out["path"] == names.run_path(out["run_id"]) and res["run_id"] == out["run_id"]

    r = odctl(private_bus, "snapshots", "t", "--json")  # no --config: asks the daemon
    assert r.returncode == 0, r.stderr
    snaps = json.loads(r.stdout)["destinations"]["usb"]["snapshots"]
    assert res["snapshot"] in [s["snapshot"] for s in snaps]
    # the offline listing's words, whoever lists
    assert {s["status"] for s in snaps} == {"completed"}
    offline = odctl(private_bus, "snapshots", "t", "--json", "--config", str(daemon.config))
    assert offline.returncode == 0, offline.stderr
    off = json.loads(offline.stdout)["destinations"]["usb"]["snapshots"]
    assert [s["snapshot"] for s in off] == [s["snapshot"] for s in snaps]
    for a, b in zip(off, snaps, strict=True):  # the same shape and values, whoever lists
        keys = ("host", "files", "volumes", "encrypted", "warnings", "status", "sequence",
                "signed_by", "kind", "base")
        assert {k: a[k] for k in keys} == {k: b[k] for k in keys}
        assert a["sequence"] >= 1 and a["signed_by"].startswith("SHA256:")
    assert (res["kind"] in ("full", "incremental")
            and {"new", "changed", "unchanged", "deleted"} <= set(res))

    r = busctl(private_bus, "get-property", names.BUS_NAME, names.job_path("t"), names.JOB_IFACE,
               "LastResult", "LastRunTime", "State")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == 's "completed"' and r.stdout.splitlines()[2] == 's "idle"'
    r = busctl(private_bus, "--json=short", "get-property", names.BUS_NAME, names.job_path("t"),
               names.JOB_IFACE, "LastRunTime")
    assert json.loads(r.stdout) == {"type": "d", "data": res["finished"]}

    r = odctl(private_bus, "backup-now", "t", "--wait")  # human output, exit code from the result
    assert r.returncode == 0 and "completed" in r.stdout, r.stderr
    # the next run builds on the one before and says what it found
    assert f"incremental on {res['snapshot']}" in r.stdout and " unchanged, " in r.stdout, r.stdout


def test_signals_seen_by_gdbus_monitor(daemon, private_bus):
    mon = subprocess.Popen(["gdbus", "monitor", "--address", private_bus.address,
                            "--dest", names.BUS_NAME],
                           stdout=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in mon.stdout], daemon=True).start()
    try:
        while "is owned by" not in lines.get(timeout=20):  # subscribed: now call
            pass
        r = busctl(private_bus, "call", names.BUS_NAME, names.ROOT_PATH, names.MANAGER_IFACE,
                   "BackupNow", "s", "t")
        assert r.returncode == 0, r.stderr
        run_id = names.run_id_from_path(r.stdout.split('"')[1])
        seen: list[str] = []

        def idle_again() -> bool:
            job = [ln for ln in seen if ln.startswith(names.job_path("t"))]
            return (any("'State': <'idle'>" in ln for ln in job)
                    and any("'LastRunTime'" in ln for ln in job))

        while not (any(".RunFinished" in ln and f"uint64 {run_id}," in ln for ln in seen)
                   and idle_again()):
            try:
                seen.append(lines.get(timeout=60))
            except queue.Empty:
                raise AssertionError(f"signals seen: {seen}") from None
    finally:
        mon.terminate()
        mon.wait()
    started = [ln for ln in seen if ".RunStarted" in ln and f"uint64 {run_id}," in ln]
    finished = [ln for ln in seen if ".RunFinished" in ln][-1]
    assert started and "'manual'" in started[0]
    assert "'completed'" in finished and names.run_path(run_id) in finished
    changed = [ln for ln in seen
               if ln.startswith(names.job_path("t")) and "PropertiesChanged" in ln]
    assert any("'State': <'running'>" in ln for ln in changed)
    assert any(f"'RunId': <uint64 {run_id}>" in ln for ln in changed)


def test_everyone_reads_but_only_admins_change(daemon, private_bus, admin_user):
    for argv in (("call", names.BUS_NAME, names.ROOT_PATH, names.MANAGER_IFACE, "GetJob", "s", "t"),
                 ("call", names.BUS_NAME, names.ROOT_PATH, names.MANAGER_IFACE, "ListJobs"),
                 ("get-property", names.BUS_NAME, names.ROOT_PATH, names.MANAGER_IFACE,
                  "StatusLine"),
                 ("get-property", names.BUS_NAME, names.job_path("t"), names.JOB_IFACE, "State"),
                 ("introspect", names.BUS_NAME, names.ROOT_PATH)):
        r = busctl(private_bus, *argv, user="nobody")
        assert r.returncode == 0, (argv, r.stderr)

    for method, args in (("BackupNow", ["t"]), ("Cancel", ["t"]), ("Reload", []),
                         ("Logout", ["acct"]), ("StartLogin", ["acct", "{}"])):
        r = gdbus_call(private_bus, names.ROOT_PATH, f"{names.MANAGER_IFACE}.{method}", *args,
                       user="nobody")
        assert r.returncode != 0
        assert "org.freedesktop.DBus.Error.AccessDenied" in r.stderr, (method, r.stderr)

    r = gdbus_call(private_bus, names.ROOT_PATH, f"{names.MANAGER_IFACE}.BackupNow", "t",
                   user=admin_user, init_groups=True)
    assert r.returncode == 0, r.stderr
    assert names.RUN_PATH_PREFIX in r.stdout
    r = gdbus_call(private_bus, names.ROOT_PATH, f"{names.MANAGER_IFACE}.Cancel", "t",
                   user=admin_user, init_groups=True)
    assert r.returncode == 0, r.stderr


def test_bad_arguments_get_named_errors(daemon, private_bus, monkeypatch):
    m = names.MANAGER_IFACE
    cases = [
        ("BackupNow", ["nosuch"], names.ERRORS["NoSuchJob"].name),
        ("GetJob", ["nosuch"], names.ERRORS["NoSuchJob"].name),
        ("ListSnapshots", [""], names.ERRORS["NoSuchJob"].name),
        ("GetLoginStatus", ["nosuch"], names.ERRORS["NoSuchAccount"].name),
        ("StartLogin", ["nosuch", "{'flow': <'carrier-pigeon'>}"],
         names.ERRORS["InvalidArgs"].name),
        ("StartLogin", ["nosuch", "{'flow': <7>}"], names.ERRORS["InvalidArgs"].name),
        ("CompleteLogin", ["nosuch", "https://example.invalid/"],
         names.ERRORS["NoSuchAccount"].name),
    ]
    for method, args, want in cases:
        r = gdbus_call(private_bus, names.ROOT_PATH, f"{m}.{method}", *args)
        assert r.returncode != 0, (method, args, r.stdout)
        assert f"GDBus.Error:{want}:" in r.stderr, (method, args, r.stderr)

    # wrong D-Bus types (gdbus would coerce them: send raw messages with dbus-fast)
    async def raw_calls() -> list[str]:
        from odctl.client import Client, DaemonError, Variant

        c = await Client.connect()
        errors = []
        try:
            for member, sig, body in (("GetJob", "u", [42]), ("BackupNow", "ss", ["t", "x"]),
                                      ("StartLogin", "sa{sv}", ["a", {"flow": Variant("u", 1)}]),
                                      ("NoSuchMethod", "", [])):
                try:
                    await c._call(names.BUS_NAME, names.ROOT_PATH, m, member, sig, body)
                except DaemonError as e:
                    errors.append(e.name)
        finally:
            c.close()
        return errors

    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", private_bus.address)
    assert asyncio.run(raw_calls()) == ["org.freedesktop.DBus.Error.UnknownMethod",
                                        "org.freedesktop.DBus.Error.UnknownMethod",
                                        names.ERRORS["InvalidArgs"].name,
                                        "org.freedesktop.DBus.Error.UnknownMethod"]
    assert daemon.alive

    r = odctl(private_bus, "backup-now", "nosuch")
    assert r.returncode == names.EXIT_NOT_FOUND and "no job 'nosuch'" in r.stderr
    r = odctl(private_bus, "cancel", "nosuch", "--json")
    assert r.returncode == names.EXIT_NOT_FOUND
    assert json.loads(r.stdout)["error_name"] == "NoSuchJob"
    r = odctl(private_bus, "login", "nosuch")
    assert r.returncode == names.EXIT_NOT_FOUND and "nosuch" in r.stderr
    r = odctl(private_bus, "cancel", "t", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"job": "t", "cancelled": False}
    r = odctl(private_bus, "status", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["daemon_running"]


def test_reload_with_a_broken_config_keeps_the_daemon(daemon, private_bus):
    good = daemon.config.read_text()
    try:
        daemon.config.write_text(good.replace('volume_size = "1MiB"', 'volume_size = "lots"'))
        r = odctl(private_bus, "reload", "--json")
        assert r.returncode == names.EXIT_USAGE
        err = json.loads(r.stdout)
        assert err["error_name"] == "InvalidConfig" and f"{daemon.config}:" in err["error"]
        assert "volume_size" in err["error"]
        r = odctl(private_bus, "jobs", "--json")
        assert r.returncode == 0 and len(json.loads(r.stdout)["jobs"]) == 2
    finally:
        daemon.config.write_text(good)
    daemon.config.write_text(good + '\n[job.new]\nsources = ["/etc/hostname"]\n'
                             'destinations = ["usb"]\n')
    try:
        r = odctl(private_bus, "reload")
        assert r.returncode == 0, r.stderr
        r = busctl(private_bus, "get-property", names.BUS_NAME, names.job_path("new"),
                   names.JOB_IFACE, "Name")
        assert r.returncode == 0 and r.stdout.strip() == 's "new"', r.stderr
    finally:
        daemon.config.write_text(good)
        assert odctl(private_bus, "reload").returncode == 0
    r = busctl(private_bus, "get-property", names.BUS_NAME, names.job_path("new"),
               names.JOB_IFACE, "Name")
    assert r.returncode != 0  # the removed job's object is gone


def test_unprivileged_user_of_the_admin_group_is_recognised(admin_user):
    import pwd

    from odbackupd.bus.adapter import uid_is_admin

    assert uid_is_admin(0)
    assert not uid_is_admin(pwd.getpwnam("nobody").pw_uid)
    assert uid_is_admin(pwd.getpwnam(admin_user).pw_uid)  # supplementary membership counts
