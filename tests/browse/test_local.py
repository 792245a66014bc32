"""odctl ls/find/diff/restore --path on a local destination: the state at a snapshot from its
index alone, one file restored from the volumes that hold it, and indexes that lie refused."""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest

from odbackupd.destinations.factory import open_destination
from odbackupd.snapshot.catalog import list_snapshots
from odbackupd.snapshot.view import open_view
from tests.snapshot.incgen import Runs

from .helpers import drop_index, odctl, odjson, rewrite_index, set_volumes, snapshot_dir


def make_tree(root):  # noqa: ANN001, ANN201
    src = root / "src"
    (src / "etc/nginx/sites-available").mkdir(parents=True)
    (src / "docs").mkdir()
    (src / "etc/nginx/sites-available/shop").write_text("server shop v1\n")
    (src / "etc/nginx/sites-available/blog").write_text("server blog\n")
    (src / "etc/hosts").write_text("127.0.0.1 localhost\n")
    (src / "etc/mode-only").write_text("same content\n")
    (src / "docs/invoice-2026-11.pdf").write_bytes(b"%PDF-11" * 100)
    (src / "big1").write_bytes(os.urandom(3 << 20))
    (src / "big2").write_bytes(os.urandom(3 << 20))
    os.symlink("etc/hosts", src / "link")
    return src


def change_tree(src) -> None:  # noqa: ANN001
    (src / "etc/nginx/sites-available/shop").write_text("server shop v2, longer\n")
    (src / "etc/nginx/sites-available/blog").unlink()
    (src / "docs/invoice-2026-12.pdf").write_bytes(b"%PDF-12" * 100)
    os.chmod(src / "etc/mode-only", 0o600)
    os.unlink(src / "link")
    os.symlink("etc/nginx", src / "link")


def one_full(setup, tmp_path):  # noqa: ANN001, ANN201
    """A full snapshot of make_tree: (source, its archived path, config path, snapshot id)."""
    src = make_tree(tmp_path)
    cfg = str(setup.write([src], extra="full_every = 1\n"))
    return src, str(src).lstrip("/"), cfg, Runs(setup).run().result.manifest.snapshot


def two_runs(setup, src, **kw):  # noqa: ANN001, ANN003, ANN201
    cfg = setup.write([src], extra="full_every = 5\n" + kw.pop("extra", ""), **kw)
    runs = Runs(setup)
    full = runs.run().result.manifest.snapshot
    change_tree(src)
    inc = runs.run().result.manifest.snapshot
    return str(cfg), full, inc


