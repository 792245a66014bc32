"""A new destination kind is one module plus its tests: this file is that module.

The kind below ("shelf": a directory that reports the SHA-256 of what it holds, so verify
checks by hashes without reading) is registered here and nowhere else, and gets its
config table checked, its part of the sample, a working destination from the factory,
runs and verify, without any other module knowing it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import pytest

from odbackupd.config import (
    ConfigError,
    destkinds,
    load_config_text,
    sample_config,
    schema_reference,
)
from odbackupd.config.destkinds import Capabilities, DestinationKind
from odbackupd.config.fields import key
from odbackupd.config.kinds import PathKind, Str
from odbackupd.config.schema import DestinationConfig, destination_config
from odbackupd.destinations.base import StoredObject
from odbackupd.destinations.factory import open_destination
from odbackupd.destinations.local import LocalDestination
from odbackupd.runner import run_job
from odbackupd.snapshot.restore import verify_snapshot
from odbackupd.state import StateStore
from tests.layout import series_dir


# ---- the throwaway kind: what a new kind's module holds --------------------------------------
@dataclasses.dataclass(frozen=True)
class ShelfSettings:
    shelf: Path | None = key(  # noqa: RUF009 - key() returns a Field
        None,
        kind=PathKind(),
        doc='type = "shelf" only, and required there: the directory of the shelf.',
        example="/srv/shelf",
    )
    label: str = key(
        "spare",
        kind=Str("label"),
        doc='type = "shelf" only: what the shelf is called on its door.',
        example="offsite",
    )


class ShelfDestination(LocalDestination):
    kind = "shelf"
    capabilities = Capabilities(hashes=frozenset({"sha256"}))

    def list_objects(self, job: str, snapshot: str) -> dict[str, StoredObject]:
        objs = super().list_objects(job, snapshot)
        d = self._dir(job, snapshot)
        return {n: dataclasses.replace(o, sha256=hashlib.sha256((d / n).read_bytes()).hexdigest())
                for n, o in objs.items()}


def _open(name, settings, config, state):  # noqa: ANN001, ANN202
    return ShelfDestination(name, settings.shelf)


def _check(r, t, ctx) -> None:  # noqa: ANN001
    if t.get("label") == "secret":
        r.error((*t.path, "label"), "a shelf is never secret")


SHELF = DestinationKind(
    name="shelf",
    summary="a directory that knows its hashes",
    settings=ShelfSettings,
    open=_open,
    capabilities=ShelfDestination.capabilities,
    required=("shelf",),
    samples=(("attic", {"type": "shelf", "shelf": "/srv/shelf"}, "A shelf in the attic."),),
    check=_check,
    target=lambda t: ("shelf", t.get("shelf")) if t.get("shelf") else None,
    directory_key="shelf",
)


@pytest.fixture
def shelf():
    destkinds.register(SHELF)
    yield SHELF
    destkinds.unregister("shelf")


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "t.toml")
    return [str(p) for p in info.value.problems]


# ---- the tests -----------------------------------------------------------------------------
def test_the_config_table_of_a_new_kind_is_checked(shelf, tmp_path):
    config = load_config_text(
        f'[destination.s]\ntype = "shelf"\nshelf = "{tmp_path}"\nlabel = "top"\n')
    d = config.destinations["s"]
    assert (d.type, d.shelf, d.label, d.path) == ("shelf", tmp_path, "top", None)
    assert destkinds.settings_of(d) == ShelfSettings(tmp_path, "top")

    assert _problems('[destination.s]\ntype = "shelf"\n') == [
        "t.toml:1: at 'destination.s': missing required key 'shelf' (needed for type = \"shelf\")"]
    assert _problems('[destination.s]\ntype = "shelf"\nshelf = "rel"\n') == [
        "t.toml:3: at 'destination.s.shelf': "
        "'rel' is not an absolute path (it must start with '/')"]
    assert _problems('[destination.s]\ntype = "shelf"\nshelf = "/x"\nlabel = "secret"\n') == [
        "t.toml:4: at 'destination.s.label': a shelf is never secret"]
    # its keys belong to it, and the other kinds' keys not
    assert _problems('[destination.s]\ntype = "shelf"\nshelf = "/x"\npath = "/y"\n') == [
        "t.toml:4: at 'destination.s.path': "
        "'path' applies only to destinations of type = \"local\""]
    assert _problems('[destination.u]\ntype = "local"\npath = "/y"\nshelf = "/x"\n') == [
        "t.toml:4: at 'destination.u.shelf': "
        "'shelf' applies only to destinations of type = \"shelf\""]
    # two destinations on one shelf, and a job backing up into its own shelf
    twice = ('[destination.a]\ntype = "shelf"\nshelf = "/x"\n'
             '[destination.b]\ntype = "shelf"\nshelf = "/x"\n')
    assert "stores to the same place as 'a'" in _problems(twice)[0]
    config = load_config_text('[destination.a]\ntype = "shelf"\nshelf = "/srv/x"\n'
                              '[job.j]\nsources = ["/srv"]\ndestinations = ["a"]\n')
    assert any("destination 'a' (/srv/x) is inside source '/srv'" in w for w in config.warnings)


def test_a_new_kind_is_in_the_sample_and_the_reference(shelf):
    sample = sample_config()
    words = " ".join(line.lstrip("# ") for line in sample.splitlines())
    assert ('"local" (a directory, e.g. a mounted disk), "onedrive" (a OneDrive or SharePoint '
            'drive reached through an [account.NAME]) or "shelf" (a directory that knows its '
            'hashes).') in words
    assert re.search(r'^#shelf = "/srv/shelf"$', sample, re.MULTILINE)
    table = (r'^# A shelf in the attic\.\n\[destination\.attic\]\n'
             r'type = "shelf"\nshelf = "/srv/shelf"$')
    assert re.search(table, sample, re.MULTILINE)
    config = load_config_text(sample)  # the sample still loads, with its shelf
    assert config.destinations["attic"].shelf == Path("/srv/shelf")
    assert ("destination", "label") in {(d.section, d.name) for d in schema_reference()}


def test_the_factory_opens_a_new_kind_that_backs_up_and_verifies_by_its_hashes(shelf, tmp_path):
    src, dest = tmp_path / "src", tmp_path / "shelf"
    src.mkdir()
    dest.mkdir()
    (src / "f").write_bytes(b"shelved " * 10_000)
    config = load_config_text(f"""
        [daemon]
        state_dir = "{tmp_path / 'state'}"
        spool_dir = "{tmp_path / 'spool'}"
        [destination.s]
        type = "shelf"
        shelf = "{dest}"
        [job.t]
        sources = ["{src}"]
        destinations = ["s"]
        """.replace("\n        ", "\n"))
    d = open_destination(config, "s")
    assert isinstance(d, ShelfDestination) and d.root == dest
    state = StateStore(tmp_path / "state.db")
    try:
        run = run_job(config, "t", state)
    finally:
        state.close()
    assert run.result.ok, run.result.message
    m = run.result.manifest
    rep = verify_snapshot(d, m)
    assert rep.ok and rep.method == "destination hashes", rep.problems
    vol = series_dir(dest) / m.snapshot / m.volumes[0]["name"]
    data = bytearray(vol.read_bytes())
    data[-5] ^= 1
    vol.write_bytes(bytes(data))
    rep = verify_snapshot(d, m)
    assert rep.method == "destination hashes"
    assert [p.split(",")[0] for p in rep.problems] == [
        f"{m.volumes[0]['name']}: SHA-256 {hashlib.sha256(data).hexdigest()}"]


def test_unregistering_restores_the_builtin_schema(shelf):
    assert destination_config() is not DestinationConfig
    destkinds.unregister("shelf")
    assert destination_config() is DestinationConfig
    problems = _problems('[destination.s]\ntype = "shelf"\nshelf = "/x"\n')
    assert "invalid value 'shelf'" in problems[0] and "unknown key 'shelf'" in problems[1]


@pytest.mark.parametrize("change, message", [
    ({"name": "local"}, "'local' is registered already"),
    ({"name": "a b"}, "invalid name 'a b'"),
    ({"required": ("nope",)}, "'nope' is not one of its keys"),
    ({"capabilities": Capabilities(hashes=frozenset({"md5"}))}, "unknown hash 'md5'"),
])
def test_a_kind_must_not_clash(change, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        destkinds.register(dataclasses.replace(SHELF, **change))
    assert destkinds.get("shelf") is None


def test_a_kind_must_not_take_another_kinds_key():
    @dataclasses.dataclass(frozen=True)
    class Taken:
        path: Path | None = key(None, kind=PathKind(), doc="again.", example="/x")  # noqa: RUF009

    with pytest.raises(ValueError, match="key 'path' is a key of local"):
        destkinds.register(
            dataclasses.replace(SHELF, settings=Taken, required=(), directory_key=None))


def test_loading_a_configuration_loads_no_destination_implementation():
    """The kinds are found in destinations/kinds/, but only opening one imports its
    implementation: odbackupd --check-config and the intake never load requests or Graph."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from odbackupd.config import load_config_text\n"
        "load_config_text('[account.a]\\nclient_id = \"00000000-0000-0000-0000-000000000000\"\\n'\n"
        "                 '[destination.od]\\ntype = \"onedrive\"\\naccount = \"a\"\\n')\n"
        "print(sorted(m for m in sys.modules if m.startswith(('requests', 'msal',\n"
        "      'odbackupd.graph', 'odbackupd.destinations.onedrive',\n"
        "      'odbackupd.destinations.local'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
