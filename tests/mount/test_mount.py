"""odctl mount: a job's snapshots as a read-only FUSE file system, read with the tools a
sysadmin uses (ls, cat, cmp, sha256sum, stat) against the source tree."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from tests.layout import series_dir
from tests.snapshot.treegen import IS_ROOT, make_awkward_tree, snapshot_tree

from .conftest import Mount, odbackupd, odctl

pytestmark = pytest.mark.usefixtures("fuse")


def _backup(cfg: Path) -> dict:
    r = odbackupd("--config", str(cfg), "--once", "t")
    assert r.returncode == 0, r.stderr
    snaps = json.loads(odctl("--config", str(cfg), "snapshots", "t", "--json").stdout)
    return snaps["destinations"]["usb"]["snapshots"][-1]


def _one_file(setup, tmp_path: Path, text: str = "x") -> tuple[Path, Path, dict]:  # noqa: ANN001
    """A source holding one file ``f``, backed up once: (source, config, snapshot row)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text(text)
    cfg = setup.write([src])
    return src, cfg, _backup(cfg)


def _files(top: Path) -> list[Path]:
    return sorted(p for p in top.rglob("*") if p.is_file() and not p.is_symlink())


def test_the_mounted_snapshot_is_the_source_tree(setup, tmp_path):
    src = make_awkward_tree(tmp_path)  # a 3 MiB file in 1 MiB volumes: it spans volumes
    cfg = setup.write([src], volume_size="1MiB")
    snap = _backup(cfg)
    assert snap["volumes"] >= 4
    with Mount(cfg, tmp_path / "mnt") as mnt:
        top = mnt.path
        assert "1 snapshot mounted" in mnt.ready_line and snap["snapshot"] in mnt.ready_line
        assert sorted(os.listdir(top)) == sorted([snap["snapshot"], "latest"])
        assert os.readlink(top / "latest") == snap["snapshot"]
        inside = top / "latest" / str(src).lstrip("/")

        r = subprocess.run(["ls", "-lR", str(top) + "/"], capture_output=True)
        assert r.returncode == 0, r.stderr
        assert b"latin1-\xe9\xff" in r.stdout and b"random-hardlink.bin" in r.stdout
        assert b"hosts-link -> ../etc/hosts" in r.stdout

        # names (non-UTF-8 too), types, modes, owners, mtimes to the ns, symlinks, hard
        # links and every byte of content, as stat/readlink/read see them on the mount
        # (device numbers and xattrs too: shown, never honoured, the mount is nodev)
        assert snapshot_tree(inside) == snapshot_tree(src)
        assert os.path.exists(os.fsencode(str(inside / "names")) + b"/latin1-\xe9\xff")

        files = _files(src)
        for f in files:
            m = inside / f.relative_to(src)
            assert subprocess.run(["cmp", str(f), str(m)]).returncode == 0, f
            assert subprocess.run(["cat", str(m)], capture_output=True).stdout == f.read_bytes(), f
        sums = subprocess.run(["sha256sum", *[str(inside / f.relative_to(src)) for f in files]],
                              capture_output=True, check=True).stdout.splitlines()
        # a name with a newline is escaped: its line starts with a backslash
        assert [s.split()[0].lstrip(b"\\").decode() for s in sums] == [
            hashlib.sha256(f.read_bytes()).hexdigest() for f in files]

        a, b = (os.stat(inside / "data" / "random.bin"),
                os.stat(inside / "data" / "random-hardlink.bin"))
        assert a.st_ino == b.st_ino and a.st_nlink == b.st_nlink == 2
        assert os.stat(inside / "etc" / "hosts").st_mtime_ns == 1_600_000_000_123_456_789
        assert (os.stat(inside / "etc" / "hosts").st_ctime_ns
                == os.stat(src / "etc" / "hosts").st_ctime_ns)
        if IS_ROOT:
            assert os.lstat(inside / "data" / "hosts-link")[4:6] == (4321, 8765)
            assert stat.S_IMODE(os.stat(inside / "bin" / "tool").st_mode) == 0o4755  # shown; nosuid
        st = os.stat(inside / "shared")
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o1777
        assert os.stat(inside / "empty" / "nested-empty").st_mtime_ns == 1_400_000_000_000_000_001
        assert os.stat(inside / "data").st_nlink == 2 and os.stat(inside / "empty").st_nlink == 3
        # stat(1) as a person reads it
        out = subprocess.run(["stat", "-c", "%A %U %s %Y", str(inside / "etc" / "ssh" / "key")],
                             capture_output=True, text=True, check=True).stdout.split()
        src_out = subprocess.run(["stat", "-c", "%A %U %s %Y", str(src / "etc" / "ssh" / "key")],
                                 capture_output=True, text=True, check=True).stdout.split()
        assert out == src_out and out[0] == "-rw-------"
        caches = list((setup.spool / "mount" / "t").iterdir())
        assert len(caches) == 1 and stat.S_IMODE(caches[0].stat().st_mode) == 0o700
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in caches[0].iterdir())
        assert any(p.name.endswith(".zst") and "vol." in p.name for p in caches[0].iterdir())
    assert mnt.returncode == 0, mnt.stderr
    assert not os.path.ismount(mnt.path) and os.listdir(mnt.path) == []
    assert list((setup.spool / "mount" / "t").iterdir()) == []  # the cache went with the mount
    assert "unmounted" in mnt.stderr and "Traceback" not in mnt.stderr


