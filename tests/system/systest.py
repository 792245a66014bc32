"""End-to-end system test: the freshly built .deb in a Debian 12 booted with systemd.

Each check of the packaging issue is one step, reported with pass/fail and its time:

    sudo .venv/bin/python -m tests.system.systest [--deb dist/odbackupd_X_all.deb] [--keep]

It builds the packages (unless ``--deb`` names one), debootstraps (cached) and boots a
container with systemd-nspawn, installs the .deb with apt-get (its Depends come from the
mirror), and checks the real system: the unit, its sandbox, the daemon over D-Bus as root
and as an unprivileged user, the journal, reload, restart during an upload to the Graph
emulator (which runs on this host's 127.0.0.1, shared with the container), the watchdog,
and a clean purge. A step that fails says why; later steps that depend on it are not run.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .nspawn import Container, ContainerError, base_tarball

REPO = Path(__file__).resolve().parents[2]
CONFIG = "/etc/odbackupd/odbackupd.toml"
EMU_CLIENT_ID = "5b0e7b5e-4b1e-4c0e-9a55-0d0b0c0ffee1"
EMU_SECRET = "systest-client-secret-do-not-log"
EMU_CA = "/etc/ssl/odbackupd-emu-ca.pem"  # the emulator's CA, inside the container


class CheckFailed(AssertionError):
    pass


def check(cond: object, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


@dataclass
class StepResult:
    name: str
    status: str  # "pass" | "FAIL" | "not run"
    seconds: float = 0.0
    detail: str = ""


@dataclass
class Report:
    results: list[StepResult] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def failed(self) -> list[StepResult]:
        return [r for r in self.results if r.status != "pass"]

    def text(self) -> str:
        lines = [f"{'step':<58} {'result':<8} {'time':>7}"]
        for r in self.results:
            lines.append(f"{r.name:<58} {r.status:<8} {r.seconds:>6.1f}s")
            if r.detail:
                lines += ["    " + d for d in r.detail.strip().splitlines()[-25:]]
        passed = sum(r.status == "pass" for r in self.results)
        lines.append(f"system: {passed} passed, {len(self.results) - passed} failed"
                     f" (total {time.monotonic() - self.started:.0f}s)")
        return "\n".join(lines)


class SystemTest:
    def __init__(self, deb: Path | None, log: Callable[[str], None] = print) -> None:
        self.deb = deb
        self.log = log
        self.report = Report()
        self.ct = Container()
        self.emu = None
        self.emu_dir: tempfile.TemporaryDirectory | None = None
        self.blocked: str | None = None  # a failed step everything after depends on

    # ------------------------------------------------------------------ plumbing
    def step(self, name: str, fn: Callable[[], object], *, fatal: bool = False) -> bool:
        if self.blocked:
            self.report.results.append(StepResult(name, "not run", 0,
                                                  f"after failed step: {self.blocked}"))
            return False
        t0 = time.monotonic()
        try:
            detail = fn() or ""
            res = StepResult(name, "pass", time.monotonic() - t0, str(detail))
        except (CheckFailed, ContainerError, subprocess.SubprocessError, OSError) as e:
            res = StepResult(name, "FAIL", time.monotonic() - t0, f"{type(e).__name__}: {e}")
        except Exception as e:  # noqa: BLE001 - a bug in a step is reported like a failure
            res = StepResult(name, "FAIL", time.monotonic() - t0,
                             f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
        self.report.results.append(res)
        self.log(f"[{res.status}] {name} ({res.seconds:.1f}s)" + (f": {res.detail.strip()[-400:]}"
                                                                  if res.status != "pass" else ""))
        if res.status != "pass" and fatal:
            self.blocked = name
        return res.status == "pass"

    def sh(self, script: str, **kw) -> subprocess.CompletedProcess:
        return self.ct.run(script, **kw)

    def odctl(self, args: str, *, user: str | None = None, check_rc: bool = True,
              timeout: float = 120) -> subprocess.CompletedProcess:
        prefix = f"runuser -u {user} -- " if user else ""
        p = self.sh(f"cd / && {prefix}odctl {args}", check=False, timeout=timeout)
        if check_rc and p.returncode != 0:
            raise CheckFailed(f"odctl {args}{' as ' + user if user else ''} exited {p.returncode}: "
                              f"{p.stdout[-1500:]}{p.stderr[-1500:]}")
        return p

    def journal(self, args: str) -> str:
        return self.sh(f"journalctl --no-pager {args}", check=False).stdout

    # ------------------------------------------------------------------ steps
    def build_packages(self) -> str:
        if self.deb is None:
            p = subprocess.run(["bash", str(REPO / "scripts/build-packages.sh")], cwd=REPO,
                               capture_output=True, text=True, timeout=600)
            check(p.returncode == 0,
                  f"scripts/build-packages.sh failed:\n{p.stdout[-3000:]}{p.stderr[-3000:]}")
            debs = sorted((REPO / "dist").glob("odbackupd_*_all.deb"),
                          key=lambda f: f.stat().st_mtime)
            check(debs, "no .deb in dist/")
            self.deb = debs[-1]
            return p.stdout
        check(self.deb.exists(), f"{self.deb} does not exist")
        return f"using {self.deb}"

    def rpm_payload(self) -> str:
        """The .rpm cannot be installed here (no Fedora): check what it would install and
        what its scriptlets and dependencies say."""
        rpms = sorted((REPO / "dist").glob("odbackupd-*.noarch.rpm"),
                      key=lambda f: f.stat().st_mtime)
        check(rpms, "no .rpm in dist/")
        rpm = str(rpms[-1])

        def q(*args: str) -> str:
            p = subprocess.run(["rpm", "-qp", *args, rpm], capture_output=True, text=True,
                               timeout=60)
            check(p.returncode == 0, f"rpm -qp {' '.join(args)}: {p.stderr}")
            return p.stdout

        files = set(q("-l").split())
        for want in ("/usr/bin/odbackupd", "/usr/bin/odctl",
                     "/usr/lib/systemd/system/odbackupd.service",
                     "/usr/lib/sysusers.d/odbackupd.conf", "/usr/lib/tmpfiles.d/odbackupd.conf",
                     "/usr/share/dbus-1/system.d/org.odbackupd.ODBackup1.conf",
                     "/etc/odbackupd/odbackupd.toml",
                     "/usr/share/bash-completion/completions/odctl",
                     "/usr/share/zsh/site-functions/_odctl"):
            check(want in files, f"the .rpm does not install {want}")
        for page in ("man8/odbackupd.8", "man1/odctl.1", "man5/odbackupd.toml.5",
                     "man5/odbackupd-dbus.5"):
            check(any(f.startswith(f"/usr/share/man/{page}") for f in files),
                  f"the .rpm lacks {page}")
        scripts = q("--scripts")
        for want in ("systemd-sysusers", "systemctl --no-reload preset odbackupd.service",
                     "systemctl --no-reload disable --now odbackupd.service",
                     "systemctl try-restart odbackupd.service"):
            check(want in scripts, f"the .rpm scriptlets lack {want!r}:\n{scripts}")
        requires = q("-R")
        for dep in ("python3-msal", "python3-dbus-fast", "python3-pyinotify", "python3-zstandard",
                    "python3-cryptography", "python3-requests", "python3-croniter",
                    "python3-systemd"):
            check(dep in requires.split(), f"the .rpm does not require {dep}")
        return (f"{len(files)} files; sysusers/preset/disable/try-restart scriptlets; "
                "distro python3-* Requires")

    def boot(self) -> str:
        tarball = base_tarball(self.log)
        self.ct.create(tarball)
        self.ct.boot()
        return f"root from {tarball}"

    def install(self) -> str:
        dest = self.ct.path("/opt/pkgs") / self.deb.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(self.deb.read_bytes())
        p = self.sh("apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
                    f"apt-get install -y -q /opt/pkgs/{self.deb.name}", timeout=600)
        status = self.sh("dpkg-query -W -f='${Status}' odbackupd").stdout
        check(status == "install ok installed", f"dpkg says odbackupd is {status!r}")
        return p.stdout[-800:]

    def installed_layout(self) -> None:
        enabled = self.sh("systemctl is-enabled odbackupd.service", check=False).stdout.strip()
        check(enabled == "enabled", f"odbackupd.service is {enabled!r} after install, not enabled")
        ident = self.sh("id -nG odbackupd", check=False)
        check(ident.returncode == 0 and "odbackup" in ident.stdout.split(),
              f"sysusers did not create odbackupd in group odbackup: {ident.stdout}{ident.stderr}")
        owner = self.sh("stat -c '%U:%G %a' /var/backups/odbackupd"
                        " /etc/odbackupd/credentials").stdout.split("\n")
        check(owner[0] == "odbackupd:odbackup 700", f"/var/backups/odbackupd is {owner[0]!r}")
        check(owner[1] == "root:root 700", f"/etc/odbackupd/credentials is {owner[1]!r}")
        conff = self.sh("dpkg-query -W -f='${Conffiles}' odbackupd").stdout
        check(CONFIG in conff, f"{CONFIG} is not a conffile: {conff!r}")
        self.sh("test -f /usr/share/dbus-1/system.d/org.odbackupd.ODBackup1.conf")
        for page in ("odbackupd.8", "odctl.1", "odbackupd.toml.5", "odbackupd-dbus.5",
                     "odbackupd-intake.8"):
            name, sect = page.rsplit(".", 1)
            self.sh(f"man -w {sect} {name} >/dev/null")
        catalog = self.sh("journalctl --update-catalog && journalctl --list-catalog").stdout
        from odbackupd import journal

        for mid in (journal.MSG_RUN_STARTED, journal.MSG_RUN_FINISHED, journal.MSG_RUN_FAILED,
                    journal.MSG_LOGIN_NEEDED, journal.MSG_SNAPSHOT_PRUNED,
                    journal.MSG_INTAKE_STORED):
            check(mid.hex in catalog, f"MESSAGE_ID {mid.hex} is not in the journal catalog")

    def packaged_config_idles(self) -> str:
        # The package enabled and started the unit with the shipped, job-less configuration.
        state = self.ct.wait_until("odbackupd to be active with the packaged config",
                                   lambda: self.ct.show("ActiveState") == "active" or None, 30)
        check(state, "not active")
        restarts = self.ct.show("NRestarts")
        check(restarts == "0",
              f"the first start failed and systemd restarted it {restarts} times:\n"
              f"{self.journal('-u odbackupd -n 20 -o cat')}")
        out = self.sh(f"odbackupd --config {CONFIG} --check-config").stdout
        check("0 jobs" in out, f"the packaged configuration is not job-less: {out}")
        return out

    def verify_unit(self) -> str:
        p = self.sh("systemd-analyze verify odbackupd.service", check=False)
        noise = (p.stdout + p.stderr).strip()
        check(p.returncode == 0 and not noise,
              f"systemd-analyze verify said (exit {p.returncode}):\n{noise}")
        return "silent"

    def security(self) -> str:
        out = self.sh("systemd-analyze security --no-pager odbackupd.service").stdout
        line = next((ln for ln in out.splitlines() if "Overall exposure level" in ln), "")
        check(line, f"no exposure line in:\n{out[-1500:]}")
        score = float(line.split(":")[1].split()[0])
        check(score <= 2.0, f"exposure {score} > 2.0:\n{out}")
        return line.strip()

    def write_config(self, extra: str = "") -> None:
        self.ct.write(CONFIG, f"""\
