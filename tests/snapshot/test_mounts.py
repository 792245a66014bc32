"""A source on a disk that /etc/fstab lists but that is not mounted: the run fails instead
of storing an empty snapshot that retention would count."""
from __future__ import annotations

import shutil
from dataclasses import replace

from odbackupd.destinations.local import LocalDestination
from odbackupd.snapshot.builder import FAILED, JobSpec, SnapshotBuilder
from odbackupd.snapshot.catalog import list_snapshots
from odbackupd.snapshot.mounts import unmounted_sources
from odbackupd.state import StateStore


def _fstab(tmp_path, *lines: str):
    f = tmp_path / "fstab"
    f.write_text("# a comment\n" + "\n".join(lines) + "\n")
    return f


def test_empty_mount_point_of_an_unmounted_disk_fails_the_run(tmp_path):
    disk = tmp_path / "mnt" / "backup disk"  # a space: written \040 in fstab
    (disk / "data").mkdir(parents=True)  # the directory left behind, empty
    fstab = _fstab(tmp_path,
                   f"UUID=1234 {str(disk).replace(' ', chr(92) + '040')} ext4 defaults,noauto 0 2",
                   "/swapfile none swap sw 0 0")
    dest_dir = tmp_path / "dest"
    dest_dir.mkdir()
    dest = LocalDestination("usb", dest_dir)
    state = StateStore(tmp_path / "state.db")
    spec = JobSpec("t", [disk / "data"])
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("22 27 0:21 / /proc rw - proc proc rw\n")  # the disk is not in it
    r = SnapshotBuilder(spec, [dest], state, tmp_path / "spool", "h",
                        fstab=fstab, mountinfo=mountinfo).run()
    assert r.status == FAILED
    assert (f"source {disk / 'data'} is on {disk}, "
            "which /etc/fstab lists but is not mounted") in r.message
    assert (list_snapshots(dest, "t", "h").complete == []
            and list_snapshots(dest, "t", "h").incomplete == [])

    # mounted: the same run goes ahead
    mountinfo.write_text(
        f"40 27 8:17 / {str(disk).replace(' ', chr(92) + '040')} rw - ext4 /dev/sdb1 rw\n"
    )
    (disk / "data" / "f.txt").write_text("x\n")
    r = SnapshotBuilder(spec, [dest], state, tmp_path / "spool", "h",
                        fstab=fstab, mountinfo=mountinfo).run()
    assert r.ok, r.message
    state.close()


def test_sources_outside_fstab_mount_points_are_not_affected(tmp_path):
    fstab = _fstab(tmp_path, "UUID=1 / ext4 defaults 0 1", "tmpfs /tmp tmpfs defaults 0 0",
                   f"UUID=2 {tmp_path}/srv ext4 defaults 0 2")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n")
    assert unmounted_sources([tmp_path / "srvx", tmp_path / "other"], fstab, mountinfo) == []
    assert unmounted_sources([tmp_path / "srv" / "git"], fstab, mountinfo) == [
        (str(tmp_path / "srv" / "git"), str(tmp_path / "srv"))]
    # no fstab at all (containers): nothing to say
    assert unmounted_sources([tmp_path], tmp_path / "absent", mountinfo) == []


def _run(tmp_path, spec, dest, state):
    none = tmp_path / "no-fstab"  # outside fstab: only the emptiness guard can catch it
    return SnapshotBuilder(spec, [dest], state, tmp_path / "spool", "h", fstab=none,
                           mountinfo=tmp_path / "no-mountinfo").run()


def test_a_source_that_became_empty_fails_the_run(tmp_path):
    """A disk mounted by hand (not in fstab) that is not mounted leaves an empty directory:
    the run fails instead of storing an empty snapshot that retention would count."""
    disk, other = tmp_path / "mnt" / "data", tmp_path / "srv"
    (disk / "sub").mkdir(parents=True)
    (disk / "sub" / "a.txt").write_text("precious\n")
    other.mkdir()  # empty from the start: that is never an error
    dest_dir = tmp_path / "dest"
    dest_dir.mkdir()
    dest = LocalDestination("usb", dest_dir)
    state = StateStore(tmp_path / "state.db")
    spec = JobSpec("t", [disk, other])
    assert _run(tmp_path, spec, dest, state).ok
    good = [m.snapshot for m in list_snapshots(dest, "t", "h").complete]

    shutil.rmtree(disk / "sub")  # the disk is gone: its mount point is an empty directory
    r = _run(tmp_path, spec, dest, state)
    assert r.status == FAILED
    assert r.message.startswith(f"source {disk} is empty but had files at the last snapshot "
                                "(is its disk mounted?)")
    assert str(other) not in r.message
    assert "set allow_empty_sources = true in [job.t]" in r.message
    assert [m.snapshot for m in list_snapshots(dest, "t", "h").complete] == good
    assert list_snapshots(dest, "t", "h").incomplete == []

    # emptied on purpose: the job allows it once, and from then on empty is what was last seen
    assert _run(tmp_path, replace(spec, allow_empty_sources=True), dest, state).ok
    assert _run(tmp_path, spec, dest, state).ok
    assert len(list_snapshots(dest, "t", "h").complete) == 3
    state.close()


def test_the_empty_source_guard_through_the_config(tmp_path):
    from odbackupd.config import load_config

    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[daemon]\nstate_dir = "{tmp_path}/s"\n[job.t]\nsources = ["{tmp_path}"]\n'
                   "allow_empty_sources = true\n")
    job = load_config(cfg).jobs["t"]
    assert JobSpec.from_config(job).allow_empty_sources is True
