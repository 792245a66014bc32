"""Where uploads live until they land, and what each user has waiting (the quota).

Per user: the drop directory (``[job.X].drop_dir`` of its ``drop_job``) and a partial
directory on the same file system, outside it. A plain PUT streams into
``partial/put-RANDOM`` and lands when the body is complete; a resumable (tus) upload is
``partial/ID`` plus ``STATE_DIR/uploads/ID.json``, which records its user, name, length and
the offset that was fsynced and acknowledged. The JSON is replaced atomically after every
acknowledged chunk, so a restart (or a crash) resumes exactly there: bytes past it, never
acknowledged, are cut off at start-up.

The quota counts, per user, unfinished uploads at their declared length, plain PUTs in
progress at what they received (or their Content-Length), and the files the intake landed
that are still in the drop directory. The last is a ledger (``STATE_DIR/waiting/USER.json``:
name, inode, size) checked with ``stat`` — the intake may not list the drop directory —
and an entry goes once the daemon has stored and removed its file.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .landing import land

log = logging.getLogger("odbackupd.intake")

__all__ = ["Area", "SetupError", "Store", "Upload"]


class SetupError(Exception):
    """The configuration cannot be served (missing directories, different file systems)."""


@dataclass
class Upload:
    id: str
    user: str
    name: str
    length: int
    offset: int
    created: float
    touched: float
    client: str
    metadata: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Area:
    user: str
    drop_dir: Path
    partial_dir: Path
    quota: int | None
    reserved: int = 0  # plain PUTs in progress


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(data).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class Store:
    def __init__(self, intake: Any, jobs: dict[str, Any], *, clock=time.time) -> None:  # noqa: ANN001
        self.clock = clock
        self.expiry = intake.upload_expiry
        self.state_dir = Path(intake.state_dir)
        self.uploads_dir = self.state_dir / "uploads"
        self.waiting_dir = self.state_dir / "waiting"
        self.areas: dict[str, Area] = {}
        for name, user in intake.users.items():
            drop = jobs[user.drop_job].drop_dir
            partial = user.partial_dir or drop.with_name(drop.name + ".partial")
            self.areas[name] = Area(name, drop, partial, user.quota)
        self.uploads: dict[str, Upload] = {}
        self.busy: set[str] = set()

    # ---- start-up ---------------------------------------------------------------------

    def open(self, *, check_only: bool = False) -> None:
        """Check and create the directories, reload unfinished uploads, drop leftovers;
        with *check_only* (``--check-config``) check without creating or removing anything."""
        for d in (self.state_dir, self.uploads_dir, self.waiting_dir):
            try:
                if not check_only:
                    d.mkdir(mode=0o700, exist_ok=True)
            except OSError as e:
                raise SetupError(f"cannot create {d}: {e.strerror or e}") from None
        for a in self.areas.values():
            try:
                if not check_only:
                    a.partial_dir.mkdir(mode=0o700, exist_ok=True)
                drop_dev = os.stat(a.drop_dir).st_dev
                partial = (a.partial_dir if a.partial_dir.exists() or not check_only
                           else a.partial_dir.parent)
                partial_dev = os.stat(partial).st_dev
            except OSError as e:
                raise SetupError(
                    f"intake user '{a.user}': {e.filename}: {e.strerror or e} "
                    "(create the drop directory, writable by odbackupd-intake)") from None
            if drop_dev != partial_dev:
                raise SetupError(
                    f"intake user '{a.user}': partial_dir {a.partial_dir} is not on the file "
                    f"system of drop_dir {a.drop_dir}; set intake.user.{a.user}.partial_dir to a "
                    "directory on it (finished uploads are renamed into the drop directory)")
        if check_only:
            return
        for meta in sorted(self.uploads_dir.glob("*.json")):
            self._reload(meta)
        for a in self.areas.values():
            for p in a.partial_dir.iterdir():
                if p.name not in self.uploads or self.uploads[p.name].user != a.user:
                    log.info("removing the leftover partial upload %s", p)
                    p.unlink(missing_ok=True)

    def _reload(self, meta: Path) -> None:
        try:
            up = Upload(**json.loads(meta.read_text()))
        except (OSError, ValueError, TypeError) as e:
            log.warning("ignoring unreadable upload state %s: %s", meta, e)
            meta.unlink(missing_ok=True)
            return
        area = self.areas.get(up.user)
        partial = area.partial_dir / up.id if area else None
        if partial is None or not partial.exists():  # landed just before a crash, or user gone
            meta.unlink(missing_ok=True)
            return
        if partial.stat().st_size != up.offset:  # bytes never acknowledged
            os.truncate(partial, up.offset)
        self.uploads[up.id] = up

    # ---- quota --------------------------------------------------------------------------

    def _ledger_path(self, user: str) -> Path:
        return self.waiting_dir / f"{user}.json"

    def _ledger(self, user: str) -> list[dict]:
        try:
            return json.loads(self._ledger_path(user).read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError):
            log.warning("the waiting-files ledger of '%s' is unreadable; starting it again", user)
            return []

    def waiting(self, user: str) -> int:
        """Bytes of landed files of *user* still in the drop directory (the ledger, pruned)."""
        area = self.areas[user]
        entries = self._ledger(user)
        kept = []
        for e in entries:
            try:
                st = os.stat(area.drop_dir / e["name"])
            except OSError:
                continue
            if st.st_ino == e["ino"]:
                kept.append(e)
        if len(kept) != len(entries):
            write_json_atomic(self._ledger_path(user), kept)
        return sum(e["size"] for e in kept)

    def usage(self, user: str) -> int:
        unfinished = sum(u.length for u in self.uploads.values() if u.user == user)
        return self.waiting(user) + unfinished + self.areas[user].reserved

    def room(self, user: str) -> int | None:
        """Bytes *user* may still add, or None without a quota."""
        quota = self.areas[user].quota
        return None if quota is None else max(0, quota - self.usage(user))

    # ---- landing ------------------------------------------------------------------------

    def land(self, user: str, partial: Path, name: str) -> str:
        """Land a complete, fsynced partial file and record it in the user's ledger."""
        area = self.areas[user]
        st = partial.stat()
        final = land(partial, area.drop_dir, name)
        ledger = self._ledger(user)
        ledger.append({"name": final, "ino": st.st_ino, "size": st.st_size})
        write_json_atomic(self._ledger_path(user), ledger)
        return final

    def put_partial(self, user: str) -> Path:
        return self.areas[user].partial_dir / f"put-{secrets.token_hex(16)}"

    # ---- resumable uploads ----------------------------------------------------------------

    def create(self, user: str, name: str, length: int, client: str, metadata: dict) -> Upload:
        now = self.clock()
        up = Upload(secrets.token_hex(16), user, name, length, 0, now, now, client, metadata)
        path = self.partial(up)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.close(fd)
        write_json_atomic(self.uploads_dir / f"{up.id}.json", up.to_json())
        self.uploads[up.id] = up
        return up

    def find(self, user: str, upload_id: str) -> Upload | None:
        """The unfinished upload *upload_id* if *user* made it; anyone else's is None too."""
        up = self.uploads.get(upload_id)
        return up if up is not None and up.user == user else None

    def partial(self, up: Upload) -> Path:
        return self.areas[up.user].partial_dir / up.id

    def expires(self, up: Upload) -> float:
        return up.touched + self.expiry

    def acknowledge(self, up: Upload, offset: int) -> None:
        """*offset* bytes are fsynced: record it, so a restart resumes there."""
        up.offset = offset
        up.touched = self.clock()
        write_json_atomic(self.uploads_dir / f"{up.id}.json", up.to_json())

    def forget(self, up: Upload, *, remove_partial: bool) -> None:
        self.uploads.pop(up.id, None)
        if remove_partial:
            self.partial(up).unlink(missing_ok=True)
        (self.uploads_dir / f"{up.id}.json").unlink(missing_ok=True)

    def sweep(self) -> list[Upload]:
        """Delete unfinished uploads that received nothing for upload_expiry."""
        now = self.clock()
        gone = [u for u in self.uploads.values()
                if u.id not in self.busy and self.expires(u) <= now]
        for up in gone:
            self.forget(up, remove_partial=True)
        return gone
