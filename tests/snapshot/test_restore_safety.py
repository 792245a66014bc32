"""A hostile or damaged archive cannot write outside the restore directory."""
from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

from odbackupd.destinations.local import LocalDestination
from odbackupd.snapshot.manifest import Manifest
from odbackupd.snapshot.restore import restore_snapshot
from tests.layout import series_dir

from .archives import snapshot_of, ti


def _evil_snapshot(dest_root: Path, members) -> Manifest:  # noqa: ANN001
    return snapshot_of(dest_root, members)


_ti = ti


def test_traversal_attempts_are_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "restore"
    members = [
        (_ti("../outside/dotdot", size=3), b"bad"),
        (_ti(str(outside / "absolute"), size=3), b"bad"),  # leading "/" is stripped, stays inside
        (_ti("link", tarfile.SYMTYPE, str(outside)), None),
        (_ti("link/through-symlink", size=3), b"bad"),
        (_ti("hard", tarfile.LNKTYPE, "../outside/victim"), None),
        (_ti("ok/file", size=2), b"ok"),
    ]
    (outside / "victim").write_text("victim")
    dest = LocalDestination("usb", tmp_path / "dest")
    m = _evil_snapshot(tmp_path / "dest", members)
    stats = restore_snapshot(dest, m, target)
    assert sorted(os.listdir(outside)) == ["victim"], "something was written outside the target"
    assert (outside / "victim").read_text() == "victim"
    assert sorted(stats.refused) == ["../outside/dotdot", "hard", "link/through-symlink"]
    assert (target / "ok" / "file").read_bytes() == b"ok"
    assert (target / str(outside).lstrip("/") / "absolute").read_bytes() == b"bad"
    # the symlink itself is restored, never followed
    assert os.readlink(target / "link") == str(outside)


def test_existing_symlink_in_target_is_replaced_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("original")
    target = tmp_path / "restore"
    target.mkdir()
    os.symlink(outside / "passwd", target / "passwd")
    dest = LocalDestination("usb", tmp_path / "dest")
    m = _evil_snapshot(tmp_path / "dest", [(_ti("passwd", size=3), b"new")])
    restore_snapshot(dest, m, target)
    assert (outside / "passwd").read_text() == "original"
    assert not (target / "passwd").is_symlink() and (target / "passwd").read_bytes() == b"new"


def test_manifest_json_is_plain_and_complete(tmp_path):
    dest = tmp_path / "dest"
    m = _evil_snapshot(dest, [(_ti("a", size=1), b"a")])
    d = json.loads((series_dir(dest) / m.snapshot / "manifest.json").read_text())
    assert d["format"] == "odbackupd-snapshot" and d["volumes"][0]["name"] == "vol.000001.zst"
