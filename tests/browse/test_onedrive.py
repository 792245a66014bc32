"""On OneDrive (the Graph emulator's request counters): one small file out of a snapshot of
more than 40 volumes costs its index and the one volume holding it; ls, find and diff
download only indexes."""

from __future__ import annotations

import json
import os
from urllib.parse import unquote

from tests.snapshot.incgen import Runs

from .helpers import odctl


def _tree(root):  # noqa: ANN001, ANN201
    src = root / "src"
    (src / "data").mkdir(parents=True)
    (src / "etc/nginx/sites-available").mkdir(parents=True)
    for i in range(44):  # incompressible: one 1 MiB volume each, about
        (src / "data" / f"part-{i:02d}").write_bytes(os.urandom(1 << 20))
    (src / "etc/nginx/sites-available/shop").write_text("server shop v1\n")
    (src / "invoice-2026-11.pdf").write_bytes(b"%PDF" * 300)
    return src


class Downloads:
    """The objects a command downloaded, by name (each GET of a download URL: personal
    OneDrive's name its item last; a ranged read of one volume counts once per range),
    and the bytes."""

    def __init__(self, emu) -> None:  # noqa: ANN001
        self.emu = emu

    def __call__(self, *args: str) -> tuple:
        mark, before = len(self.emu.requests), self.emu.counters["bytes_downloaded"]
        r = odctl(*args)
        names = sorted({
            (q["path"], unquote(q["path"].split("?")[0].rsplit("/", 1)[-1]))
            for q in self.emu.requests[mark:]
            if q.get("label") == "download.get"
        })
        return r, sorted(n for _, n in names), self.emu.counters["bytes_downloaded"] - before


def _sizes(m) -> dict:  # noqa: ANN001
    return {v["name"]: v["size"] for v in m.volumes} | {m.index["name"]: m.index["size"]}


def test_partial_restore_and_listing_download_only_what_they_need(od, tmp_path):
    emu = od.emu
    src = _tree(tmp_path)
    a = str(src).lstrip("/")
    cfg = str(od.write([src], volume_size="1MiB", job_extra="full_every = 5\n"))
    od.login()
    runs = Runs(od)
    full = runs.run().result.manifest
    (src / "etc/nginx/sites-available/shop").write_text("server shop v2\n")
    inc = runs.run().result.manifest
    assert len(full.volumes) >= 40 and inc.kind == "incremental"
    manifests = ["manifest.json"]  # listing reads the manifests; they hold no file names
    got = Downloads(emu)

    # one small file of the full: its index, the volume holding it, nothing else
    r, names, nbytes = got(
        "--config",
        cfg,
        "restore",
        "t",
        full.snapshot,
        "--to",
        str(tmp_path / "o1"),
        "--path",
        f"{a}/invoice-2026-11.pdf",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    data = [n for n in names if n not in manifests]
    assert (
        len(data) in (2, 3)
        and "index.zst" in data
        and all(n.startswith("vol.") for n in data if n != "index.zst")
    )
    res = json.loads(r.stdout)["fetched"]
    assert res["volumes"] == len(data) - 1 and res["indexes"] == 1
    vols = [n for n in data if n != "index.zst"]
    assert (
        len(vols) == 1 or int(vols[1][4:10]) == int(vols[0][4:10]) + 1
    )  # or the two a member spans
    sizes = _sizes(full)
    volume_and_index = sum(sizes[n] for n in data)
    assert volume_and_index <= nbytes <= volume_and_index + 64 * 1024 * names.count("manifest.json")
    assert (tmp_path / "o1" / a / "invoice-2026-11.pdf").read_bytes() == b"%PDF" * 300

    # an unchanged file from the incremental: both indexes of the chain, one volume of the full
    r, names, _ = got(
        "--config",
        cfg,
        "restore",
        "t",
        "latest",
        "--to",
        str(tmp_path / "o2"),
        "--path",
        f"{a}/data/part-20",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    data = [n for n in names if n not in manifests]
    assert data.count("index.zst") == 2 and 1 <= len(data) - 2 <= 2, data
    assert (tmp_path / "o2" / a / "data/part-20").read_bytes() == (
        src / "data/part-20"
    ).read_bytes()

    # ls, find, diff: indexes only
    for cmd, want in (
        (["ls", "t", f"{a}/data", "-l"], ["index.zst"]),
        (["find", "t", "shop", "--all"], ["index.zst", "index.zst"]),
        (["diff", "t", full.snapshot, inc.snapshot], ["index.zst", "index.zst"]),
    ):
        r, names, nbytes = got("--config", cfg, *cmd)
        assert r.returncode == 0, (cmd, r.stderr)
        assert [n for n in names if n not in manifests] == want, (cmd, names)
        assert nbytes < (len(names) * 64 * 1024), (cmd, nbytes)  # indexes and manifests: small
    assert r.stdout.strip() == f"M    {a}/etc/nginx/sites-available/shop"
    emu.assert_no_violations()