def test_ls_find_diff_read_only_the_indexes(setup, tmp_path):
    src = make_tree(tmp_path)
    a = str(src).lstrip("/")
    cfg, full, inc = two_runs(setup, src)
    for s in (full, inc):  # nothing but the indexes (and manifests) is left to read
        for v in snapshot_dir(setup.dest, s).glob("vol.*"):
            v.unlink()

    r = odctl("--config", cfg, "ls", "t", f"{a}/etc/nginx/sites-available")
    assert (r.returncode, r.stdout) == (0, "shop\n"), r.stderr
    r = odctl("--config", cfg, "ls", "t", full, f"{a}/etc/nginx/sites-available")
    assert (r.returncode, r.stdout) == (0, "blog\nshop\n"), r.stderr
    r = odctl("--config", cfg, "ls", "t", a, "-l")
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.endswith("link -> etc/nginx"))
    assert line.startswith("lrwxrwxrwx")
    assert any(ln.startswith("drwx") and ln.endswith(" docs") for ln in r.stdout.splitlines())
    rows = {
        e["path"][len(a) + 1 :]: e for e in odjson("--config", cfg, "ls", "t", a, "-R")["entries"]
    }
    assert rows["etc/nginx/sites-available/shop"]["origin"] == inc  # stored again
    assert rows["etc/hosts"]["origin"] == full  # unchanged: the chain resolved
    assert (
        rows["etc/hosts"]["size"] == len("127.0.0.1 localhost\n")
        and rows["etc/mode-only"]["mode"] == "0600"
    )
    assert "etc/nginx/sites-available/blog" not in rows
    r = odctl("--config", cfg, "ls", "t", f"{a}/nope")
    assert r.returncode == 3 and "nope: not in snapshot" in r.stderr

    got = odjson("--config", cfg, "find", "t", "invoice-*.pdf", "--all")
    assert [(m["snapshot"], m["name"]) for m in got["matches"]] == [
        (inc, "invoice-2026-11.pdf"),
        (inc, "invoice-2026-12.pdf"),
        (full, "invoice-2026-11.pdf"),
    ]
    assert got["matches"][0]["size"] == 700
    got = odjson("--config", cfg, "find", "t", f"{a}/etc/**/shop")
    assert [m["snapshot"] for m in got["matches"]] == [inc]  # the latest only, unless asked
    r = odctl("--config", cfg, "find", "t", f"{a}/etc/**/shop")
    assert r.returncode == 0 and "odctl: 1 match in 1 snapshot\n" in r.stderr, r.stderr
    r = odctl("--config", cfg, "find", "t", "invoice-2026-12.pdf", "--since", "2099-01-01")
    assert r.returncode == 3 and "0 matches in 0 snapshots" in r.stderr
    r = odctl("--config", cfg, "find", "t", "x", "--since", "last tuesday")
    assert r.returncode == 2 and "--since last tuesday: not a date" in r.stderr

    d = odjson("--config", cfg, "diff", "t", full, inc)
    strip = lambda ps: [p[len(a) + 1 :] for p in ps]  # noqa: E731
    assert strip(d["added"]) == ["docs/invoice-2026-12.pdf"]
    assert strip(d["removed"]) == ["etc/nginx/sites-available/blog"]
    assert strip(d["modified"]) == ["etc/nginx/sites-available/shop", "link"]
    assert strip(d["metadata"]) == ["etc/mode-only"]
    r = odctl("--config", cfg, "diff", "t", full, "latest")
    assert (
        f"+    {a}/docs/invoice-2026-12.pdf\n" in r.stdout
        and f"U    {a}/etc/mode-only\n" in r.stdout
    )


def _holding(cfg_path, snapshot, paths):  # noqa: ANN001, ANN201
    """The volumes (snapshot, name) holding ``paths`` of ``snapshot``, per the index."""
    from odbackupd.config import load_config

    d = open_destination(load_config(cfg_path), "usb")
    snaps = list_snapshots(d, "t").complete
    m = next(s for s in snaps if s.snapshot == snapshot)
    with open_view(d, m, snaps) as v:
        out = set()
        for p in paths:
            loc = v.location(v.lookup(p))
            owner = next(s for s in snaps if s.snapshot == loc.snapshot)
            end = v.entry_end(loc)
            for vol in owner.volumes:
                if vol["tar_start"] < (end or owner.tar_bytes) and vol["tar_end"] > loc.offset:
                    out.add((loc.snapshot, vol["name"]))
        return out, snaps


def test_restore_path_fetches_only_the_volumes_holding_it(setup, tmp_path):
    src = make_tree(tmp_path)
    a = str(src).lstrip("/")
    cfg, full, inc = two_runs(setup, src)
    want = [f"{a}/etc/nginx/sites-available/shop", f"{a}/etc/hosts"]  # the newest copies: inc, full
    keep, snaps = _holding(cfg, inc, want)
    assert {s for s, _ in keep} == {full, inc} and sum(len(m.volumes) for m in snaps) >= 8
    for m in snaps:  # every other volume gone: a restore that touched one would fail
        for v in m.volumes:
            if (m.snapshot, v["name"]) not in keep:
                (snapshot_dir(setup.dest, m.snapshot) / v["name"]).unlink()
    out = tmp_path / "out"
    r = odctl(
        "--config",
        cfg,
        "restore",
        "t",
        "latest",
        "--to",
        str(out),
        "--path",
        want[0],
        "--path",
        want[1],
        "--json",
    )
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["files"] == 2 and res["complete"]
    assert res["fetched"]["volumes"] == len(keep) and res["fetched"]["indexes"] == 2
    assert (out / want[0]).read_text() == "server shop v2, longer\n"
    assert (out / want[1]).read_text() == "127.0.0.1 localhost\n"
    assert sorted(p.name for p in (out / a).iterdir()) == ["etc"]
    r = odctl(
        "--config", cfg, "restore", "t", "latest", "--to", str(tmp_path / "o2"), "--path", want[1]
    )
    assert r.returncode == 0, r.stderr
    assert " of 1 volume (only the zstd frames holding the paths: 1 ranged read)" in r.stdout
    assert r.stdout.count("fetched ") == 1 and "a whole restore reads" in r.stdout
    assert ": 1 file, 0 directories, " in r.stdout, r.stdout  # counted as said


