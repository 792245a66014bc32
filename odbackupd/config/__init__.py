"""The odbackupd configuration: one schema, loaded and checked with line-precise errors.

``/etc/odbackupd/odbackupd.toml`` plus drop-ins ``odbackupd.toml.d/*.toml``. The
schema (:mod:`.schema`) defines every key once; :func:`load_config` reads, merges,
checks each key, then the rules between keys (:mod:`.checks`), and raises
:class:`ConfigError` listing every problem as ``file:line: at 'key': message``.
:func:`sample_config` and :func:`schema_reference` are generated from the same schema.
"""

from .errors import ConfigError, Problem
from .sample import sample_config
from .schema import (
    AccountConfig,
    Config,
    DaemonConfig,
    DestinationConfig,
    IntakeConfig,
    IntakeUserConfig,
    JobConfig,
    KeyDoc,
    schema_reference,
)
from .units import parse_duration, parse_size
from .validate import default_config, load_config, load_config_text

__all__ = [
    "AccountConfig",
    "Config",
    "ConfigError",
    "DaemonConfig",
    "DestinationConfig",
    "IntakeConfig",
    "IntakeUserConfig",
    "JobConfig",
    "KeyDoc",
    "Problem",
    "default_config",
    "load_config",
    "load_config_text",
    "parse_duration",
    "parse_size",
    "sample_config",
    "schema_reference",
]
