"""Files that change, vanish or shrink while the snapshot reads them are reported, the
archive stays valid, and the stream resumes from any checkpoint byte-exactly."""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

from odbackupd.snapshot.tarstream import TarCheckpoint, TarStream
from odbackupd.snapshot.walk import ExcludeMatcher, Walker

from .treegen import make_awkward_tree


def _stream(src: Path, resume=None, chunk=4096):  # noqa: ANN001, ANN202
    reports: list[tuple[str, bytes, str]] = []
    w = Walker([os.fsencode(str(src))], ExcludeMatcher(()), True,
               on_problem=lambda p: reports.append((p.kind, p.path, p.message)))
    return (TarStream(w, lambda k, p, m: reports.append((k, p, m)), resume=resume,
                      chunk_size=chunk),
            reports)


def test_change_during_read_is_reported_and_archive_stays_valid(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a-growing.log").write_bytes(b"x" * 100_000)
    (src / "b-shrinking.db").write_bytes(b"y" * 100_000)
    (src / "c-vanishing").write_bytes(b"z" * 10)
    ts, reports = _stream(src, chunk=8192)
    out = bytearray()
    it = iter(ts)
    out += next(it)  # header + start of a-growing.log
    with open(src / "a-growing.log", "ab") as f:
        f.write(b"more")
    while ts.cp.cur_key is None or not ts.cp.cur_path.endswith(b"b-shrinking.db"):
        out += next(it)
    os.truncate(src / "b-shrinking.db", 10)
    os.unlink(src / "c-vanishing")
    for chunk in it:
        out += chunk
    kinds = {(k, os.path.basename(p)) for k, p, _ in reports}
    assert ("changed", b"a-growing.log") in kinds
    assert ("changed", b"b-shrinking.db") in kinds
    assert ("vanished", b"c-vanishing") in kinds
    with tarfile.open(fileobj=io.BytesIO(bytes(out)), mode="r:") as tf:
        members = {os.path.basename(m.name): m for m in tf.getmembers()}
        assert members["a-growing.log"].size == 100_000  # as announced in its header
        assert members["b-shrinking.db"].size == 100_000  # padded, not a broken archive
        assert "c-vanishing" not in members


def test_resume_from_every_checkpoint_gives_identical_stream(tmp_path):
    src = make_awkward_tree(tmp_path, big=200_000)
    ts, _ = _stream(src, chunk=3000)
    chunks, cps = [], []
    for c in ts:
        chunks.append(bytes(c))  # a chunk is valid until the next: kept, it is copied
        cps.append(TarCheckpoint.from_json(ts.checkpoint().to_json()))
    full = b"".join(chunks)
    digest = hashlib.sha256(full).hexdigest()
    # resume after every 7th chunk: the rest of the stream is byte-identical
    for i in range(0, len(cps) - 1, 7):
        cp = cps[i]
        prefix = b"".join(chunks[: i + 1])
        assert cp.offset == len(prefix)
        rest_stream, reports = _stream(src, resume=cp, chunk=3000)
        rest = b"".join(bytes(c) for c in rest_stream)
        assert hashlib.sha256(prefix + rest).hexdigest() == digest, f"resume at chunk {i} diverged"
        assert reports == []
        assert rest_stream.cp.stats == ts.cp.stats
