"""The snapshot manifest: written last, its presence is what makes a snapshot complete.

It never holds file names: for an encrypted job the file list lives only inside the
encrypted volumes. It holds what is needed to verify (sizes and hashes of every volume)
and to restore (volume order, compression, encryption recipients' fingerprints).
"""
from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

FORMAT = "odbackupd-snapshot"
# 2: "kind"/"base" (incremental chains), "index" (the snapshot's index object) and "changes"
# (new/changed/unchanged/deleted); a format-1 manifest reads as a full without an index
FORMAT_VERSION = 2


class ManifestError(ValueError):
    pass


def new_snapshot_id(now: float | None = None) -> str:
    """``20261123T101500Z-3fa2c1``: sorts by start time, unique across hosts."""
    t = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
    return t.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def order_key(m: Manifest) -> tuple:
    """Oldest first: by the sequence the snapshots carry; start time only breaks ties
    among snapshots made before there was one."""
    return (m.sequence, m.started, m.snapshot)


@dataclass
class Manifest:
    job: str
    snapshot: str
    host: str
    started: float
    finished: float
    tool_version: str
    compression: dict[str, Any]
    encryption: dict[str, Any] | None
    sources: list[str]
    files: int
    dirs: int
    others: int
    data_bytes: int
    tar_bytes: int
    volumes: list[dict[str, Any]]
    warnings: dict[str, int] = field(default_factory=dict)
    resumes: int = 0
    kind: str = "full"
    base: str | None = None  # the snapshot an incremental builds on
    index: dict[str, Any] | None = None  # {"name", "size", "sha256"} of the index object
    changes: dict[str, int] | None = None  # new/changed/unchanged/deleted non-directories
    # the series' order (1, 2, ...; 0: made before snapshots carried one) and the snapshot
    # before this one: what "latest" and keep_last go by, never the wall clock
    sequence: int = 0
    previous: str | None = None
    chain: dict[str, Any] | None = None  # the volumes carry chain headers (snapshot/chain.py)
    # as loaded (signing.py)
    raw: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    # where the snapshot folder's parent is on the destination (``HOST/SERIES``, or ``SERIES``
    # in the layout before 0.2): set by the catalog when it lists, never stored
    folder: str = field(default="", compare=False, repr=False)

    @property
    def location(self) -> str:
        """The folder (under the destination's root) holding this snapshot's folder."""
        return self.folder or self.job

    @property
    def stored_bytes(self) -> int:
        return (sum(int(v["size"]) for v in self.volumes)
                + (int(self.index["size"]) if self.index else 0))

    @property
    def encrypted(self) -> bool:
        return self.encryption is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "job": self.job,
            "snapshot": self.snapshot,
            "kind": self.kind,
            "base": self.base,
            "host": self.host,
            "started": iso(self.started),
            "finished": iso(self.finished),
            "tool_version": self.tool_version,
            "compression": self.compression,
            "encryption": self.encryption,
            "sources": self.sources,
            "counts": {
                "files": self.files, "dirs": self.dirs, "others": self.others,
                "data_bytes": self.data_bytes, "tar_bytes": self.tar_bytes,
                "stored_bytes": self.stored_bytes, "volumes": len(self.volumes),
            },
            "warnings": self.warnings,
            "resumes": self.resumes,
            "sequence": self.sequence,
            "previous": self.previous,
            **({"chain": self.chain} if self.chain else {}),
            "volumes": self.volumes,
            "index": self.index,
            "changes": self.changes,
        }

    def dumps(self, sign_with: Any = None) -> bytes:
        """The manifest file; signed with ``sign_with`` (an Ed25519 key, signing.py)."""
        doc = self.to_json()
        if sign_with is not None:
            from ..signing import sign

            doc = sign(doc, sign_with)
        return (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode()

    @classmethod
    def loads(cls, data: bytes) -> Manifest:
        try:
            d = json.loads(data)
            if d.get("format") != FORMAT:
                raise ManifestError("not an odbackupd manifest")
            if int(d.get("format_version", 0)) > FORMAT_VERSION:
                raise ManifestError(
                    f"manifest format {d['format_version']} is newer than "
                    "this odbackupd understands"
                )
            if d.get("kind", "full") not in ("full", "incremental"):
                raise ManifestError(f"unknown snapshot kind {d.get('kind')!r}")
            if d.get("kind") == "incremental" and not d.get("base"):
                raise ManifestError("an incremental snapshot without a base")
            c = d["counts"]
            vols = d["volumes"]
            for v in vols:
                for k in ("name", "size", "sha256"):
                    if k not in v:
                        raise ManifestError(f"volume entry without {k!r}")
            return cls(
                job=d["job"], snapshot=d["snapshot"], host=d["host"],
                started=parse_iso(d["started"]), finished=parse_iso(d["finished"]),
                tool_version=d["tool_version"], compression=d["compression"],
                encryption=d["encryption"], sources=list(d["sources"]),
                files=c["files"], dirs=c["dirs"], others=c["others"],
                data_bytes=c["data_bytes"], tar_bytes=c["tar_bytes"], volumes=vols,
                warnings=d.get("warnings", {}), resumes=d.get("resumes", 0),
                kind=d.get("kind", "full"), base=d.get("base"), index=d.get("index"),
                changes=d.get("changes"),
                sequence=int(d.get("sequence") or 0), previous=d.get("previous"),
                chain=d.get("chain"), raw=d,
            )
        except ManifestError:
            raise
        except (ValueError, KeyError, TypeError) as e:
            raise ManifestError(f"malformed manifest: {e}") from e
