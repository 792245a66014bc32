"""The schema as the single source of truth: reference, sample and dataclasses agree."""

from __future__ import annotations

import dataclasses
import re

import pytest

import odbackupd.config as config_pkg
from odbackupd.config import (
    AccountConfig,
    DaemonConfig,
    DestinationConfig,
    IntakeConfig,
    IntakeUserConfig,
    JobConfig,
    KeyDoc,
    load_config_text,
    sample_config,
    schema_reference,
)
from odbackupd.config.schema import SECTIONS, schema_fields

# The public field names others code against: a rename here must be deliberate.
PUBLIC_FIELDS = {
    DaemonConfig: "state_dir spool_dir hostname max_parallel_runs max_parallel_uploads "
    "bandwidth_limit log_level metrics_file notify",
    DestinationConfig: "name type path account folder chunk_size hard_delete",
    AccountConfig: "name client_id tenant drive drive_id site client_secret_file "
    "certificate_file authority_url graph_url ca_bundle read_only",
    JobConfig: "name sources destinations exclude recipients trusted_key volume_size "
    "compression_level compression_threads one_file_system allow_empty_sources keep_last "
    "keep_daily keep_weekly keep_monthly max_size full_every full_if_older_than ignore_inode "
    "ignore_ctime schedule random_delay persistent watch quiet_period max_delay drop_dir notify",
    IntakeConfig: "listen max_file_size state_dir upload_expiry users",
    IntakeUserConfig: "name token_file drop_job quota partial_dir",
}


@pytest.mark.parametrize("cls", list(PUBLIC_FIELDS), ids=lambda c: c.__name__)
def test_public_field_names(cls):
    assert [f.name for f in dataclasses.fields(cls)] == PUBLIC_FIELDS[cls].split()
    assert cls.__dataclass_params__.frozen


def test_public_api():
    for name in [
        "load_config", "load_config_text", "default_config", "sample_config", "parse_size",
        "parse_duration", "schema_reference", "Config", "DaemonConfig", "DestinationConfig",
        "AccountConfig", "JobConfig", "Problem", "ConfigError", "KeyDoc",
    ]:  # fmt: skip
        assert hasattr(config_pkg, name), name
    assert [f.name for f in dataclasses.fields(config_pkg.Config)] == [
        "path", "daemon", "destinations", "accounts", "jobs", "warnings", "notify", "intake",
        "embedded",
    ]  # fmt: skip


def test_reference_documents_every_key():
    reference = schema_reference()
    assert all(isinstance(d, KeyDoc) for d in reference)
    for section in SECTIONS:
        documented = [d.name for d in reference if d.section == section.name]
        keys = [f.name for f in dataclasses.fields(section.cls) if f.name not in ("name", "users")]
        assert documented == keys
    for d in reference:
        assert d.description.endswith((".", ")")), d
        assert d.type and d.example, d
        assert d.required == (
            d.default is None and d.name in ("type", "client_id", "token_file", "drop_job")
        )


def test_required_keys():
    required = {(d.section, d.name) for d in schema_reference() if d.required}
    # a job's sources are required unless it has a drop_dir: checked with the other keys
    assert required == {("destination", "type"), ("account", "client_id"), ("notify", "type"),
                        ("intake.user", "token_file"), ("intake.user", "drop_job")}


@pytest.mark.parametrize("section", SECTIONS, ids=lambda s: s.name)
def test_examples_and_defaults_pass_their_own_checks(section):
    for name, f in schema_fields(section.cls).items():
        kind = f.metadata["kind"]
        kind.convert(f.metadata["example"])  # raises if the example is wrong
        if f.default is not dataclasses.MISSING and f.default is not None:
            assert kind.convert(kind.to_raw(f.default)) == f.default, name


def test_sample_shows_every_key_with_its_description():
    sample = sample_config()
    for d in schema_reference():
        assert re.search(rf"^#?{d.name} = ", sample, re.MULTILINE), d.name
        first_words = " ".join(d.description.split()[:6])
        assert first_words in " ".join(line.lstrip("# ") for line in sample.splitlines()), d.name
    assert max(len(line) for line in sample.splitlines()) <= 88


def test_sample_with_daemon_and_job_examples_uncommented_still_loads():
    """Each example is valid where the sample shows it, not just on its own."""
    out, section = [], None
    for line in sample_config().splitlines():
        if line.startswith("["):
            section = line
        if section in ("[daemon]", "[job.etc]") and re.match(r"#\w+ = ", line):
            line = line[1:]
        out.append(line)
    config = load_config_text("\n".join(out))
    job = config.jobs["etc"]
    assert job.keep_last == 10 and job.schedule == "30 2 * * *" and len(job.recipients) == 1
    assert config.daemon.bandwidth_limit == 8 * 2**20
    # quiet_period/max_delay without watch = true: said, not refused
    assert all("without watch" in w for w in config.warnings)
