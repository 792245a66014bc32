"""A real backup and restore of a tree with every awkward case, checked with our restore
and with the standard tools (GNU tar, zstd, age) that a sysadmin would use without us."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading

import pytest

from odbackupd.crypto.age import load_identities
from odbackupd.destinations.local import LocalDestination
from odbackupd.hashes import quickxor_file
from odbackupd.runner import run_job
from odbackupd.snapshot.catalog import find_snapshot, list_snapshots
from odbackupd.snapshot.restore import IntegrityError, restore_snapshot, verify_snapshot
from odbackupd.state import StateStore
from tests.layout import series_dir

from .treegen import IS_ROOT, assert_same_tree, make_awkward_tree


def _backup(setup, sources, **kw):
    setup.write(sources, **kw)
    cfg = setup.config()
    state = StateStore(cfg.daemon.state_dir / "state.db")
    try:
        run = run_job(cfg, "t", state)
    finally:
        state.close()
    assert run.result.ok, run.result.message
    return cfg, run


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "age"])
def test_backup_restore_roundtrip(setup, tmp_path, age_key, encrypted):
    src = make_awkward_tree(tmp_path)
    key, recipient = age_key
    cfg, run = _backup(setup, [src], recipients=[recipient] if encrypted else [])
    m = run.result.manifest
    assert m.files >= 12 and len(m.volumes) >= 3  # 1 MiB volumes over ~4 MiB of data
    assert run.result.status == "completed"

    dest = LocalDestination("usb", setup.dest)
    snapdir = series_dir(setup.dest) / m.snapshot
    names = sorted(os.listdir(snapdir))
    suffix = ".age" if encrypted else ""
    assert names[:3] == ["RESTORE.txt", "index.zst" + suffix, "manifest.json"]
    vols = names[3:]
    assert vols == [f"vol.{i:06d}.zst" + (".age" if encrypted else "")
                    for i in range(1, len(vols) + 1)]
    manifest = json.loads((snapdir / "manifest.json").read_text())
    assert manifest["counts"]["files"] == m.files
    # the volumes carry the chain's skippable frames, which the stock tools below must skip
    assert manifest["chain"] == {"format": "odbackupd-chain-v1"}
    if not encrypted:
        assert all((snapdir / v).read_bytes()[:4] == b"\x5b\x2a\x4d\x18" for v in vols)
    # every volume's SHA-256 and OneDrive quickXorHash, even on a local destination
    for v in m.volumes:
        assert v["sha256"] == hashlib.sha256((snapdir / v["name"]).read_bytes()).hexdigest()
        assert v["quickxor"] == quickxor_file(snapdir / v["name"])
    if encrypted:
        # the file list must not be readable from anything stored in plain text
        raw = b"".join((snapdir / v).read_bytes() for v in names)
        assert b"random.bin" not in raw and b"hosts-link" not in raw
        assert manifest["encryption"]["format"] == "age-v1"

    ids = load_identities(key) if encrypted else None
    out = tmp_path / "restored"
    # special_files: the device node in the tree; a snapshot this test just made is trusted
    stats = restore_snapshot(dest, find_snapshot(dest, "t", "latest"), out, identities=ids,
                             special_files=True)
    assert not stats.refused and not stats.warnings, stats.warnings
    assert stats.complete, stats
    assert_same_tree(src, out / str(src).lstrip("/"))

    # the standard tools, without odbackupd
    out2 = tmp_path / "with-tar"
    out2.mkdir()
    if encrypted:
        cmd = (f'for v in vol.*; do age -d -i {key} "$v"; done '
               f'| zstd -d | tar --xattrs --xattrs-include="*" -xpf - -C {out2}')
    else:
        cmd = f'cat vol.* | zstd -d | tar --xattrs --xattrs-include="*" -xpf - -C {out2}'
    r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=snapdir,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # no "unknown keyword" or other complaints from GNU tar; it does remark on the pre-1970 mtime
    complaints = [ln for ln in r.stderr.splitlines() if "implausibly old time stamp" not in ln]
    assert complaints == [], r.stderr
    # GNU tar does not restore directory mtimes of the restore root's parents we compare
    assert_same_tree(src, out2 / str(src).lstrip("/"), owners=IS_ROOT)

    assert verify_snapshot(dest, m).ok
    assert verify_snapshot(dest, m, download=True, identities=ids).ok


def test_every_volume_is_a_standalone_zstd_file(setup, tmp_path):
    src = make_awkward_tree(tmp_path)
    _, run = _backup(setup, [src])
    snapdir = series_dir(setup.dest) / run.result.manifest.snapshot
    for v in sorted(snapdir.glob("vol.*")):
        r = subprocess.run(["zstd", "-t", "-q", str(v)], capture_output=True, text=True)
        assert r.returncode == 0, f"{v.name}: {r.stderr}"


def test_damaged_volume_is_detected_by_verify_and_restore(setup, tmp_path):
    src = make_awkward_tree(tmp_path)
    _, run = _backup(setup, [src])
    m = run.result.manifest
    dest = LocalDestination("usb", setup.dest)
    vol = series_dir(setup.dest) / m.snapshot / m.volumes[1]["name"]
    data = bytearray(vol.read_bytes())
    data[len(data) // 2] ^= 0x40
    vol.write_bytes(bytes(data))
    rep = verify_snapshot(dest, m)
    assert not rep.ok and "SHA-256" in rep.problems[0] and m.volumes[1]["name"] in rep.problems[0]
    with pytest.raises(IntegrityError, match="SHA-256"):
        restore_snapshot(dest, m, tmp_path / "out")


def test_excludes_and_multiple_sources(setup, tmp_path):
    a = tmp_path / "a"
    b = tmp_path / "b"
    (a / "keep").mkdir(parents=True)
    (a / "keep" / "x.tmp").write_text("tmp")
    (a / "keep" / "x.txt").write_text("txt")
    (b / "repo" / "objects" / "cache").mkdir(parents=True)
    (b / "repo" / "objects" / "cache" / "c").write_text("cache")
    (b / "repo" / "objects" / "o").write_text("object")
    (b / "cache").mkdir()
    (b / "cache" / "top").write_text("top-level cache dir: only /**/cache below repo is excluded")
    extra = f'exclude = ["*.tmp", "{b}/repo/**/cache"]\n'
    _, run = _backup(setup, [a, b], extra=extra)
    dest = LocalDestination("usb", setup.dest)
    out = tmp_path / "out"
    restore_snapshot(dest, run.result.manifest, out)
    got = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    rel = lambda p: str(p).lstrip("/")  # noqa: E731
    assert got == sorted([rel(a / "keep" / "x.txt"), rel(b / "repo" / "objects" / "o"),
                          rel(b / "cache" / "top")])


def test_restore_only_some_paths(setup, tmp_path):
    src = make_awkward_tree(tmp_path)
    _, run = _backup(setup, [src])
    dest = LocalDestination("usb", setup.dest)
    out = tmp_path / "out"
    want = str(src / "etc").lstrip("/")
    restore_snapshot(dest, run.result.manifest, out, paths=[want])
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if not p.is_dir())
    assert files == [want + "/hosts", want + "/ssh/key"]


def test_incomplete_snapshot_is_never_listed(setup, tmp_path):
    src = make_awkward_tree(tmp_path)
    _, run = _backup(setup, [src])
    dest = LocalDestination("usb", setup.dest)
    # a folder with volumes but no manifest that this host's state does not know: another
    # server of the same name (a misconfiguration) or a copy; it is listed as incomplete and
    # never removed, since nothing shows this host made it
    half = series_dir(setup.dest) / "20990101T000000Z-abcdef"
    half.mkdir()
    (half / "vol.000001.zst").write_bytes(b"partial")
    listing = list_snapshots(dest, "t")
    assert [m.snapshot for m in listing.complete] == [run.result.manifest.snapshot]
    assert listing.incomplete == [half.name]
    assert find_snapshot(dest, "t", "latest").snapshot == run.result.manifest.snapshot
    _, run2 = _backup(setup, [src])
    assert run2.result.removed_leftovers == [] and half.is_dir()
    assert len(list_snapshots(dest, "t").complete) == 2


def test_an_interrupted_snapshot_that_cannot_be_resumed_is_removed(setup, tmp_path):
    """This host's own leftover (a run cancelled after a volume was stored, whose settings
    then changed so it cannot be resumed) is removed by the next run."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(3 << 20))
    setup.write([src])
    cfg = setup.config()
    state = StateStore(cfg.daemon.state_dir / "state.db")
    cancel = threading.Event()

    def stop_after_a_volume(p):  # noqa: ANN001
        if p.volumes_stored >= 1:
            cancel.set()

    try:
        run = run_job(cfg, "t", state, progress=stop_after_a_volume, cancel=cancel)
    finally:
        state.close()
    assert run.result.status == "cancelled", run.result.message
    left = series_dir(setup.dest) / run.result.snapshot
    assert any(left.glob("vol.*")) and not (left / "manifest.json").exists()
    _, run2 = _backup(setup, [src], volume_size="2MiB")  # other settings: a new snapshot
    assert run2.result.removed_leftovers == [f"usb:{left.name}"]
    assert not left.exists()


def test_stored_files_are_private(setup, tmp_path):
    """Volumes of an unencrypted job hold whatever the sources hold: never world-readable."""
    src = make_awkward_tree(tmp_path)
    _, run = _backup(setup, [src])
    snapdir = series_dir(setup.dest) / run.result.manifest.snapshot
    for p in [snapdir, *snapdir.iterdir()]:
        assert p.stat().st_mode & 0o077 == 0, f"{p} is mode {oct(p.stat().st_mode)}"
