"""One rule set for "the stored object is the file meant" (destinations/compare.py), as the
builder, the index, verify and restore all use it."""
from __future__ import annotations

import dataclasses
import hashlib

import pytest

from odbackupd.config.destkinds import Capabilities
from odbackupd.destinations.base import DestinationError, Expected, StoredObject
from odbackupd.destinations.compare import check_stored, expected_of, matches, mismatches
from odbackupd.destinations.local import LocalDestination
from odbackupd.hashes import quickxor_b64
from odbackupd.runner import run_job
from odbackupd.snapshot.restore import IntegrityError, check_volume, verify_snapshot
from odbackupd.state import StateStore

DATA = b"volume bytes " * 100
SHA, QX = hashlib.sha256(DATA).hexdigest(), quickxor_b64(DATA)
WANT = Expected(len(DATA), SHA, QX)


def whats(obj, expected=WANT, **kw):  # noqa: ANN001, ANN201
    return [m.what for m in mismatches(obj, expected, **kw)]


def test_the_rules():
    assert whats(None) == ["missing"]
    # a size alone is enough, unless a hash is needed
    assert whats(StoredObject("v", len(DATA))) == []
    assert whats(StoredObject("v", len(DATA)), need_hash=True) == ["unverifiable"]
    assert whats(StoredObject("v", len(DATA), SHA.upper(), QX), need_hash=True) == []  # any case
    # another size says it all: no hash comparisons after it
    assert whats(StoredObject("v", 1, "0" * 64, "x")) == ["size"]
    # every hash both sides know is compared, not just the first one
    assert whats(StoredObject("v", len(DATA), "0" * 64, QX)) == ["sha256"]
    assert whats(StoredObject("v", len(DATA), SHA, QX.lower())) == ["quickxor"]  # base64: exact
    assert whats(StoredObject("v", len(DATA), "0" * 64, "x")) == ["sha256", "quickxor"]
    # a hash only one side knows compares nothing
    no_qx = Expected(len(DATA), SHA, None)
    assert whats(StoredObject("v", len(DATA), None, "x"), no_qx, need_hash=True) == ["unverifiable"]
    assert matches(StoredObject("v", len(DATA), SHA, QX), WANT)


def test_what_a_run_says_of_a_bad_copy(tmp_path):
    dest = LocalDestination("usb", tmp_path)
    check_stored(dest, "vol.000001.zst", StoredObject("v", len(DATA)), WANT)
    with pytest.raises(DestinationError) as e:
        check_stored(dest, "vol.000001.zst", StoredObject("v", len(DATA), "ab" * 32, QX), WANT)
    assert str(e.value) == (f"local destination 'usb' ({tmp_path}) holds a bad copy of "
                            f"vol.000001.zst: SHA-256 {'ab' * 32}, expected {SHA}")
    with pytest.raises(DestinationError, match=f"vol.000001.zst: size 3, expected {len(DATA)}$"):
        check_stored(dest, "vol.000001.zst", StoredObject("v", 3, "ab" * 32), WANT)


def test_restore_checks_a_fetched_volume_by_the_same_rules():
    vol = {"name": "vol.000001.zst", "size": len(DATA), "sha256": SHA}  # no quickxor
    assert expected_of(vol) == Expected(len(DATA), SHA, None)
    check_volume(vol, len(DATA), SHA.upper())
    bad = "0" * 64
    with pytest.raises(IntegrityError, match=f"^vol.000001.zst: SHA-256 {bad}, expected {SHA}$"):
        check_volume(vol, len(DATA), "0" * 64)


class QuickXorShelf(LocalDestination):
    """A directory that reports the quickXorHash of what it holds, as OneDrive does."""

    capabilities = Capabilities(hashes=frozenset({"quickxor"}))

    def list_objects(self, job, snapshot):  # noqa: ANN001, ANN201
        d = self._dir(job, snapshot)
        return {n: dataclasses.replace(o, quickxor=quickxor_b64((d / n).read_bytes()))
                for n, o in super().list_objects(job, snapshot).items()}


def _snapshot(setup, tmp_path):  # noqa: ANN001, ANN202
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(DATA * 50)
    setup.write([src])
    state = StateStore(tmp_path / "state.db")
    try:
        run = run_job(setup.config(), "t", state)
    finally:
        state.close()
    assert run.result.ok, run.result.message
    return run.result.manifest


def test_verify_by_hashes_needs_a_hash_the_manifest_has(setup, tmp_path):
    """A manifest entry without a quickXorHash, on a destination reporting only that: no
    longer "damaged" (a quickXorHash compared with nothing), but unverifiable by hashes."""
    m = _snapshot(setup, tmp_path)
    dest = QuickXorShelf("usb", setup.dest)
    assert verify_snapshot(dest, m).ok
    for v in m.volumes:
        del v["quickxor"]
    rep = verify_snapshot(dest, m)
    assert rep.method == "destination hashes" and len(rep.problems) == len(m.volumes)
    assert rep.problems[0] == (f"{m.volumes[0]['name']}: no hash to check it by: the destination "
                               "reports none that the manifest has; use --download")
    assert verify_snapshot(dest, m, download=True).ok  # reading it back still can


def test_verify_by_hashes_compares_every_hash_both_know(setup, tmp_path):
    """The quickXorHash agreeing no longer hides a SHA-256 that does not."""
    m = _snapshot(setup, tmp_path)

    class BothShelf(QuickXorShelf):
        capabilities = Capabilities(hashes=frozenset({"quickxor", "sha256"}))

        def list_objects(self, job, snapshot):  # noqa: ANN001, ANN201
            return {n: dataclasses.replace(o, sha256="0" * 64)
                    for n, o in super().list_objects(job, snapshot).items()}

    rep = verify_snapshot(BothShelf("usb", setup.dest), m)
    assert rep.problems and all("SHA-256 " + "0" * 64 in p for p in rep.problems), rep.problems


def test_verify_with_download_does_not_fetch_what_the_listing_shows_damaged(setup, tmp_path):
    """The listing's hashes are checked in both modes: a volume whose reported hash already
    disagrees is damaged without being read back."""
    m = _snapshot(setup, tmp_path)
    vol = m.volumes[0]["name"]
    path = next(setup.dest.rglob(vol))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    reads = []

    class CountingShelf(QuickXorShelf):
        def open_read(self, job, snapshot, name):  # noqa: ANN001, ANN201
            reads.append(name)
            return super().open_read(job, snapshot, name)

    rep = verify_snapshot(CountingShelf("usb", setup.dest), m, download=True)
    sha, qx = hashlib.sha256(data).hexdigest(), quickxor_b64(bytes(data))
    want = m.volumes[0]
    assert rep.problems == [f"{vol}: quickXorHash {qx}, expected {want['quickxor']}"]
    assert vol not in reads
    # a local directory reports no hash: there the bytes read back show it
    rep = verify_snapshot(LocalDestination("usb", setup.dest), m)
    assert rep.problems == [
        f"{vol}: SHA-256 {sha}, expected {want['sha256']} (stored data is damaged)",
        f"{vol}: quickXorHash {qx}, expected {want['quickxor']} (stored data is damaged)",
    ]