def test_writes_are_refused_with_erofs(setup, tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_text("keep me")
    os.symlink("f", src / "d" / "l")
    cfg = setup.write([src])
    _backup(cfg)
    with Mount(cfg, tmp_path / "mnt") as mnt:
        d = mnt.path / "latest" / str(src).lstrip("/") / "d"
        attempts = {
            "open for writing": lambda: open(d / "f", "r+b"),
            "append": lambda: open(d / "f", "ab"),
            "truncate": lambda: os.truncate(d / "f", 0),
            "create": lambda: open(d / "new", "xb"),
            "mkdir": lambda: os.mkdir(d / "sub"),
            "unlink": lambda: os.unlink(d / "f"),
            "rmdir": lambda: os.rmdir(d),
            "rename": lambda: os.rename(d / "f", d / "g"),
            "hard link": lambda: os.link(d / "f", d / "g"),
            "symlink": lambda: os.symlink("x", d / "s"),
            "chmod": lambda: os.chmod(d / "f", 0o777),
            "chown": lambda: os.chown(d / "f", 1, 1),
            "utime": lambda: os.utime(d / "f", (0, 0)),
            "setxattr": lambda: os.setxattr(d / "f", "user.x", b"1"),
            "mkdir at the top": lambda: os.mkdir(mnt.path / "x"),
            "remove latest": lambda: os.unlink(mnt.path / "latest"),
        }
        for what, act in attempts.items():
            with pytest.raises(OSError) as e:
                act()
            assert e.value.errno == errno.EROFS, (what, e.value)
        assert (d / "f").read_text() == "keep me" and os.readlink(d / "l") == "f"
        assert not os.access(d / "f", os.W_OK)
        r = subprocess.run(["touch", str(d / "f")], capture_output=True, text=True)
        assert r.returncode != 0 and "Read-only file system" in r.stderr
    assert mnt.returncode == 0


def test_every_snapshot_of_a_chain_and_latest(setup, tmp_path):
    """A full and two incrementals: each directory shows its own state (deleted files gone,
    changed ones changed); the data of an unchanged file comes from the snapshot that holds it."""
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "a").write_text("a1")
    (src / "d" / "gone").write_text("deleted later")
    (src / "same").write_bytes(os.urandom(300_000))
    cfg = setup.write([src])
    s1 = _backup(cfg)
    (src / "d" / "a").write_text("a2, longer")
    os.unlink(src / "d" / "gone")
    s2 = _backup(cfg)
    (src / "d" / "new").write_text("new")
    s3 = _backup(cfg)
    assert (s1["kind"], s2["kind"], s3["kind"]) == ("full", "incremental", "incremental")
    with Mount(cfg, tmp_path / "mnt") as mnt:
        assert "3 snapshots mounted" in mnt.ready_line
        rel = str(src).lstrip("/")
        one, two, three = (mnt.path / s["snapshot"] / rel for s in (s1, s2, s3))
        assert ((one / "d" / "a").read_text() == "a1"
                and (one / "d" / "gone").read_text() == "deleted later")
        assert (two / "d" / "a").read_text() == "a2, longer" and not (two / "d" / "gone").exists()
        assert sorted(os.listdir(three / "d")) == ["a", "new"]
        assert (three / "same").read_bytes() == (src / "same").read_bytes()  # stored in s1 only
        assert os.readlink(mnt.path / "latest") == s3["snapshot"]
        assert (mnt.path / "latest" / rel / "d" / "new").read_text() == "new"
    assert mnt.returncode == 0