def test_restore_path_of_a_directory_and_a_missing_path(setup, tmp_path):
    src = make_tree(tmp_path)
    a = str(src).lstrip("/")
    cfg, full, inc = two_runs(setup, src)
    os.chmod(src / "etc/nginx", 0o750)  # not in any snapshot: the restored mode is the snapshot's
    out = tmp_path / "out"
    r = odctl(
        "--config",
        cfg,
        "restore",
        "t",
        "--to",
        str(out),
        "--path",
        f"{a}/etc/nginx",
        "--path",
        f"{a}/nope",
    )
    assert r.returncode == 3 and f"--path {a}/nope: nothing in snapshot" in r.stderr
    assert sorted(p.name for p in (out / a / "etc/nginx/sites-available").iterdir()) == ["shop"]
    assert stat.S_IMODE(os.stat(out / a / "etc/nginx").st_mode) == 0o755


def test_a_hard_link_restored_without_its_first_name_is_a_file(setup, tmp_path):
    src = make_tree(tmp_path)
    os.link(src / "etc/hosts", src / "hosts-again")  # archived as a link to etc/hosts, met first
    a = str(src).lstrip("/")
    cfg = str(setup.write([src], extra="full_every = 1\n"))
    Runs(setup).run()
    out = tmp_path / "out"
    r = odctl("--config", cfg, "restore", "t", "--to", str(out), "--path", f"{a}/hosts-again")
    assert r.returncode == 0, r.stderr
    assert (out / a / "hosts-again").read_text() == "127.0.0.1 localhost\n" and not (
        out / a / "etc"
    ).exists()
    r = odctl(
        "--config",
        cfg,
        "restore",
        "t",
        "--to",
        str(tmp_path / "both"),
        "--path",
        f"{a}/hosts-again",
        "--path",
        f"{a}/etc/hosts",
    )
    assert r.returncode == 0, r.stderr
    assert (
        os.stat(tmp_path / "both" / a / "hosts-again").st_ino
        == os.stat(tmp_path / "both" / a / "etc/hosts").st_ino
    )


def test_an_encrypted_index_needs_the_identity(setup, tmp_path, age_key):
    key, recipient = age_key
    src = make_tree(tmp_path)
    a = str(src).lstrip("/")
    cfg, full, inc = two_runs(setup, src, recipients=[recipient])
    raw = (snapshot_dir(setup.dest, inc) / "index.zst.age").read_bytes()
    assert b"shop" not in raw and b"invoice" not in raw
    r = odctl("--config", cfg, "ls", "t", a)
    assert r.returncode == 2 and "give the age identity with --identity" in r.stderr
    r = odctl("--config", cfg, "ls", "t", a, "-i", str(key))
    assert r.returncode == 0 and "etc/\n" in r.stdout, r.stderr
    other = tmp_path / "other.txt"
    other.write_text(
        str(__import__("odbackupd.crypto.age", fromlist=["x"]).generate_identity()) + "\n"
    )
    r = odctl("--config", cfg, "find", "t", "shop", "-i", str(other))
    assert r.returncode == 2 and "none of the --identity keys opens" in r.stderr
    out = tmp_path / "out"
    r = odctl(
        "--config",
        cfg,
        "restore",
        "t",
        "--to",
        str(out),
        "-i",
        str(key),
        "--path",
        f"{a}/etc/nginx/sites-available/shop",
    )
    assert r.returncode == 0, r.stderr
    assert (out / a / "etc/nginx/sites-available/shop").read_text() == "server shop v2, longer\n"


