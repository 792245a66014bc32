"""odctl mount on OneDrive (the Graph emulator): listing reads only the index; reading one
file of a 40-volume snapshot downloads only the volumes that hold it, counted by the
emulator."""
from __future__ import annotations

import os
import re
import subprocess

import pytest

from odbackupd.snapshot.catalog import list_snapshots
from odbackupd.snapshot.view import open_view

from .conftest import Mount

pytestmark = pytest.mark.usefixtures("fuse")

VOL = re.compile(r"(vol\.\d{6}\.zst(?:\.age)?)")


def _downloads(emu, since: int) -> list[str]:  # noqa: ANN001
    """The objects downloaded since request number ``since`` (each download URL once:
    personal OneDrive's name the item last)."""
    out = []
    seen = set()
    for q in emu.requests[since:]:
        if q["label"] == "download.get" and q["path"] not in seen:
            seen.add(q["path"])
            m = VOL.search(q["path"]) or re.search(r"(index\.zst(?:\.age)?)", q["path"])
            out.append(m.group(1) if m else q["path"])
    return out


def test_reading_one_file_of_40_volumes_fetches_only_its_volumes(od, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):  # incompressible: each file is about one 1 MiB volume
        (src / f"f{i:02d}").write_bytes(os.urandom(1 << 20))
    od.write([src], volume_size="1MiB")
    od.login()
    p = od.once()
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    d = od.destination()
    m = list_snapshots(d, "t").complete[-1]
    assert len(m.volumes) >= 40
    # where f20's data is, from its index (as the mount will find it)
    with open_view(d, m) as view:
        node = view.lookup(f"{str(src).lstrip('/')}/f20")
        loc = view.location(node)
        end = view.entry_end(loc) or m.tar_bytes
    holding = {v["name"] for v in m.volumes
               if int(v["tar_start"]) < end and int(v.get("tar_end", m.tar_bytes)) > loc.offset}
    # read-ahead may touch it
    after = [v["name"] for v in m.volumes if int(v["tar_start"]) >= end][:1]
    d.close()
    assert 1 <= len(holding) <= 2

    emu = od.emu
    with Mount(od.config_path, tmp_path / "mnt") as mnt:
        inside = mnt.path / "latest" / str(src).lstrip("/")
        mark = len(emu.requests)
        r = subprocess.run(["ls", "-lR", str(mnt.path) + "/"], capture_output=True, text=True)
        assert r.returncode == 0 and "f39" in r.stdout
        assert _downloads(emu, mark) == ["index.zst"]  # metadata: the index alone, no volume
        mark = len(emu.requests)
        r = subprocess.run(["sha256sum", str(inside / "f20")], capture_output=True, text=True,
                           check=True)
        got = set(_downloads(emu, mark))
        assert holding <= got <= holding | set(after), (sorted(got), sorted(holding))
        assert subprocess.run(["cmp", str(src / "f20"), str(inside / "f20")]).returncode == 0
        mark = len(emu.requests)
        assert (inside / "f20").read_bytes() == (src / "f20").read_bytes()  # again: from the cache
        assert _downloads(emu, mark) == []
    assert mnt.returncode == 0, mnt.stderr
    assert "fetched" in mnt.stderr


def test_ctrl_c_unmounts_while_a_download_hangs(od, tmp_path):
    """The network stalls in the middle of a read: Ctrl-C still unmounts at once (the read
    gets an error), it does not wait for the download."""
    import signal
    import sys
    import time

    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(os.urandom(1 << 20))
    od.write([src], volume_size="1MiB")
    od.login()
    p = od.once()
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    emu = od.emu
    with Mount(od.config_path, tmp_path / "mnt") as mnt:
        inside = mnt.path / "latest" / str(src).lstrip("/")
        assert os.listdir(inside) == ["f"]
        emu.faults.add("delay", "download.get", nth=1, seconds=40)
        mark = len(emu.requests)
        reader = subprocess.Popen(
            [sys.executable, "-c", f"open({str(inside / 'f')!r}, 'rb').read()"],
            stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        # the download hangs now
        while not any(q["label"] == "download.get" for q in emu.requests[mark:]):
            assert time.monotonic() < deadline and reader.poll() is None, (
                "the read did not reach the download")
            time.sleep(0.01)
        mnt.proc.send_signal(signal.SIGINT)
        assert mnt.finish(timeout=20) == 0, mnt.stderr  # well before the 40 s the download takes
        reader.wait(timeout=20)
        assert reader.returncode != 0  # the read failed; it never got wrong data
    assert not os.path.ismount(mnt.path)
