"""Where the configuration is, and loading it as every program of the package does.

``odbackupd``, ``odctl`` and ``odbackupd-intake`` read the same file; a machine without it
(the default path absent, no ``--config``) runs on the defaults with no jobs, while a
path given explicitly must exist."""
from __future__ import annotations

from pathlib import Path

from .schema import Config
from .validate import default_config, load_config

DEFAULT_CONFIG = Path("/etc/odbackupd/odbackupd.toml")


def load(path: Path | None, *, check_sources: bool = False, explicit: bool = False) -> Config:
    """The configuration at ``path`` (default :data:`DEFAULT_CONFIG`); the embedded default
    when that is absent and was not named explicitly. Raises ``ConfigError``."""
    p = path or DEFAULT_CONFIG
    if not p.exists() and not explicit:
        return default_config()
    return load_config(p, check_sources=check_sources)


def no_such_job(config: Config, name: str) -> str:
    """What to say when ``name`` is not a job of ``config``: on a machine without any
    configuration file (the embedded default), which file was not there and what to give."""
    if config.path is None:
        return (f"no job {name!r}: {DEFAULT_CONFIG} does not exist, so no job is configured; "
                "give the configuration file with --config FILE")
    known = ", ".join(sorted(config.jobs)) or "none configured"
    return f"no job {name!r} (jobs: {known})"


def check_summary(config: Config) -> str:
    """``1 job, 1 destination``: what ``--check-config`` and ``odctl config check`` report;
    the built-in default destination counts only when a job writes to it."""
    from .units import plural

    used = {n for job in config.jobs.values() for n in job.destinations}
    dests = [n for n in config.destinations if n not in config.embedded or n in used]
    return f"{plural(len(config.jobs), 'job')}, {plural(len(dests), 'destination')}"