def test_an_encrypted_job_needs_the_identity(setup, tmp_path, age_key):
    key, recipient = age_key
    src = tmp_path / "src"
    src.mkdir()
    (src / "secret").write_bytes(b"plain text no one may read from the spool\n" * 1000)
    cfg = setup.write([src], recipients=[recipient])
    _backup(cfg)
    (tmp_path / "mnt").mkdir()
    r = odctl("--config", str(cfg), "mount", "t", str(tmp_path / "mnt"))
    assert (r.returncode == 2 and "--identity" in r.stderr
            and len(r.stderr.strip().splitlines()) == 1), r.stderr
    assert not os.path.ismount(tmp_path / "mnt")
    with Mount(cfg, tmp_path / "mnt", "--identity", str(key)) as mnt:
        f = mnt.path / "latest" / str(src).lstrip("/") / "secret"
        assert f.read_bytes() == (src / "secret").read_bytes()
        cached = [p for p in (setup.spool / "mount" / "t").rglob("*") if p.is_file()]
        assert any(p.name.endswith(".zst.age") and "vol." in p.name for p in cached)
        # volumes stay encrypted
        assert not any(b"plain text no one" in p.read_bytes() for p in cached)
    assert mnt.returncode == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])  # Ctrl-C; systemctl stop, kill
def test_a_signal_unmounts(setup, tmp_path, sig):
    src, cfg, _ = _one_file(setup, tmp_path)
    mnt = Mount(cfg, tmp_path / "mnt")
    with mnt:
        assert (mnt.path / "latest" / str(src).lstrip("/") / "f").read_text() == "x"
        mnt.proc.send_signal(sig)
        assert mnt.finish() == 0, mnt.stderr
    assert not os.path.ismount(mnt.path)
    assert "unmounted" in mnt.stderr and sig.name in mnt.stderr and "Traceback" not in mnt.stderr
    assert list((setup.spool / "mount" / "t").iterdir()) == []


def test_a_damaged_volume_is_an_io_error_never_wrong_data(setup, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(3 << 20))
    (src / "small").write_text("fine")
    cfg = setup.write([src], volume_size="1MiB")
    snap = _backup(cfg)
    vols = sorted((series_dir(setup.dest) / snap["snapshot"]).glob("vol.*"))
    bad = vols[1]  # inside "big"
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with Mount(cfg, tmp_path / "mnt") as mnt:
        inside = mnt.path / "latest" / str(src).lstrip("/")
        r = subprocess.run(["cat", str(inside / "big")], capture_output=True)
        assert r.returncode != 0 and b"Input/output error" in r.stderr
        # what cat got before the error is the file's true beginning: no byte of the damage
        assert (src / "big").read_bytes().startswith(r.stdout) and len(r.stdout) < 3 << 20
        assert (inside / "small").read_text() == "fine"  # the rest of the snapshot still reads
    assert mnt.returncode == 0
    assert bad.name in mnt.stderr and "SHA-256" in mnt.stderr and "Traceback" not in mnt.stderr


def test_a_directory_of_thousands_of_entries(setup, tmp_path):
    src = tmp_path / "src"
    (src / "many").mkdir(parents=True)
    for i in range(3000):
        (src / "many" / f"file-{i:05d}").write_text(str(i))
    cfg = setup.write([src])
    _backup(cfg)
    with Mount(cfg, tmp_path / "mnt") as mnt:
        many = mnt.path / "latest" / str(src).lstrip("/") / "many"
        names = os.listdir(many)
        assert sorted(names) == sorted(os.listdir(src / "many"))  # readdir across many buffers
        r = subprocess.run(["find", str(mnt.path) + "/", "-type", "f"], capture_output=True,
                           text=True)
        assert r.returncode == 0 and len(r.stdout.splitlines()) == 3000
        assert (many / "file-02999").read_text() == "2999"
    assert mnt.returncode == 0


