"""``[job.NAME]``: what to back up, where, when, and for how long to keep it.

Its own module, as ``notify_schema`` and ``account_schema`` are; the rules between a job's
keys and other tables are in :mod:`.checks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .fields import key, name_ref
from .kinds import AgeRecipient, Bool, Cron, Duration, Int, ListOf, PathKind, Size, Str
from .notify_schema import notify_list
from .units import MiB

__all__ = ["SAMPLE_RECIPIENT", "JobConfig"]

#: A public key whose identity was thrown away: safe to print in samples and docs.
SAMPLE_RECIPIENT = "age1ad0jxaw65u4plmvqnhru9vmjr5tlrtjkyz652yh722ycqk570y5qkpds2l"


def _pattern(value: str) -> str:
    if "\0" in value:
        raise ValueError("must not contain a NUL character")
    return value


@dataclass(frozen=True)
class JobConfig:
    name: str
    sources: tuple[Path, ...] = key(
        (),
        kind=ListOf(PathKind(), unique=True),  # empty only with a drop_dir: see checks
        default_doc="none; a job without sources needs a drop_dir",
        doc="The directories (or single files) to back up. Required unless the job only "
        "takes files from a drop_dir.",
        example=["/etc", "/srv/git"],
    )
    destinations: tuple[str, ...] = key(
        ("local",),
        kind=ListOf(Str("destination name", check=name_ref), nonempty=True, unique=True),
        doc="The [destination.NAME]s that receive every snapshot of this job. "
        '"local" is built in (/var/backups/odbackupd) unless you define your own.',
        example=["usb"],
    )
    exclude: tuple[str, ...] = key(
        (),
        kind=ListOf(Str("pattern", check=_pattern)),
        doc="Shell patterns of paths to leave out. Without a '/' a pattern is matched "
        "against each name (*.tmp); starting with '/' against the whole path; otherwise "
        "against the end of the path. '*' and '?' stay within a name, '**' crosses "
        "directories; an excluded directory is not descended into.",
        example=["*.tmp", "/srv/git/**/cache"],
    )
    recipients: tuple[str, ...] = key(
        (),
        kind=ListOf(AgeRecipient(), unique=True),
        doc="age public keys (age1…, from `age-keygen -y`) that can decrypt the snapshots; "
        "keep the identities offline. Unset or empty: the job is not encrypted.",
        example=[SAMPLE_RECIPIENT],
    )
    trusted_key: Path | None = key(  # noqa: RUF009 - key() returns a Field
        None,
        kind=PathKind(),
        doc="The public key that signs this job's snapshots (what `odctl key export` prints on "
        "the host that makes them). odctl verify and restore then refuse a snapshot that is "
        "unsigned or signed by another key. Set it where snapshots are restored, e.g. on "
        "another machine; --trusted-key FILE does the same for one command.",
        example="/etc/odbackupd/web1-signing.pub",
    )
    volume_size: int = key(
        64 * MiB,
        kind=Size(MiB, maximum=250 * 1024**3),
        doc="Snapshots are cut into volumes of this size; the spool holds a few of them. "
        "At least 1MiB.",
        example="64MiB",
    )
    compression_level: int = key(
        3,
        kind=Int(1, 22),
        doc="zstd compression level, 1 (fastest) to 19. 20 to 22 are accepted with a "
        "warning: they need far more memory per thread.",
        example=3,
    )
    compression_threads: int = key(
        0,
        kind=Int(0, 256),
        doc="zstd worker threads; 0 uses all cores.",
        example=0,
    )
    one_file_system: bool = key(
        True,
        kind=Bool(),
        doc="Stay on the file system of each source, like `tar --one-file-system` (skips "
        "/proc, other mounts, …).",
        example=True,
    )
    allow_empty_sources: bool = key(
        False,
        kind=Bool(),
        doc="A source directory that had files at the last snapshot and is empty now fails the "
        "run (an unmounted disk leaves an empty mount point; an empty snapshot would count for "
        "retention). Set true when a source may be emptied on purpose.",
        example=False,
    )
    keep_last: int | None = key(
        None,
        kind=Int(1),
        doc="Retention: keep the newest N snapshots. Unset: no such rule. A snapshot kept "
        "by any rule is kept, and the newest snapshot always is.",
        example=10,
    )
    keep_daily: int | None = key(
        None,
        kind=Int(1),
        doc="Retention: keep the last snapshot of each of the last N days that have one.",
        example=7,
    )
    keep_weekly: int | None = key(
        None,
        kind=Int(1),
        doc="Retention: keep the last snapshot of each of the last N weeks that have one.",
        example=4,
    )
    keep_monthly: int | None = key(
        None,
        kind=Int(1),
        doc="Retention: keep the last snapshot of each of the last N months that have one.",
        example=6,
    )
    max_size: int | None = key(
        None,
        kind=Size(1),
        doc="Retention: size cap for this job's snapshots on each destination; the oldest "
        "are deleted to stay under it. Unset: no cap.",
        example="20GiB",
    )
    full_every: int = key(
        14,
        kind=Int(1),
        doc="Incremental snapshots: a full snapshot at least every Nth run of this job, "
        "incrementals (only what changed since the previous snapshot) in between; 1 makes "
        "every snapshot a full. A restore of an incremental applies its whole chain (the full "
        "and every incremental up to it), and retention keeps a chain's snapshots while any "
        "later one of it is kept.",
        example=7,
    )
    full_if_older_than: float = key(
        30 * 86400.0,
        kind=Duration(minimum=1.0),
        doc="Incremental snapshots: the next run is a full when the last full snapshot is "
        "at least this old (either this or full_every makes a full).",
        example="30d",
    )
    ignore_inode: bool = key(
        False,
        kind=Bool(),
        doc="Change detection: do not compare inode numbers (for FUSE and network file "
        "systems whose inode numbers change between mounts).",
        example=False,
    )
    ignore_ctime: bool = key(
        False,
        kind=Bool(),
        doc="Change detection: do not compare ctime (for file systems that do not keep it); "
        "a rewrite that sets the mtime back is then missed.",
        example=False,
    )
    schedule: str | None = key(
        None,
        kind=Cron(),
        doc="When to run, as a cron expression (minute hour day month weekday, or "
        "@daily, @hourly, …) in the machine's time zone. Unset: no scheduled runs.",
        example="30 2 * * *",
    )
    random_delay: float = key(
        0.0,
        kind=Duration(),
        doc="Delay each scheduled run by a random time up to this, to spread load.",
        example="10min",
    )
    persistent: bool = key(
        True,
        kind=Bool(),
        doc="Run at start-up if a scheduled run was missed while the machine was off.",
        example=True,
    )
    watch: bool = key(
        False,
        kind=Bool(),
        doc="Watch the sources with inotify and run after changes.",
        example=False,
    )
    quiet_period: float = key(
        300.0,
        kind=Duration(),
        doc="With watch: run once no change has been seen for this long. With drop_dir: "
        "how long a file whose closing was not seen (there at start-up, or hard-linked in) "
        "must stay unchanged, and not open for writing, before it is taken.",
        example="5min",
    )
    max_delay: float = key(
        3600.0,
        kind=Duration(),
        doc="With watch: run at the latest this long after the first change, even if "
        "changes keep coming. At least quiet_period.",
        example="1h",
    )
    drop_dir: Path | None = key(  # noqa: RUF009 - key() returns a Field
        None,
        kind=PathKind(),
        doc="A drop directory: each complete file put here (closed after writing or moved "
        "in) becomes its own snapshot in the series <job>+drop (encrypted if the job is) "
        "and is removed once that is verified. Names starting with '.' or ending in .tmp, "
        ".part or ~ wait until renamed; subdirectories are left alone. Must exist and not "
        "overlap sources, destinations or the daemon's own directories; under the packaged "
        "unit it also needs ReadWritePaths= (systemctl edit odbackupd) so files can be removed.",
        example="/srv/drop/etc",
    )
    notify: tuple[str, ...] | None = notify_list(
        "The [notify.NAME]s told about this job's runs; [] for none.", None
    )
