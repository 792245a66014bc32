"""odctl as a sysadmin runs it, and what someone who can write to the destination can do to an
index (rewrite it and fix up the unsigned-checked manifest: only --trusted-key stops that)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import zstandard

from tests.layout import series_dir


def odctl(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "odctl.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def odjson(*args: str) -> dict:
    r = odctl(*args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def snapshot_dir(dest: Path, snapshot: str) -> Path:
    return series_dir(dest) / snapshot


def _fix_manifest(folder: Path, **index_fields) -> None:  # noqa: ANN003
    mpath = folder / "manifest.json"
    doc = json.loads(mpath.read_text())
    if index_fields.get("drop"):
        doc["index"] = None
    else:
        doc["index"].update(index_fields)
    mpath.write_text(json.dumps(doc, indent=2))


def rewrite_index(dest: Path, snapshot: str, edit: Callable[[list[dict]], None]) -> None:
    """Decompress an unencrypted index, let ``edit`` change its records, store it back with
    the manifest's size and SHA-256 matching."""
    folder = snapshot_dir(dest, snapshot)
    path = folder / "index.zst"
    lines = (
        zstandard.ZstdDecompressor()
        .stream_reader(path.read_bytes(), read_across_frames=True)
        .read()
    )
    recs = [json.loads(ln) for ln in lines.splitlines()]
    edit(recs)
    data = zstandard.ZstdCompressor().compress(
        b"".join(json.dumps(r).encode() + b"\n" for r in recs)
    )
    path.write_bytes(data)
    _fix_manifest(folder, size=len(data), sha256=hashlib.sha256(data).hexdigest())


def drop_index(dest: Path, snapshot: str) -> None:
    """What a snapshot made before indexes existed looks like: format 1, no index object."""
    folder = snapshot_dir(dest, snapshot)
    (folder / "index.zst").unlink()
    mpath = folder / "manifest.json"
    doc = json.loads(mpath.read_text())
    doc["index"] = None
    doc["format_version"] = 1
    for k in ("kind", "base", "changes"):
        doc.pop(k, None)
    mpath.write_text(json.dumps(doc, indent=2))


def set_volumes(dest: Path, snapshot: str, fn: Callable[[Path, list[dict]], None]) -> None:
    """Change volume files, then fix the manifest's sizes and hashes to match."""
    folder = snapshot_dir(dest, snapshot)
    mpath = folder / "manifest.json"
    doc = json.loads(mpath.read_text())
    fn(folder, doc["volumes"])
    for v in doc["volumes"]:
        data = (folder / v["name"]).read_bytes()
        v["size"], v["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    mpath.write_text(json.dumps(doc, indent=2))
