"""Snapshot series names: a job's own series ``JOB`` and its drop directory's ``JOB+drop``.

A module of its own, light to import: odctl resolves a series name on every offline
command, and importing the runner (the builder, the destinations) for it cost ~0.15 s of
start-up (``odctl ls`` is meant to answer in a fraction of a restore's time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for the annotations: this module stays light
    from .config import Config, JobConfig

DROP_SUFFIX = "+drop"  # "+" is not allowed in job names, so a series name never collides


def drop_series(job: str) -> str:
    """The side series holding one snapshot per drop-directory file of ``job``."""
    return job + DROP_SUFFIX


def series_job(series: str) -> str:
    """The job a series belongs to: ``JOB`` for ``JOB+drop``, else the name itself."""
    return series[: -len(DROP_SUFFIX)] if series.endswith(DROP_SUFFIX) else series


def series_config(config: Config, series: str) -> JobConfig | None:
    """The configuration of the job whose snapshot series is named ``series`` (``JOB``, or
    ``JOB+drop`` when JOB has a drop_dir), or None when there is no such series."""
    job = config.jobs.get(series_job(series))
    if job is None or (series != job.name and job.drop_dir is None):
        return None
    return job
