"""Emulator settings (all changeable at run time through ``emu.config``) and its clock."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
TIB = 1024 * GIB
FRAGMENT_MULTIPLE = 320 * KIB  # 327,680 bytes
MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0


@dataclass
class EmulatorConfig:
    """Behaviour knobs. ``None`` means "the default of the mode" (see ``resolve``).

    Tags as in GRAPH-NOTES: values the real service documents are fixed defaults; the
    [inf] ones (not specified anywhere) are knobs so a test can try both sides.
    """

    mode: str = "personal"  # "personal" | "business"
    strict: bool = True  # strict: 4 MiB simple-upload limit (peers' value), else 250 MB

    # identity
    access_token_lifetime: float = HOUR
    refresh_token_lifetime: float = 90 * DAY
    refresh_token_single_use: bool = False  # AAD keeps old RTs valid; True = reject reuse
    device_code_lifetime: float = 15 * MINUTE
    device_code_interval: int = 5  # seconds msal sleeps between polls; tests set 0
    device_code_auto_approve_after: int | None = None  # approve after N pending polls
    auth_code_lifetime: float = 10 * MINUTE
    authorize_user: str | None = None  # user the /authorize page "signs in" (None: default)

    # Graph
    page_size: int = 200
    max_page_size: int = 1000  # $top above this is clamped [inf]
    skiptoken_lifetime: float = HOUR  # [inf]
    simple_upload_max: int | None = None  # None: 4 MiB strict, 250 MB otherwise
    put_auto_create_parents: bool = True  # simple PUT creates missing folders [obs]
    session_auto_create_parents: bool = True  # sessions create them at commit [inf]
    quota_total: int = 1 * TIB
    recycle_bin_counts: bool = True  # recycle-bin bytes stay in quota.used [inf]
    site_zero_quota: bool = True  # SharePoint libraries report all-zero quota [obs]
    business_versions: bool = True  # replacing a file keeps the old version's bytes [obs]
    drive_id_quirk: bool = False  # parentReference.driveId upper-cased, leading 0 dropped
    download_url_lifetime: float = 5 * MINUTE  # "valid a few minutes" [doc]
    download_expired_status: int | None = None  # None: 410 personal, 401 business [inf]
    app_folder_name: str = "odbackupd"

    # upload sessions
    session_default_conflict: str = "replace"  # observed; the doc says "fail"
    max_fragment: int = 60 * MIB  # fragments must be < this [doc]
    fragment_multiple: int = FRAGMENT_MULTIPLE
    unaligned_fragment: str = "reject"  # "reject" | "allow" (still recorded as violation)
    session_lifetime: float | None = None  # None: 7 d personal, 15 min business (sliding)
    session_hard_cap: float | None = None  # None: none personal, 24 h business (tempauth)
    single_session_per_item: bool = True  # 2nd session on an item or a new path -> 409 [obs]
    reject_auth_on_upload_url: bool = True  # 401 on PUT/DELETE with Authorization [doc]

    # throttling bookkeeping
    enforce_retry_after: bool = True  # answer 429 again to a request made too early
    retry_after_tolerance: float = 0.05  # seconds of slack for the client's clock
    missing_retry_after_wait: float = 0.0  # wait demanded when Retry-After was absent
    # SharePoint-style resource-unit budget per app per minute (None: off). Costs: 1 RU
    # reads/downloads, 2 RU listings and writes (incl. fragments). At >= 80 % answers carry
    # RateLimit-Limit/-Remaining/-Reset; over budget -> 429 until the minute ends [doc].
    ru_budget_per_minute: int | None = None

    def resolve(self) -> EmulatorConfig:
        """Fill the mode-dependent ``None`` defaults in place; returns self."""
        if self.mode not in ("personal", "business"):
            raise ValueError(f"mode must be 'personal' or 'business', not {self.mode!r}")
        personal = self.mode == "personal"
        if self.simple_upload_max is None:
            self.simple_upload_max = 4 * MIB if self.strict else 250 * 1000 * 1000
        if self.session_lifetime is None:
            self.session_lifetime = 7 * DAY if personal else 15 * MINUTE
        if self.session_hard_cap is None and not personal:
            self.session_hard_cap = DAY
        if self.download_expired_status is None:
            self.download_expired_status = 410 if personal else 401
        if self.unaligned_fragment not in ("reject", "allow"):
            raise ValueError("unaligned_fragment must be 'reject' or 'allow'")
        if self.session_default_conflict not in ("fail", "replace", "rename"):
            raise ValueError("session_default_conflict must be fail, replace or rename")
        return self

    def update(self, **changes) -> None:
        names = {f.name for f in dataclasses.fields(self)}
        for key, value in changes.items():
            if key not in names:
                raise TypeError(f"unknown emulator option {key!r}")
            setattr(self, key, value)
        self.resolve()


@dataclass
class Clock:
    """Wall clock plus an offset a test moves forward with ``advance()``.

    Every expiry in the emulator (access tokens, device codes, upload sessions, download
    URLs, skiptokens) is judged on this clock, so a test expires things instantly instead
    of sleeping. Real time keeps flowing too, so Retry-After waits work unchanged.
    """

    offset: float = 0.0
    on_change: Callable[[float], None] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self.offset += seconds
            offset = self.offset
        if self.on_change:
            self.on_change(offset)