[job.data]
sources = ["/srv/data", "/home/alice"]
keep_last = 5
volume_size = "1MiB"
{extra}""")

    def sandboxed_once(self) -> str:
        # Data only root may read (the daemon reads it with CAP_DAC_READ_SEARCH), and a home
        # directory (ProtectHome=read-only still lets it read).
        self.sh("mkdir -p /srv/data/sub /home/alice"
                " && head -c 3000000 /dev/urandom > /srv/data/big.bin"
                " && echo secret-root-only > /srv/data/sub/root-only"
                " && chmod 600 /srv/data/sub/root-only && chmod 700 /srv/data/sub"
                " && echo hi > /home/alice/notes && chmod 600 /home/alice/notes"
                " && chmod 700 /home/alice")
        self.write_config()
        # The installed unit with Type=oneshot and a different command: the very same sandbox.
        unit = self.ct.path("/lib/systemd/system/odbackupd.service").read_text()
        lines = []
        for line in unit.splitlines():
            if line.startswith(("Type=", "NotifyAccess=", "WatchdogSec=", "ExecReload=", "Restart=",
                                "ExecStart=", "WantedBy=")):
                continue
            lines.append(line)
            if line == "[Service]":
                lines += ["Type=oneshot",
                          "ExecStart=/usr/bin/odbackupd --config /etc/odbackupd/odbackupd.toml"
                          " --check-config",
                          "ExecStart=/usr/bin/odbackupd --config /etc/odbackupd/odbackupd.toml"
                          " --once data"]
        self.ct.write("/etc/systemd/system/odbackupd-once.service", "\n".join(lines) + "\n")
        p = self.sh("systemctl daemon-reload && systemctl start odbackupd-once.service",
                    check=False, timeout=300)
        log = self.journal("-u odbackupd-once.service -o cat")
        check(p.returncode == 0,
              f"--check-config/--once under the unit's sandbox failed:\n{p.stderr}\n{log[-3000:]}")
        check("OK (1 job," in log, f"--check-config did not pass:\n{log[-2000:]}")
        listing = self.sh(f"ls /var/backups/odbackupd/{self.ct.name}/data/*/manifest.json")
        manifests = listing.stdout.split()
        check(len(manifests) == 1, f"expected one snapshot, found {manifests}")
        owner = self.sh(f"stat -c %U {manifests[0]}").stdout.strip()
        check(owner == "odbackupd", f"the snapshot is owned by {owner}, not the service user")
        self.sh("rm -rf /root/restore && odctl restore data latest --to /root/restore"
                " && cmp /root/restore/srv/data/big.bin /srv/data/big.bin"
                " && cmp /root/restore/srv/data/sub/root-only /srv/data/sub/root-only"
                " && cmp /root/restore/home/alice/notes /home/alice/notes")
        self.sh("rm /etc/systemd/system/odbackupd-once.service && systemctl daemon-reload")
        return log[-600:]

    def enable_now(self) -> str:
        self.sh("systemctl restart odbackupd && systemctl enable --now odbackupd")
        self.ct.wait_until("odbackupd active", lambda: self.ct.show("ActiveState") == "active", 30)
        status = self.ct.wait_until("a StatusText from the daemon",
                                    lambda: self.ct.show("StatusText"), 30)
        check("job" in status or "idle" in status,
              f"StatusText {status!r} does not look like the daemon's")
        return f"StatusText={status}"

    def snapshot_ids(self, job: str) -> set[str]:
        """The complete snapshots of ``job`` on every destination (``odctl --json snapshots``)."""
        listing = json.loads(self.odctl(f"--json snapshots {job}").stdout)
        return {s["snapshot"] for d in listing["destinations"].values() for s in d["snapshots"]}

    def odctl_root(self) -> str:
        st = json.loads(self.odctl("--json status").stdout)
        check(isinstance(st, dict) and "data" in json.dumps(st),
              f"odctl --json status has no job 'data': {st}")
        before = self.snapshot_ids("data")
        p = self.odctl("backup-now data --wait", timeout=300)
        new = self.snapshot_ids("data") - before
        check(len(new) == 1,
              f"backup-now --wait made {len(new)} new snapshots, not one ({sorted(before)} before)")
        return f"new snapshot {new.pop()}; {p.stdout[-300:]}"

    def odctl_nobody(self) -> str:
        p = self.odctl("status", user="nobody", check_rc=False)
        check(p.returncode == 0, f"odctl status as nobody exited {p.returncode}: {p.stderr}")
        from odbackupd.bus.names import EXIT_ACCESS_DENIED

        p = self.odctl("backup-now data", user="nobody", check_rc=False)
        check(p.returncode == EXIT_ACCESS_DENIED,
              f"backup-now as nobody exited {p.returncode} (want {EXIT_ACCESS_DENIED}): "
              f"{p.stdout}{p.stderr}")
        check("denied" in p.stderr.lower() or "odbackup" in p.stderr,
              f"no clear refusal: {p.stderr}")
        return p.stderr.strip()

    def journal_fields(self) -> str:
        from odbackupd import journal

        out = self.journal(
            f"-u odbackupd JOB=data MESSAGE_ID={journal.MSG_RUN_FINISHED.hex} -o json")
        entries = [json.loads(ln) for ln in out.splitlines() if ln.strip()]
        check(entries, f"no run-finished entry with JOB=data in the journal:\n"
                       f"{self.journal('-u odbackupd -n 30 -o cat')}")
        e = entries[-1]
        for f in ("JOB", "RUN_ID", "SNAPSHOT"):
            check(e.get(f), f"the run-finished entry has no {f}= field: {e}")
        return f"{e.get('MESSAGE')} (RUN_ID={e['RUN_ID']} SNAPSHOT={e['SNAPSHOT']})"

    def reload_broken(self) -> str:
        pid = self.ct.show("MainPID")
        good = self.ct.path(CONFIG).read_text()
        self.ct.write(CONFIG, good + "\n[job.broken]\nsources = [\"relative/path\"]\n"
                      "volume_size = \"lots\"\n")
        self.sh("systemctl reload odbackupd")
        # the daemon says why it keeps the old configuration
        self.ct.wait_until("the journal to name the broken key",
                           lambda: "volume_size" in self.journal("-u odbackupd -n 40 -o cat"), 30)
        check(self.ct.show("ActiveState") == "active",
              "the daemon is not active after a broken reload")
        check(self.ct.show("MainPID") == pid, "the daemon restarted on a broken reload")
        st = json.loads(self.odctl("--json jobs").stdout)
        check("broken" not in json.dumps(st), "the broken configuration's job was taken")
        self.ct.write(CONFIG, good)
        self.sh("systemctl reload odbackupd")
        return self.journal("-u odbackupd -n 6 -o cat")[-600:]

    def drop_dir_under_unit(self) -> str:
        """A drop directory as the README sets it up. A file that was open for writing
        before the daemon started (so no close of it was seen) and that stays unchanged
        for many quiet periods is not taken while its writer holds it: the daemon, user
        odbackupd, asks the kernel with a read lease on a root-owned file, which needs the
        unit's CAP_LEASE. Once the writer closes it, it is stored, verified and removed."""
        self.sh("install -d -o odbackupd -g odbackup -m 1733 /srv/drop && rm -f /run/holder.fifo"
                " && mkfifo /run/holder.fifo")
        # the writer: opens the file, writes half, waits, writes the rest and closes
        self.sh("umask 077; setsid sh -c 'exec 3>>/srv/drop/dump.sql; printf \"BEGIN;\\n\" >&3;"
                " read x < /run/holder.fifo; printf \"COMMIT;\\n\" >&3'"
                " </dev/null >/dev/null 2>&1 &")
        self.ct.write("/etc/systemd/system/odbackupd.service.d/drop.conf",
                      "[Service]\nReadWritePaths=/srv/drop\n")
        self.write_config('[job.dumps]\ndrop_dir = "/srv/drop"\nquiet_period = "1s"\n'
                          '[daemon]\nlog_level = "debug"\n')
        self.sh("systemctl daemon-reload && systemctl restart odbackupd")
        # each quiet period the daemon finds it stable but still open (said at debug level)
        self.ct.wait_until("the daemon to find the writer three times",
                           lambda: "still open for writing; it is taken once nobody writes it"
                           " (seen open 3 times)" in self.journal("-u odbackupd -o cat"), 60)
        log = self.journal("-u odbackupd -o cat")
        check(self.sh("test -e /srv/drop/dump.sql", check=False).returncode == 0
              and "stored, verified" not in log,
              f"the half-written drop file was taken:\n{log[-2000:]}")
        self.sh("echo go > /run/holder.fifo")
        self.ct.wait_until("the closed drop file to be stored and removed",
                           lambda: self.sh("test -e /srv/drop/dump.sql",
                                           check=False).returncode != 0, 60)
        snaps = self.snapshot_ids("dumps+drop")
        check(len(snaps) == 1, f"expected one dumps+drop snapshot, found {sorted(snaps)}")
        self.sh("rm -rf /root/drop-restore"
                " && odctl restore dumps+drop latest --to /root/drop-restore")
        got = self.ct.path("/root/drop-restore/srv/drop/dump.sql").read_text()
        check(got == "BEGIN;\nCOMMIT;\n", f"the restored drop file is {got!r}")
        return f"held open: not taken; closed: snapshot {snaps.pop()}, restored whole, removed"

    def intake(self) -> str:
        from .intake_step import intake_step  # its own module (it imports this one)

        return intake_step(self)

    def start_emulator(self) -> None:
        """The Graph emulator on this host's 127.0.0.1 (shared with the container), once, and
        its CA inside the container for the accounts' ca_bundle."""
        if self.emu is not None:
            return
        from tests.graphemu import GraphEmulator

        self.emu_dir = tempfile.TemporaryDirectory(prefix="odbackupd-systest-emu-")
        self.emu = GraphEmulator(Path(self.emu_dir.name), mode="business", seed=0)
        self.emu.start()
        self.emu.register_app(EMU_CLIENT_ID, secret=EMU_SECRET)
        self.ct.write(EMU_CA, Path(self.emu.ca_pem).read_text())

    def emu_account(self, name: str, client_id: str, extra: str = "") -> str:
        """An ``[account.NAME]`` section for the emulator, as a sysadmin would write it."""
        emu = self.emu
        return f"""
[account.{name}]
client_id = "{client_id}"
tenant = "{emu.tenant}"
{extra}authority_url = "{emu.authority_url}"
graph_url = "{emu.graph_url}"
ca_bundle = "{EMU_CA}"
"""

    def restart_during_upload(self) -> str:
        self.start_emulator()
        emu = self.emu
        self.ct.write("/etc/odbackupd/credentials/emu-secret", EMU_SECRET, mode=0o600)
        account = self.emu_account("emu", EMU_CLIENT_ID, f'drive_id = "{emu.site_drive_id}"\n'
                                   'client_secret_file = "odbackupd_emu-secret"\n')
        self.sh("head -c 24000000 /dev/urandom > /srv/cloud.bin && mkdir -p /srv/cloud"
                " && mv /srv/cloud.bin /srv/cloud/")
        self.write_config(f"""
[daemon]
bandwidth_limit = "3MiB"
max_parallel_uploads = 1
{account}
[destination.cloud]
type = "onedrive"
account = "emu"
folder = "systest"
chunk_size = "640KiB"

[job.cloud]
sources = ["/srv/cloud"]
destinations = ["cloud"]
volume_size = "8MiB"
compression_level = 1
""")
        # restart, not reload: LoadCredential= is read when the unit starts
        self.sh("systemctl restart odbackupd")
        self.ct.wait_until("odbackupd active", lambda: self.ct.show("ActiveState") == "active", 30)
        self.odctl("backup-now cloud")
        total = 24_000_000
        self.ct.wait_until("half of the upload",
                           lambda: emu.counters["bytes_uploaded"] >= total // 2, 120)
        at_restart = emu.counters["bytes_uploaded"]
        self.sh("systemctl restart odbackupd", timeout=120)
        drive = emu.site_drive_id

        series = f"/systest/{self.ct.name}/cloud"  # FOLDER/HOST/JOB: the container's host name

        def manifest() -> bool:
            if not emu.exists(series, drive_id=drive):
                return False
            return any(emu.exists(f"{series}/{s}/manifest.json", drive_id=drive)
                       for s in emu.list_dir(series, drive_id=drive))
        self.ct.wait_until("the snapshot's manifest on OneDrive after the restart", manifest, 180)
        sent = emu.counters["bytes_uploaded"]
        check(sent < total * 1.3,
              f"{sent} bytes uploaded for ~{total}: the upload started over after the restart"
              f" ({at_restart} before it)")
        self.odctl("verify cloud latest", timeout=300)
        emu.assert_no_violations()
        return (f"{at_restart} bytes before the restart, {sent} in all; "
                f"sessions resumed: {emu.counters['sessions_resumed']}")

    def login_with_distro_msal(self) -> str:
        """`odctl login` (device code, through the daemon) with Debian's own python3-msal,
        then a backup to the user's OneDrive and `odctl logout`: the path every Debian user
        of the package takes first, with the msal bookworm ships rather than PyPI's."""
        self.start_emulator()
        emu = self.emu
        emu.config.update(device_code_interval=1)
        msal = self.sh("python3 -c 'import msal; print(msal.__version__)'").stdout.strip()
        self.sh("mkdir -p /srv/mine && head -c 200000 /dev/urandom > /srv/mine/f.bin")
        self.write_config(f"""{self.emu_account("me", emu.client_id)}
[destination.mine]
type = "onedrive"
account = "me"
folder = "systest-login"

[job.mine]
sources = ["/srv/mine"]
destinations = ["mine"]
""")
        self.sh("systemctl reload odbackupd")
        self.ct.wait_until("the reloaded job 'mine'",
                           lambda: "mine" in self.odctl("--json jobs").stdout, 30)
        p = self.odctl("backup-now mine --wait", check_rc=False, timeout=120)
        from odbackupd.bus.names import EXIT_NOT_LOGGED_IN

        check(p.returncode == EXIT_NOT_LOGGED_IN and "odctl login me" in p.stderr,
              f"a backup before login: exit {p.returncode}, {p.stderr!r}")
        self.sh("rm -f /root/login.out; setsid odctl login me </dev/null >/root/login.out 2>&1 &")
        out = self.ct.path("/root/login.out")  # not /run: a tmpfs of the container's own

        def code() -> str | None:
            m = re.search(r"enter the code (\w+)", out.read_text() if out.exists() else "")
            return m.group(1) if m else None
        emu.approve_device_code(self.ct.wait_until("odctl login to show a device code", code, 30))
        self.ct.wait_until("odctl login to finish", lambda: "logged in as" in out.read_text()
                           or "odctl:" in out.read_text(), 60)
        check("me: logged in as alice@example.com" in out.read_text(),
              f"odctl login said:\n{out.read_text()}")
        cache = self.sh("stat -c '%U %a' /var/lib/odbackupd/tokens/me.json").stdout.split()
        check(cache[:2] == ["odbackupd", "600"], f"the token cache is {cache}, not odbackupd 600")
        before = emu.counters["bytes_uploaded"]
        self.odctl("backup-now mine --wait", timeout=120)
        check(emu.counters["bytes_uploaded"] - before >= 200000,
              "the backup after login uploaded nothing")
        self.odctl("verify mine latest", timeout=120)
        log = self.journal("-u odbackupd -o cat")
        check("eyJ" not in log and "refresh_token" not in log, "a token appears in the journal")
        self.odctl("logout me")
        p = self.odctl("backup-now mine --wait", check_rc=False, timeout=120)
        check(p.returncode == EXIT_NOT_LOGGED_IN,
              f"a backup after logout: exit {p.returncode}, {p.stderr!r}")
        emu.assert_no_violations()
        return f"python3-msal {msal}: not logged in → login (device code) → backup, verify → logout"

    def watchdog(self) -> str:
        pid = self.ct.show("MainPID")
        restarts = int(self.ct.show("NRestarts"))
        wd = self.ct.show("WatchdogUSec")
        self.sh(f"kill -STOP {pid}")
        self.ct.wait_until("systemd to restart the hung daemon",
                           lambda: int(self.ct.show("NRestarts")) > restarts
                           and self.ct.show("ActiveState") == "active"
                           and self.ct.show("MainPID") not in (pid, "0"), 120)
        log = self.journal("-u odbackupd -n 80 -o cat")
        check("Watchdog timeout" in log or "watchdog" in log.lower(),
              f"no watchdog message in the journal:\n{log[-1500:]}")
        return f"WatchdogUSec={wd}; PID {pid} -> {self.ct.show('MainPID')}"

    def purge(self) -> str:
        self.sh("DEBIAN_FRONTEND=noninteractive apt-get purge -y -q odbackupd", timeout=300)
        left = self.sh("systemctl list-unit-files 'odbackupd*' --no-legend; "
                       "ls -d /etc/odbackupd /var/lib/odbackupd /var/cache/odbackupd "
                       "/var/lib/odbackupd-intake /lib/systemd/system/odbackupd.service "
                       "/etc/systemd/system/multi-user.target.wants/odbackupd.service 2>/dev/null",
                       check=False).stdout.strip()
        check(not left, f"left behind after purge:\n{left}")
        state = self.sh("systemctl show -p LoadState --value odbackupd.service").stdout.strip()
        check(state == "not-found", f"odbackupd.service is {state!r} after purge")
        return "nothing left"

    # ------------------------------------------------------------------ run
    def run(self) -> Report:
        try:
            self.step("packages build (lintian, rpmlint clean)", self.build_packages, fatal=True)
            self.step(".rpm payload, scriptlets and Requires (rpm -qlp, --scripts, -R)",
                      self.rpm_payload)
            self.step("debootstrap (cached) and boot Debian 12 with systemd-nspawn", self.boot,
                      fatal=True)
            self.step("apt-get install the .deb (Depends from the mirror)", self.install,
                      fatal=True)
            self.step("unit enabled, sysusers, tmpfiles, conffile, policy, man, catalog",
                      self.installed_layout)
            self.step("packaged config (no jobs) idles harmlessly", self.packaged_config_idles)
            self.step("systemd-analyze verify is silent", self.verify_unit)
            self.step("systemd-analyze security <= 2.0", self.security)
            self.step("--check-config and --once in the unit's sandbox", self.sandboxed_once)
            ok = self.step("systemctl enable --now: active, StatusText from daemon",
                           self.enable_now)
            if not ok and not self.blocked:
                self.blocked = "systemctl enable --now"
            self.step("odctl status and backup-now --wait as root", self.odctl_root)
            self.step("unprivileged: status yes, backup-now refused", self.odctl_nobody)
            self.step("journalctl JOB=... shows the run with fields", self.journal_fields)
            self.step("reload with a broken config keeps the daemon", self.reload_broken)
            self.step("drop dir: a file open for writing waits (CAP_LEASE)",
                      self.drop_dir_under_unit)
            self.step("odbackupd-intake: socket, PUT with a token, stored and restored",
                      self.intake)
            self.step("restart during a OneDrive upload resumes it", self.restart_during_upload)
            self.step("odctl login/logout with Debian's python3-msal", self.login_with_distro_msal)
            self.step("watchdog restarts a hung (SIGSTOPped) daemon", self.watchdog)
            if self.blocked == "systemctl enable --now":
                self.blocked = None  # purging does not need a working daemon
            self.step("apt-get purge leaves no unit behind", self.purge)
        finally:
            if self.emu is not None:
                self.emu.stop()
            if self.emu_dir is not None:
                self.emu_dir.cleanup()
        return self.report

    def close(self) -> None:
        self.ct.destroy()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deb", type=Path, help="test this .deb instead of building one")
    ap.add_argument("--keep", action="store_true",
                    help="leave the container running (prints how to enter it)")
    args = ap.parse_args(argv)
    t = SystemTest(args.deb)
    try:
        report = t.run()
    finally:
        if args.keep and t.ct.pid:
            print(f"container kept: nsenter -t {t.ct.pid} -m -u -i -p -r -w bash   "
                  f"(root {t.ct.root})")
        else:
            t.close()
    print(report.text())
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