def test_bad_mountpoints_are_one_line_errors(setup, tmp_path):
    src, cfg, _ = _one_file(setup, tmp_path)
    full = tmp_path / "full"
    full.mkdir()
    (full / "something").write_text("mine")
    cases = {full: "is not empty", tmp_path / "missing": "does not exist",
             src / "f": "is not a directory"}
    for where, says in cases.items():
        r = odctl("--config", str(cfg), "mount", "t", str(where))
        assert r.returncode == 2, (where, r.stderr)
        assert (says in r.stderr and str(where) in r.stderr
                and len(r.stderr.strip().splitlines()) == 1)
    assert (full / "something").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    r = odctl("--config", str(cfg), "mount", "nosuchjob", str(empty))
    assert r.returncode == 3 and "nosuchjob" in r.stderr


def test_untrusted_snapshots_are_left_out(setup, tmp_path):
    src, cfg, _ = _one_file(setup, tmp_path)
    other = tmp_path / "other.pub"
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from odbackupd.signing import public_line

    # not the host's
    other.write_text(public_line(Ed25519PrivateKey.generate().public_key()) + "\n")
    (tmp_path / "mnt").mkdir()
    r = odctl("--config", str(cfg), "mount", "t", str(tmp_path / "mnt"),
              "--trusted-key", str(other))
    assert r.returncode == 4, r.stderr
    assert "no snapshot to mount" in r.stderr and "left out" in r.stderr and "signed" in r.stderr
    assert not os.path.ismount(tmp_path / "mnt")


def test_a_snapshot_without_an_index_is_streamed_once(setup, tmp_path):
    """A snapshot made before indexes existed (manifest format 1) still mounts: its volumes
    are read once to list it, and odctl says so."""
    src = make_awkward_tree(tmp_path, big=1 << 20)
    cfg = setup.write([src], volume_size="1MiB")
    snap = _backup(cfg)
    folder = series_dir(setup.dest) / snap["snapshot"]
    d = json.loads((folder / "manifest.json").read_text())
    (folder / d["index"]["name"]).unlink()
    for k in ("kind", "base", "index", "changes"):
        d.pop(k)
    d["format_version"] = 1
    d.pop("signature", None)
    (folder / "manifest.json").write_text(json.dumps(d))
    with Mount(cfg, tmp_path / "mnt") as mnt:
        inside = mnt.path / "latest" / str(src).lstrip("/")
        tree = snapshot_tree(inside)
        assert tree == snapshot_tree(src)  # device numbers and xattrs from the tar headers
    assert mnt.returncode == 0
    assert f"snapshot {snap['snapshot']} has no index" in mnt.stderr and "once" in mnt.stderr


def test_without_pyfuse3_it_says_how_to_install_it(setup, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    cfg = setup.write([src])
    shadow = tmp_path / "no-pyfuse3"
    shadow.mkdir()
    (shadow / "pyfuse3.py").write_text("raise ImportError(\"No module named 'pyfuse3'\")\n")
    (tmp_path / "mnt").mkdir()
    r = odctl("--config", str(cfg), "mount", "t", str(tmp_path / "mnt"),
              env={**os.environ, "PYTHONPATH": f"{shadow}:{os.environ.get('PYTHONPATH', '')}"})
    assert r.returncode == 1, r.stderr
    assert ("apt install python3-pyfuse3 fuse3" in r.stderr
            and len(r.stderr.strip().splitlines()) == 1)
    r = odctl("--config", str(cfg), "mount", "--help",
              env={**os.environ, "PYTHONPATH": str(shadow)})
    assert r.returncode == 0 and "fusermount3 -u" in r.stdout  # the parser needs no pyfuse3


@pytest.mark.parametrize("device, says", [
    ("none", "/dev/fuse does not exist: load the module (modprobe fuse)"),
    ("a plain file", "/dev/fuse is not the FUSE device"),
    ("/dev/null", "/dev/fuse is not the FUSE device"),  # a character device, not FUSE's
])
def test_without_fuse_it_says_so(setup, tmp_path, device, says):
    """In a mount namespace of its own, /dev/fuse replaced: what a container without the
    device, or a kernel without the module, looks like to odctl."""
    src, cfg, _ = _one_file(setup, tmp_path)
    fake = tmp_path / "fake-dev-fuse"
    fake.write_bytes(b"")
    if device == "/dev/null":
        fake = Path("/dev/null")
    (tmp_path / "mnt").mkdir()
    import sys

    hide = ('mount -t tmpfs none /dev' if device == "none" else 'mount --bind "$1" /dev/fuse')
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        hide + ' && shift && exec "$@"', "sh", str(fake),
                        sys.executable, "-m", "odctl.cli", "--config", str(cfg), "mount", "t",
                        str(tmp_path / "mnt")], capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).resolve().parents[2])
    assert r.returncode == 1, r.stderr
    assert says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not os.path.ismount(tmp_path / "mnt")