def test_a_snapshot_without_an_index_is_streamed_once_and_says_so(setup, tmp_path):
    src, a, cfg, snap = one_full(setup, tmp_path)
    drop_index(setup.dest, snap)
    r = odctl("--config", cfg, "ls", "t", f"{a}/etc", "-l")
    assert r.returncode == 0, r.stderr
    assert "has no index" in r.stderr and "streaming all its volumes once" in r.stderr
    assert [ln.split()[-1] for ln in r.stdout.splitlines()] == ["hosts", "mode-only", "nginx"]
    got = odjson("--config", cfg, "find", "t", "shop", "-q")
    assert got["streamed"] == [snap] and [m["path"] for m in got["matches"]] == [
        f"{a}/etc/nginx/sites-available/shop"
    ]
    r = odctl("--config", cfg, "restore", "t", "--to", str(tmp_path / "out"), "--path", f"{a}/link")
    assert r.returncode == 0, r.stderr
    assert os.readlink(tmp_path / "out" / a / "link") == "etc/hosts"


def _record(recs, suffix):  # noqa: ANN001, ANN201
    loc = recs.index({"section": "locations"})
    return next(r for r in recs[loc + 1 :] if "/".join(map(str, r["k"])).endswith(suffix))


@pytest.mark.parametrize("lie", ["outside", "another_member", "wrong_volume"])
def test_an_index_pointing_elsewhere_is_refused(setup, tmp_path, lie):
    src, a, cfg, snap = one_full(setup, tmp_path)

    def edit(recs):  # noqa: ANN001
        shop = _record(recs, "sites-available/shop")
        if lie == "outside":
            shop["o"] = 1 << 40
        elif lie == "another_member":
            shop["o"] = _record(recs, "etc/hosts")["o"]
        else:
            shop["v"] = shop["v"] + 1

    rewrite_index(setup.dest, snap, edit)
    out = tmp_path / "out"
    r = odctl(
        "--config",
        cfg,
        "restore",
        "t",
        "--to",
        str(out),
        "--path",
        f"{a}/etc/nginx/sites-available/shop",
    )
    assert r.returncode == 4, r.stderr
    assert "the index of snapshot" in r.stderr and "refused" in r.stderr
    assert not out.exists() or not any(out.rglob("*"))  # nothing written
    if lie == "another_member":
        assert "where the archive holds" in r.stderr


@pytest.mark.parametrize("where", ["child", "key", "root"])
def test_an_index_with_dotdot_is_refused(setup, tmp_path, where):
    src, a, cfg, snap = one_full(setup, tmp_path)

    def edit(recs):  # noqa: ANN001
        tree = [r for r in recs if "c" in r]
        if where == "child":
            tree[-1]["c"][0][0] = ".."
        elif where == "key":
            tree[-1]["k"] = [0, "..", "..", "escape"]
        else:
            recs[0]["roots"] = ["../../escape"]

    rewrite_index(setup.dest, snap, edit)
    for cmd in (
        ["ls", "t", "-R"],
        ["find", "t", "*"],
        ["restore", "t", "--to", str(tmp_path / "out"), "--path", a],
    ):
        r = odctl("--config", cfg, *cmd)
        assert r.returncode == 4, (cmd, r.stderr)
        assert "refused" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "escape").exists() and not (tmp_path.parent / "escape").exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


