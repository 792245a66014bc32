"""Hand-made snapshots for restore tests: a tar stream (from tarfile, or raw bytes for
headers tarfile would never write) as one zstd volume with a manifest that matches it."""
from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import zstandard

from odbackupd.snapshot.manifest import Manifest
from tests.layout import HOST, series_dir


def tar_bytes(members) -> bytes:  # noqa: ANN001 - [(TarInfo, bytes | None)]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def snapshot_of(dest_root: Path, raw: bytes | list, *, snap: str = "20260101T000000Z-e71100",
                files: int | None = None, data_bytes: int | None = None, job: str = "t",
                volumes: list[bytes] | None = None) -> Manifest:
    """A stored snapshot whose volumes are ``raw`` (a tar stream, or the members to make one),
    split into ``volumes`` when given. The manifest's counts are what the members add up to
    unless ``files``/``data_bytes`` say otherwise."""
    members = raw if isinstance(raw, list) else None
    if members is not None:
        raw = tar_bytes(members)
        if files is None:
            files = sum(1 for ti, _ in members if ti.isreg() or ti.islnk())
        if data_bytes is None:
            data_bytes = sum(ti.size for ti, _ in members if ti.isreg())
    parts = volumes if volumes is not None else [raw]
    d = series_dir(dest_root, job) / snap
    d.mkdir(parents=True)
    vols = []
    for i, part in enumerate(parts, 1):
        vol = zstandard.ZstdCompressor().compress(part)
        name = f"vol.{i:06d}.zst"
        (d / name).write_bytes(vol)
        vols.append({"name": name, "size": len(vol), "sha256": hashlib.sha256(vol).hexdigest(),
                     "quickxor": ""})
    m = Manifest(job=job, snapshot=snap, host=HOST, started=0, finished=1, tool_version="x",
                 compression={"algorithm": "zstd"}, encryption=None, sources=["/"],
                 files=files or 0, dirs=0, others=0, data_bytes=data_bytes or 0,
                 tar_bytes=sum(len(p) for p in parts), volumes=vols)
    (d / "manifest.json").write_bytes(m.dumps())
    out = Manifest.loads((d / "manifest.json").read_bytes())
    out.folder = f"{HOST}/{job}"
    return out


def ti(name: str, type_: bytes = tarfile.REGTYPE, linkname: str = "", size: int = 0,
       mode: int = 0o644, **attrs) -> tarfile.TarInfo:  # noqa: ANN003
    t = tarfile.TarInfo(name)
    t.type, t.linkname, t.size, t.mode = type_, linkname, size, mode
    for k, v in attrs.items():
        setattr(t, k, v)
    return t
