"""A one-file restore reads only the zstd frames that hold the file — a few MiB by ranged
reads, not its volume — and every byte it uses is pinned by the index: a frame's SHA-256
(unencrypted), the volume's age header (encrypted)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from odbackupd.snapshot.frames import FRAME_SIZE
from tests.snapshot.incgen import Runs

from .helpers import odctl, set_volumes, snapshot_dir
from .test_onedrive import Downloads


def _tree(root):  # noqa: ANN001, ANN201
    """Three volumes of 16 MiB, four frames each: the small file sits among the big ones."""
    src = root / "src"
    (src / "a").mkdir(parents=True)
    (src / "m").mkdir()
    (src / "z").mkdir()
    for i in range(6):
        (src / "a" / f"big-{i}").write_bytes(os.urandom(4 << 20))
    (src / "m" / "invoice-2026-11.pdf").write_bytes(b"%PDF-1.7 invoice\n" * 500)
    for i in range(6):
        (src / "z" / f"big-{i}").write_bytes(os.urandom(4 << 20))
    return src


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "age"])
def test_one_small_file_costs_a_frame_not_a_volume(od, tmp_path, age_key, encrypted):
    key, recipient = age_key
    src = _tree(tmp_path)
    a = str(src).lstrip("/")
    cfg = str(od.write([src], volume_size="16MiB", recipients=[recipient] if encrypted else []))
    od.login()
    m = Runs(od).run().result.manifest
    assert len(m.volumes) >= 3
    ident = ["--identity", str(key)] if encrypted else []
    r, names, nbytes = Downloads(od.emu)(
        "--config", cfg, "restore", "t", "latest", "--to", str(tmp_path / "out"),
        "--path", f"{a}/m/invoice-2026-11.pdf", "--json", *ident)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / a / "m/invoice-2026-11.pdf").read_bytes() == (
        b"%PDF-1.7 invoice\n" * 500)
    fetched = json.loads(r.stdout)["fetched"]
    index = int(m.index["size"])
    vols = [n for n in names if n.startswith("vol.")]
    assert fetched["indexes"] == 1 and 1 <= fetched["volumes"] <= 2 and vols
    biggest = max(int(v["size"]) for v in m.volumes)
    # the file's frame (at most two: it may straddle one end), not the 16 MiB volume
    assert fetched["volume_bytes"] <= 2 * FRAME_SIZE + 128 * 1024 < biggest
    manifests = 64 * 1024 * names.count("manifest.json")
    assert nbytes <= index + fetched["volume_bytes"] + manifests
    od.emu.assert_no_violations()


def _one_encrypted(setup, tmp_path, age_key):  # noqa: ANN001, ANN201
    key, recipient = age_key
    src = _tree(tmp_path)
    cfg = str(setup.write([src], volume_size="16MiB", recipients=[recipient],
                          extra="full_every = 1\n"))
    m = Runs(setup).run().result.manifest
    return src, str(src).lstrip("/"), cfg, m


def test_an_encrypted_volume_replaced_by_a_fresh_encryption_is_refused(setup, tmp_path, age_key):
    """Anyone holding the public key can encrypt the same plaintext again: the chunks then
    authenticate under the new file key, and the manifest can be fixed up to match; the
    index's pin of the age header catches it before a byte is used."""
    key, recipient = age_key
    src, a, cfg, m = _one_encrypted(setup, tmp_path, age_key)
    restore = ["--config", cfg, "restore", "t", "latest", "--to", str(tmp_path / "out"),
               "--path", f"{a}/m/invoice-2026-11.pdf", "--identity", str(key)]

    def again(folder, vols):  # noqa: ANN001
        for v in vols:
            p = folder / v["name"]
            plain = subprocess.run(["age", "-d", "-i", str(key), str(p)], check=True,
                                   capture_output=True).stdout
            p.write_bytes(subprocess.run(["age", "-r", recipient], input=plain, check=True,
                                         capture_output=True).stdout)

    set_volumes(setup.dest, m.snapshot, again)
    r = odctl(*restore)
    assert r.returncode == 4, r.stderr
    assert "age header is not the one the index names" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out" / a / "m/invoice-2026-11.pdf").exists()


def test_a_changed_chunk_of_an_encrypted_volume_is_refused(setup, tmp_path, age_key):
    key, _ = age_key
    src, a, cfg, m = _one_encrypted(setup, tmp_path, age_key)
    folder = snapshot_dir(setup.dest, m.snapshot)
    for v in m.volumes:  # one byte in the middle of every volume: the file's frame is hit
        p = folder / v["name"]
        data = bytearray(p.read_bytes())
        for at in range(4096, len(data) - 64, 32 * 1024):
            data[at] ^= 1
        p.write_bytes(bytes(data))
    r = odctl("--config", cfg, "restore", "t", "latest", "--to", str(tmp_path / "out"),
              "--path", f"{a}/m/invoice-2026-11.pdf", "--identity", str(key))
    assert r.returncode == 4, r.stderr
    assert "failed authentication" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out" / a / "m/invoice-2026-11.pdf").exists()