def test_directories_above_a_source_carry_the_snapshot_time(setup, tmp_path):
    src, cfg, snap = _one_file(setup, tmp_path)
    with Mount(cfg, tmp_path / "mnt") as mnt:
        top = mnt.path / snap["snapshot"]
        first = top / str(src).lstrip("/").split("/")[0]  # "tmp": not archived itself
        started = os.stat(top).st_mtime
        assert abs(os.stat(first).st_mtime - started) < 1 and started > 1e9
        assert os.stat(first).st_mode & 0o777 == 0o755
    assert mnt.returncode == 0


def test_reads_at_any_offset_and_in_parallel(setup, tmp_path):
    """Backwards, forwards, two readers at once: what a pager, a diff or an rsync does."""
    src = tmp_path / "src"
    src.mkdir()
    blobs = {f"b{i}": os.urandom(5 << 20) for i in range(3)}  # each across volumes
    for name, data in blobs.items():
        (src / name).write_bytes(data)
    cfg = setup.write([src], volume_size="1MiB")
    _backup(cfg)
    with Mount(cfg, tmp_path / "mnt") as mnt:
        inside = mnt.path / "latest" / str(src).lstrip("/")
        fd = os.open(inside / "b0", os.O_RDONLY)
        try:
            want = blobs["b0"]
            for off in (3 << 20, 1000, 4 << 20, 17, 5 << 20, (5 << 20) - 10):
                assert os.pread(fd, 65536, off) == want[off:off + 65536], off
        finally:
            os.close(fd)
        readers = [subprocess.Popen(["sha256sum", str(inside / n)], stdout=subprocess.PIPE,
                                    text=True)
                   for n in ("b1", "b2")]
        sums = [p.communicate(timeout=120)[0].split()[0] for p in readers]
        assert sums == [hashlib.sha256(blobs[n]).hexdigest() for n in ("b1", "b2")]
    assert mnt.returncode == 0


def test_another_hosts_snapshots_with_host(setup, tmp_path):
    """A dead server's snapshots, mounted on its replacement (another [daemon] hostname)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("from the old server")
    cfg = setup.write([src])
    text = cfg.read_text()
    cfg.write_text(text.replace("[daemon]\n", '[daemon]\nhostname = "oldweb"\n', 1))
    _backup_host = odbackupd("--config", str(cfg), "--once", "t")
    assert _backup_host.returncode == 0, _backup_host.stderr
    cfg.write_text(text)  # the replacement: its own host name
    (tmp_path / "mnt").mkdir()
    r = odctl("--config", str(cfg), "mount", "t", str(tmp_path / "mnt"))
    assert r.returncode == 3 and "--host" in r.stderr
    with Mount(cfg, tmp_path / "mnt", "--host", "oldweb") as mnt:
        assert ((mnt.path / "latest" / str(src).lstrip("/") / "f").read_text()
                == "from the old server")
    assert mnt.returncode == 0


def test_a_prune_defers_a_mounted_snapshot(setup, tmp_path):
    """While a snapshot is open on the mount, retention on this host leaves it (leases)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("first")
    cfg = setup.write([src], extra="keep_last = 1\nfull_every = 1\n")
    first = _backup(cfg)
    with Mount(cfg, tmp_path / "mnt", "--json") as mnt:
        ready = json.loads(mnt.ready_line)
        assert ready["snapshots"] == [first["snapshot"]] and ready["latest"] == first["snapshot"]
        assert (mnt.path / first["snapshot"] / str(src).lstrip("/") / "a").read_text() == "first"
        (src / "b").write_text("new")
        r = odbackupd("--config", str(cfg), "--once", "t")
        assert r.returncode == 0, r.stderr
        assert "not pruned" in r.stdout and first["snapshot"] in r.stdout, r.stdout
        assert (mnt.path / first["snapshot"] / str(src).lstrip("/") / "a").read_text() == "first"
    assert mnt.returncode == 0
    r = odbackupd("--config", str(cfg), "--once", "t")  # unmounted: the next run prunes it
    names = [s["snapshot"] for s in json.loads(
        odctl("--config", str(cfg), "snapshots", "t", "--json").stdout
    )["destinations"]["usb"]["snapshots"]]
    assert first["snapshot"] not in names