def test_volumes_swapped_are_caught_on_a_partial_read(setup, tmp_path):
    """A partial read checks what it reads against the index (their SHA-256 in a manifest
    someone fixed up would not catch a swap): each frame's SHA-256 names its bytes."""
    src, a, cfg, snap = one_full(setup, tmp_path)
    keep, _ = _holding(cfg, snap, [f"{a}/etc/nginx/sites-available/shop"])
    (name,) = [n for _, n in keep]

    def swap(folder, vols):  # noqa: ANN001
        i = next(i for i, v in enumerate(vols) if v["name"] == name)
        j = i + 1 if i + 1 < len(vols) else i - 1
        x, y = folder / vols[i]["name"], folder / vols[j]["name"]
        dx, dy = x.read_bytes(), y.read_bytes()
        x.write_bytes(dy)
        y.write_bytes(dx)

    set_volumes(setup.dest, snap, swap)
    r = odctl(
        "--config",
        cfg,
        "restore",
        "t",
        "--to",
        str(tmp_path / "out"),
        "--path",
        f"{a}/etc/nginx/sites-available/shop",
    )
    assert r.returncode == 4 and "the volume was changed or replaced" in r.stderr, r.stderr
    assert "nothing in snapshot" not in r.stderr  # the read stopped: not a mistyped --path


def test_trust_checks_apply_and_host_reads_another_servers_snapshots(setup, tmp_path, age_key):
    key, recipient = age_key
    src = make_tree(tmp_path)
    a = str(src).lstrip("/")
    setup.write([src], extra="full_every = 1\n")
    text = setup.config_path.read_text().replace("[daemon]\n", '[daemon]\nhostname = "alpha"\n')
    setup.config_path.write_text(text)
    Runs(setup).run()
    beta = tmp_path / "beta.toml"
    beta.write_text(text.replace('hostname = "alpha"', 'hostname = "beta"'))
    r = odctl("--config", str(beta), "ls", "t")
    assert r.returncode == 3 and "host 'beta'" in r.stderr
    r = odctl("--config", str(beta), "ls", "t", a, "--host", "alpha")
    assert r.returncode == 0 and r.stdout.startswith("big1\n"), r.stderr
    # the job now encrypts: an unencrypted snapshot is refused before anything is read
    enc = tmp_path / "enc.toml"
    enc.write_text(text.replace("volume_size", f'recipients = ["{recipient}"]\nvolume_size'))
    for cmd in (
        ["ls", "t"],
        ["find", "t", "shop"],
        ["diff", "t", "latest", "latest"],
        ["restore", "t", "--to", str(tmp_path / "o"), "--path", a],
    ):
        r = odctl("--config", str(enc), *cmd)
        assert r.returncode == 4 and "is not encrypted" in r.stderr, (cmd, r.stderr)
    r = odctl("--config", str(enc), "ls", "t", "--any-encryption")
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the special-file policy applies to root restores")
def test_root_restore_path_of_an_unsigned_snapshot_leaves_setuid_out(setup, tmp_path):
    src = make_tree(tmp_path)
    a = str(src).lstrip("/")
    (src / "su").write_bytes(b"#!/bin/sh\n")
    os.chmod(src / "su", 0o4755)
    cfg = str(setup.write([src], extra="full_every = 1\n"))
    Runs(setup).run()
    out = tmp_path / "out"
    r = odctl("--config", cfg, "restore", "t", "--to", str(out), "--path", f"{a}/su")
    assert r.returncode == 1 and "left out 1 setuid/setgid file" in r.stderr
    assert stat.S_IMODE(os.stat(out / a / "su").st_mode) == 0o755
    r = odctl(
        "--config",
        cfg,
        "restore",
        "t",
        "--to",
        str(tmp_path / "o2"),
        "--path",
        f"{a}/su",
        "--special-files",
    )
    assert r.returncode == 0 and stat.S_IMODE(os.stat(tmp_path / "o2" / a / "su").st_mode) == 0o4755
    shutil.rmtree(out)


def test_restore_path_of_a_file_spanning_volumes(setup, tmp_path):
    src, a, cfg, snap = one_full(setup, tmp_path)
    keep, snaps = _holding(cfg, snap, [f"{a}/big2"])
    assert len(keep) >= 3  # 3 MiB in 1 MiB volumes
    for v in snaps[-1].volumes:
        if (snap, v["name"]) not in keep:
            (snapshot_dir(setup.dest, snap) / v["name"]).unlink()
    out = tmp_path / "out"
    r = odctl("--config", cfg, "restore", "t", "--to", str(out), "--path", f"{a}/big2", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["fetched"]["volumes"] == len(keep)
    assert (out / a / "big2").read_bytes() == (src / "big2").read_bytes()
