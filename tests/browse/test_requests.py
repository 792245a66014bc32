"""What finding a snapshot costs on OneDrive (the Graph emulator's request log): 'latest'
reads each manifest by its path (no listing of each snapshot folder), an id or prefix only
the manifests of its folders and of its chain, and a restore lists the series once."""

from __future__ import annotations

from collections import Counter
from urllib.parse import unquote

from tests.snapshot.incgen import Runs

from .helpers import odctl


class Requests:
    """The Graph requests one odctl command made: by label, and the objects it read."""

    def __init__(self, emu) -> None:  # noqa: ANN001
        self.emu = emu

    def __call__(self, *args: str) -> tuple:
        mark = len(self.emu.requests)
        r = odctl(*args)
        assert r.returncode == 0, (args, r.stderr)
        log = self.emu.requests[mark:]
        read = [
            unquote(q["path"]).removesuffix(":/content").rsplit("/", 2)[-2:]
            for q in log
            if q["label"] == "graph.content.get"
        ]
        return r.stdout, Counter(q["label"] for q in log), sorted("/".join(p) for p in read)


def _series(od, tmp_path) -> tuple:  # noqa: ANN001
    """Five snapshots of job t: full, incremental, incremental, full, incremental."""
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    cfg = str(od.write([src], job_extra="full_every = 3\n"))
    od.login()
    runs = Runs(od)
    made = []
    for i in range(5):
        (src / "etc" / "motd").write_text(f"version {i}\n")
        made.append(runs.run().result.manifest)
    assert [m.kind for m in made] == ["full", "incremental", "incremental", "full", "incremental"]
    return cfg, [m.snapshot for m in made], str(src).lstrip("/")


def test_finding_a_snapshot_reads_only_the_manifests_it_needs(od, tmp_path):
    cfg, ids, a = _series(od, tmp_path)
    got = Requests(od.emu)

    # latest: every manifest (the order is their sequence), but no snapshot folder listed
    out, n, read = got("--config", cfg, "ls", "t", "latest", f"{a}/etc")
    assert out == "motd\n"
    assert n["graph.children.list"] == 2  # this host's series folder and the old layout's
    assert read == sorted([f"{s}/manifest.json" for s in ids] + [f"{ids[4]}/index.zst"])

    # an id: its manifest and its chain's (the full it is based on), not the others
    out2, n, read = got("--config", cfg, "ls", "t", ids[4], f"{a}/etc")
    assert out2 == out and n["graph.children.list"] == 2
    assert read == sorted([f"{ids[3]}/manifest.json", f"{ids[4]}/manifest.json",
                           f"{ids[4]}/index.zst"])

    # a unique prefix of the oldest: that one folder's manifest
    _, n, read = got("--config", cfg, "ls", "t", ids[0][:-3], f"{a}/etc")
    assert read == [f"{ids[0]}/index.zst", f"{ids[0]}/manifest.json"]

    # a restore of the latest incremental lists the series once: its chain comes from the
    # manifests read to find it (then each of the chain's two folders is listed once its lease
    # is held: was it pruned meanwhile?)
    _, n, read = got("--config", cfg, "restore", "t", "latest", "--to", str(tmp_path / "o"),
                     "--path", f"{a}/etc/motd", "-q")
    assert n["graph.children.list"] == 2 + 2
    assert [p for p in read if p.endswith("manifest.json")] == sorted(
        f"{s}/manifest.json" for s in ids)
    assert (tmp_path / "o" / a / "etc/motd").read_text() == "version 4\n"

    # verify latest: each manifest read once (the listing it checks the chain against), and
    # nothing else downloaded (the destination's hashes are checked)
    _, n, read = got("--config", cfg, "verify", "t", "latest", "-q")
    assert read == sorted(f"{s}/manifest.json" for s in ids) and n["download.get"] == len(ids)
    od.emu.assert_no_violations()


def test_the_manifests_of_a_series_are_read_side_by_side(od, tmp_path):
    cfg, ids, a = _series(od, tmp_path)
    od.emu.faults.add("delay", "graph.content.get", seconds=1.0, times=None)
    mark = len(od.emu.requests)
    r = odctl("--config", cfg, "ls", "t", "latest", f"{a}/etc")
    assert r.returncode == 0, r.stderr
    came = [q["monotonic"] for q in od.emu.requests[mark:]
            if q["label"] == "graph.content.get" and "manifest.json" in unquote(q["path"])]
    assert len(came) == len(ids)
    # one after the other, each would come a second after the one before
    assert min(t2 - t1 for t1, t2 in zip(came, came[1:], strict=False)) < 0.5, came
