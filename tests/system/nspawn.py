"""A Debian 12 container booted with systemd as PID 1, for the system test.

systemd cannot be PID 1 on this machine, but it runs fine as PID 1 of a
``systemd-nspawn`` container (``--register=no --keep-unit``: no machined here). The root
lives on a tmpfs; it is unpacked from a tarball of a ``debootstrap``ped bookworm kept in
``/var/cache/odbackupd-test/`` between local runs (keyed by suite, mirror and package
list), so only the first run pays for debootstrap. Commands run inside with
``nsenter`` into the container's namespaces, with a clean environment.
"""
from __future__ import annotations

import hashlib
import os
import re
import shlex
import signal
import subprocess
import tempfile
import time
from pathlib import Path

SUITE = "bookworm"
# Besides the minimal base: the init system and bus, and what the checks use
# (man for Documentation=man: lines, procps for kill/pgrep).
INCLUDE = ["systemd", "systemd-sysv", "dbus", "man-db", "procps", "ca-certificates"]
CACHE_DIR = Path(os.environ.get("ODBACKUPD_TEST_CACHE", "/var/cache/odbackupd-test"))
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "TERM": "dumb",
             "HOME": "/root"}


class ContainerError(RuntimeError):
    pass


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (debootstrap and the container use it too)."""
    for f in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        try:
            text = f.read_text()
        except OSError:
            continue
        m = re.search(r"^URIs:\s*(\S+/debian)\s*$", text, re.M) or re.search(
            r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)\s+" + SUITE, text, re.M)
        if m:
            return m.group(1)
    return "http://deb.debian.org/debian"


def _run(cmd: list[str], *, timeout: float, check: bool = True,
         **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise ContainerError(f"{shlex.join(cmd)} exited {p.returncode}:\n"
                             f"{p.stdout[-2000:]}{p.stderr[-3000:]}")
    return p


def base_tarball(log=print) -> Path:
    """The debootstrapped root as a tarball, made once per package list and mirror."""
    mirror = debian_mirror()
    key = hashlib.sha256(f"{SUITE} {mirror} {','.join(INCLUDE)}".encode()).hexdigest()[:16]
    tarball = CACHE_DIR / f"{SUITE}-{key}.tar"
    if tarball.exists():
        return tarball
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="debootstrap-", dir=CACHE_DIR) as tmp:
        root = Path(tmp) / "root"
        log(f"debootstrap {SUITE} from {mirror} (cached afterwards as {tarball})")
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(INCLUDE)}", SUITE,
              str(root), mirror], timeout=900)
        # The apt lists and downloaded .debs are stale by the next run: do not keep them.
        _run(["sh", "-c",
              f"rm -rf {root}/var/cache/apt/archives/*.deb {root}/var/lib/apt/lists/*_*"],
             timeout=60)
        part = tarball.with_suffix(".part")
        _run(["tar", "-C", str(root), "--numeric-owner", "--xattrs", "-cf", str(part), "."],
             timeout=600)
        part.rename(tarball)
    return tarball


class Container:
    """A booted container on a tmpfs root; ``run()`` executes a shell command inside."""

    def __init__(self, name: str = "odbtest") -> None:
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix="odbackupd-systest-"))
        self.root = self.dir / "root"
        self.nspawn: subprocess.Popen | None = None
        self.pid = 0
        self.console = self.dir / "console.log"
        self._mounted = False

    # --- life cycle ---
    def create(self, tarball: Path) -> None:
        _run(["mount", "-t", "tmpfs", "-o", "size=6G,mode=0755", "tmpfs", str(self.dir)],
             timeout=30)
        self._mounted = True
        self.root.mkdir()
        _run(["tar", "-C", str(self.root), "--numeric-owner", "--xattrs", "-xf", str(tarball)],
             timeout=300)
        (self.root / "etc/hostname").write_text(self.name + "\n")
        (self.root / "etc/apt/sources.list").write_text(f"deb {debian_mirror()} {SUITE} main\n")

    def boot(self, timeout: float = 90) -> None:
        console = open(self.console, "wb")
        self.nspawn = subprocess.Popen(
            ["systemd-nspawn", "-D", str(self.root), "-b", "--register=no", "--keep-unit",
             "--console=passive", "-M", self.name],
            stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout

        def systemd_pid() -> int | None:
            if self.nspawn.poll() is not None:
                raise ContainerError(f"systemd-nspawn exited {self.nspawn.returncode}: "
                                     f"{self.console.read_text()[-2000:]}")
            pid = self.nspawn.pid
            kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            # nspawn's child becomes the container's init when it execs systemd
            if kids and Path(f"/proc/{kids[0]}/comm").read_text().strip() == "systemd":
                return int(kids[0])
            return None
        self.pid = self.wait_until("the container's systemd", systemd_pid, timeout, interval=0.1)

        def booted() -> str | None:
            p = self.run("systemctl is-system-running --wait", check=False,
                         timeout=max(5.0, deadline - time.monotonic()))
            return p.stdout.strip() or None  # empty: the manager's bus is not up yet
        state = self.wait_until("the container to finish booting", booted, timeout)
        if state not in ("running", "degraded"):
            failed = self.run("systemctl --failed --no-legend", check=False).stdout
            raise ContainerError(
                f"the container's boot ended in state {state!r}; failed units:\n{failed}")

    def destroy(self) -> None:
        if self.nspawn and self.nspawn.poll() is None:
            os.killpg(self.nspawn.pid, signal.SIGTERM)  # nspawn turns this into a clean poweroff
            try:
                self.nspawn.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.nspawn.pid, signal.SIGKILL)
                self.nspawn.wait(timeout=30)
        if self._mounted:
            _run(["umount", "-l", str(self.dir)], timeout=60, check=False)
            self._mounted = False
        try:
            self.dir.rmdir()
        except OSError:
            pass

    # --- inside ---
    def run(self, script: str, *, check: bool = True, timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess:
        """Runs ``script`` with sh inside the container, as root, clean environment."""
        cmd = ["nsenter", "-t", str(self.pid), "-m", "-u", "-i", "-p", "-r", "-w",
               "env", "-i", *[f"{k}={v}" for k, v in CLEAN_ENV.items()], "sh", "-c", script]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
        if check and p.returncode != 0:
            raise ContainerError(
                f"`{script}` exited {p.returncode}:\n{p.stdout[-2000:]}{p.stderr[-3000:]}")
        return p

    def path(self, inside: str) -> Path:
        """The host path of a file inside the container (not under /tmp: that is a tmpfs of its
        own)."""
        return self.root / inside.lstrip("/")

    def write(self, inside: str, text: str, mode: int = 0o644) -> None:
        p = self.path(inside)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        p.chmod(mode)

    def show(self, prop: str, unit: str = "odbackupd.service") -> str:
        return self.run(f"systemctl show -p {prop} --value {unit}").stdout.strip()

    def wait_until(self, what: str, cond, timeout: float, interval: float = 0.5):
        """Polls ``cond()`` until it returns a true value (the container has no event to wait
        on)."""
        deadline = time.monotonic() + timeout
        while True:
            value = cond()
            if value:
                return value
            if time.monotonic() > deadline:
                raise ContainerError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(interval)