@pytest.mark.skipif(not IS_ROOT,
                    reason="needs root to mount for other users and to switch to nobody")
@pytest.mark.parametrize("allow_other", [False, True])
def test_other_users_see_it_only_with_allow_other_and_then_by_the_snapshots_modes(
        setup, tmp_path, allow_other):
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="odctl-mount-test-", dir="/tmp"))  # reachable by others
    os.chmod(base, 0o755)
    try:
        _other_users(setup, base, allow_other)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _other_users(setup, base: Path, allow_other: bool) -> None:  # noqa: ANN001
    src = base / "src"
    src.mkdir()
    (src / "public").write_text("anyone")
    (src / "private").write_text("root only")
    os.chmod(src / "private", 0o600)
    cfg = setup.write([src])
    _backup(cfg)
    with Mount(cfg, base / "mnt", *(["--allow-other"] if allow_other else [])) as mnt:
        inside = mnt.path / "latest" / str(src).lstrip("/")

        def as_nobody(*cmd: str) -> subprocess.CompletedProcess:
            return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                   *cmd], capture_output=True, text=True)
        pub, priv = (as_nobody("cat", str(inside / "public")),
                     as_nobody("cat", str(inside / "private")))
        if allow_other:
            assert pub.returncode == 0 and pub.stdout == "anyone", pub.stderr
            assert priv.returncode != 0 and "Permission denied" in priv.stderr
        else:
            assert pub.returncode != 0 and "Permission denied" in pub.stderr
            assert priv.returncode != 0
        assert (inside / "private").read_text() == "root only"  # root, who mounted it
    assert mnt.returncode == 0


def test_snapshots_the_keys_do_not_open_are_left_out(setup, tmp_path, age_key):
    """The job's key was replaced: the older snapshots are encrypted to the old one. Mounted
    with the new key, they are left out (said), the newer ones shown; the wrong key alone is
    refused (exit 2) before anything is mounted."""
    old_key, old_recipient = age_key
    new_key = tmp_path / "new.txt"
    subprocess.run(["age-keygen", "-o", str(new_key)], check=True, capture_output=True)
    new_recipient = subprocess.run(["age-keygen", "-y", str(new_key)], check=True,
                                   capture_output=True, text=True).stdout.strip()
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("old")
    cfg = setup.write([src], recipients=[old_recipient], extra="full_every = 1\n")
    old = _backup(cfg)
    (src / "f").write_text("new")
    setup.write([src], recipients=[new_recipient], extra="full_every = 1\n")
    new = _backup(cfg)
    (tmp_path / "mnt").mkdir()
    with Mount(cfg, tmp_path / "mnt", "--identity", str(new_key), "--any-encryption") as mnt:
        assert sorted(os.listdir(mnt.path)) == sorted([new["snapshot"], "latest"])
        assert (mnt.path / "latest" / str(src).lstrip("/") / "f").read_text() == "new"
    assert mnt.returncode == 0
    assert f"left out: none of the --identity keys opens snapshot {old['snapshot']}" in mnt.stderr
    stray = tmp_path / "stray.txt"
    subprocess.run(["age-keygen", "-o", str(stray)], check=True, capture_output=True)
    r = odctl("--config", str(cfg), "mount", "t", str(tmp_path / "mnt"), "-i", str(stray),
              "--any-encryption")
    assert r.returncode == 2 and "no snapshot to mount" in r.stderr, r.stderr
    assert not os.path.ismount(tmp_path / "mnt")
