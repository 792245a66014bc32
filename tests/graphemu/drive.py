"""The drive model: drives, items, names and paths, quota, driveItem JSON.

No HTTP here. Every function expects the caller to hold ``emu.lock``. Names are looked
up case-insensitively and stored as given; deleted items stay in ``emu.items`` (the
recycle bin) but leave the children index.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .quickxor import QuickXorHash

if TYPE_CHECKING:
    from .emulator import GraphEmulator

FORBIDDEN_PERSONAL = set('/\\*<>?:|"')
FORBIDDEN_BUSINESS = FORBIDDEN_PERSONAL | {"#", "%"}
RESERVED = {".lock", "con", "prn", "aux", "nul", "desktop.ini"} | {
    f"{p}{i}" for p in ("com", "lpt") for i in range(10)}
MAX_PATH = 400
ZERO_QXH = "AAAAAAAAAAAAAAAAAAAAAAAAAAA="


class GraphError(Exception):
    """Raised by model code; graph.py turns it into the service's error response."""

    def __init__(self, status: int, code: str, message: str, inner: str | None = None,
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.inner = status, code, message, inner
        self.headers = headers or []


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def iso_ms(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def parse_iso(text: str) -> float | None:
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?(Z|[+-]00:00)?", text)
    if not m:
        return None
    import calendar
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    return float(calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)))


def hash_file(path: Path, personal: bool) -> dict[str, str]:
    qx = QuickXorHash()
    sha1 = hashlib.sha1() if personal else None
    sha256 = hashlib.sha256() if personal else None
    with open(path, "rb") as f:
        while True:
            block = f.read(8 << 20)
            if not block:
                break
            qx.update(block)
            if personal:
                sha1.update(block)
                sha256.update(block)
    hashes = {"quickXorHash": qx.b64digest()}
    if personal:  # upper-case hex, as observed; never on Business
        hashes["sha1Hash"] = sha1.hexdigest().upper()
        hashes["sha256Hash"] = sha256.hexdigest().upper()
    return hashes


class DriveModel:
    def __init__(self, emu: GraphEmulator) -> None:
        self.emu = emu

    # ------------------------------------------------------------ persistence
    def save_item(self, item: dict) -> None:
        self.emu.store.put("item", item["id"], item)

    def save_drive(self, drive: dict) -> None:
        self.emu.store.put("drive", drive["id"], drive)

    def index(self, item: dict) -> None:
        if item.get("parent") and not item.get("deleted"):
            self.emu.children.setdefault(item["parent"], {})[item["name"].lower()] = item["id"]

    def unindex(self, item: dict) -> None:
        kids = self.emu.children.get(item.get("parent") or "", {})
        if kids.get(item["name"].lower()) == item["id"]:
            del kids[item["name"].lower()]

    # ------------------------------------------------------------ drives
    def create_drive(self, drive_type: str, owner: dict, name: str = "OneDrive") -> dict:
        emu = self.emu
        if drive_type == "personal":
            drive_id = "".join(emu.rng.choice("0123456789abcdef") for _ in range(16))
            if emu.config.drive_id_quirk:
                drive_id = "0" + drive_id[1:]
        else:
            chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
            drive_id = "b!" + "".join(emu.rng.choice(chars) for _ in range(64))
        drive = {
            "id": drive_id, "driveType": drive_type, "name": name, "owner": owner,
            "root": None, "live": 0, "deleted": 0, "versions": 0, "next_item": 101,
            "quota_total": None,
        }
        emu.drives[drive_id] = drive
        now = emu.clock.now()
        root = self.new_item(drive, None, "root", folder=True, now=now)
        drive["root"] = root["id"]
        self.save_drive(drive)
        return drive

    def new_item_id(self, drive: dict) -> str:
        if drive["driveType"] == "personal":
            n = drive["next_item"]
            drive["next_item"] = n + 1
            return f"{drive['id'].upper()}!{n}"
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
        return "01" + "".join(self.emu.rng.choice(alphabet) for _ in range(32))

    def quota(self, drive: dict) -> dict:
        cfg = self.emu.config
        if drive["driveType"] == "documentLibrary" and cfg.site_zero_quota:
            return {"deleted": 0, "remaining": 0, "state": "normal", "total": 0, "used": 0}
        total = drive["quota_total"] if drive["quota_total"] is not None else cfg.quota_total
        used = drive["live"] + drive["versions"]
        if cfg.recycle_bin_counts:
            used += drive["deleted"]
        remaining = max(0, total - used)
        if remaining <= 0:
            state = "exceeded"
        elif remaining < total * 0.01:
            state = "critical"
        elif remaining < total * 0.10:
            state = "nearing"
        else:
            state = "normal"
        return {"deleted": drive["deleted"], "remaining": remaining, "state": state,
                "total": total, "used": used}

    def remaining(self, drive: dict) -> int:
        q = self.quota(drive)
        if q["total"] == 0:  # zero quota = unknown/unenforced (SharePoint libraries)
            return 1 << 62
        return q["remaining"]

    def render_drive(self, drive: dict) -> dict:
        emu = self.emu
        owner = drive["owner"]
        if "site" in owner:
            owner_json = {"group": {"id": owner["site"], "displayName": owner["name"]}}
        else:
            owner_json = {"user": {"id": owner["oid"], "displayName": owner["name"],
                                   "email": owner["upn"]}}
        root = emu.items[drive["root"]]
        out = {
            "id": drive["id"],
            "driveType": drive["driveType"],
            "name": drive["name"],
            "createdDateTime": iso(root["created"]),
            "lastModifiedDateTime": iso(root["modified"]),
            "webUrl": f"{emu.files_url}/drive/{drive['id']}",
            "owner": owner_json,
            "quota": self.quota(drive),
        }
        return out

    # ------------------------------------------------------------ items
    def new_item(self, drive: dict, parent: dict | None, name: str, folder: bool,
                 now: float, fs: dict | None = None) -> dict:
        item = {
            "id": self.new_item_id(drive), "drive": drive["id"], "name": name,
            "parent": parent["id"] if parent else None, "folder": folder, "size": 0,
            "ver": 1, "cver": 1, "created": now, "modified": now,
            "fs_created": now, "fs_modified": now, "hashes": None, "deleted": False,
            "mime": None, "description": None, "special": None,
        }
        if fs:
            self.apply_fs_info(item, fs)
        self.emu.items[item["id"]] = item
        self.index(item)
        self.save_item(item)
        if parent is not None:
            self.touch(parent, now)
        return item

    def apply_fs_info(self, item: dict, fs: dict) -> None:
        for key, field in (("createdDateTime", "fs_created"),
                           ("lastModifiedDateTime", "fs_modified")):
            if key in fs:
                t = parse_iso(str(fs[key]))
                if t is None:
                    raise GraphError(400, "invalidRequest",
                                     f"Invalid value for fileSystemInfo.{key}")
                item[field] = t

    def touch(self, item: dict, now: float) -> None:
        item["ver"] += 1
        item["cver"] += 1
        item["modified"] = now
        self.save_item(item)

    def get(self, item_id: str) -> dict | None:
        item = self.emu.items.get(item_id)
        if item is None or item.get("deleted"):
            return None
        return item

    def child(self, parent: dict, name: str) -> dict | None:
        item_id = self.emu.children.get(parent["id"], {}).get(name.lower())
        return self.emu.items.get(item_id) if item_id else None

    def children_of(self, parent: dict) -> list[dict]:
        ids = self.emu.children.get(parent["id"], {}).values()
        return [self.emu.items[i] for i in ids]

    def path_names(self, item: dict) -> list[str]:
        names = []
        while item.get("parent"):
            names.append(item["name"])
            item = self.emu.items[item["parent"]]
        return names[::-1]

    def resolve(self, base: dict, segments: list[str]) -> dict | None:
        item = base
        for seg in segments:
            if not item["folder"]:
                return None
            item = self.child(item, seg)
            if item is None:
                return None
        return item

    def ensure_folders(self, base: dict, segments: list[str], create: bool) -> dict:
        """The folder at base/segments, creating missing ones when ``create``."""
        drive = self.emu.drives[base["drive"]]
        item = base
        for seg in segments:
            nxt = self.child(item, seg)
            if nxt is None:
                if not create:
                    raise GraphError(404, "itemNotFound", "The resource could not be found.")
                self.check_name(seg)
                nxt = self.new_item(drive, item, seg, folder=True, now=self.emu.clock.now())
            elif not nxt["folder"]:
                raise GraphError(409, "nameAlreadyExists",
                                 f"A file named '{seg}' is in the way of the path.")
            item = nxt
        return item

    def is_under(self, item: dict, ancestor: dict) -> bool:
        while item is not None:
            if item["id"] == ancestor["id"]:
                return True
            item = self.emu.items.get(item["parent"]) if item.get("parent") else None
        return False

    def check_name(self, name: str) -> None:
        business = self.emu.config.mode == "business"
        bad = FORBIDDEN_BUSINESS if business else FORBIDDEN_PERSONAL
        problem = None
        if not name or name in (".", ".."):
            problem = "The name is empty or invalid."
        elif any(c in bad for c in name) or any(ord(c) < 32 for c in name):
            problem = "The provided name contains invalid characters."
        elif name != name.strip(" "):
            problem = "The name cannot begin or end with a space."
        elif name.endswith("."):
            problem = "The name cannot end with a period."
        elif (name.lower() in RESERVED or name.lower().split(".")[0] in RESERVED - {".lock"}
              or name.startswith("~$") or "_vti_" in name.lower()):
            problem = "The name is reserved."
        elif business and name.startswith("~"):
            problem = "The name cannot begin with a tilde."
        if problem:
            raise GraphError(400, "invalidRequest", problem, "invalidName")

    def check_path_length(self, parent: dict, name: str) -> None:
        path = "/".join(self.path_names(parent) + [name])
        if len(path) >= MAX_PATH:
            raise GraphError(400, "invalidRequest", "The path is too long.", "pathIsTooLong")

    def unique_name(self, parent: dict, name: str) -> str:
        """'X' -> 'X 1', 'a.txt' -> 'a 1.txt' (conflictBehavior=rename)."""
        if self.child(parent, name) is None:
            return name
        stem, dot, ext = name.rpartition(".")
        if not dot or not stem:
            stem, ext, dot = name, "", ""
        n = 1
        while True:
            candidate = f"{stem} {n}{dot}{ext}"
            if self.child(parent, candidate) is None:
                return candidate
            n += 1

    def delete(self, item: dict, permanent: bool = False) -> None:
        """Move item (and everything below) to the recycle bin, or drop it."""
        emu = self.emu
        drive = emu.drives[item["drive"]]
        now = emu.clock.now()
        self.unindex(item)
        stack = [item]
        while stack:
            it = stack.pop()
            if it["folder"]:
                stack.extend(self.children_of(it))
            elif not it.get("deleted"):
                drive["live"] -= it["size"]
                if not permanent:
                    drive["deleted"] += it["size"]
            it["deleted"] = True
            it["deleted_at"] = now
            if permanent:
                emu.items.pop(it["id"], None)
                emu.store.delete("item", it["id"])
                emu.store.blob_path(it["id"]).unlink(missing_ok=True)
            else:
                self.save_item(it)
        if item.get("parent") and item["parent"] in emu.items:
            self.touch(emu.items[item["parent"]], now)
        self.save_drive(drive)

    def empty_recycle_bin(self, drive: dict) -> None:
        emu = self.emu
        for it in [i for i in emu.items.values()
                   if i["drive"] == drive["id"] and i.get("deleted")]:
            emu.items.pop(it["id"], None)
            emu.store.delete("item", it["id"])
            emu.store.blob_path(it["id"]).unlink(missing_ok=True)
        drive["deleted"] = 0
        self.save_drive(drive)

    def set_content(self, item: dict, src: Path, size: int, hashes: dict) -> None:
        """Give ``item`` the bytes in ``src`` (moved into the blob store)."""
        emu = self.emu
        drive = emu.drives[item["drive"]]
        old = item["size"] if item.get("hashes") is not None else 0
        drive["live"] += size - old
        if old and emu.config.business_versions and drive["driveType"] != "personal":
            drive["versions"] += old
        emu.store.move_to_blob(src, item["id"])
        item["size"] = size
        item["hashes"] = hashes
        item["mime"] = mimetypes.guess_type(item["name"])[0] or "application/octet-stream"
        self.touch(item, emu.clock.now())
        self.save_drive(drive)

    def size_delta(self, drive: dict, existing: dict | None, new_size: int) -> int:
        old = existing["size"] if existing is not None and not existing["folder"] else 0
        if drive["driveType"] != "personal" and self.emu.config.business_versions:
            old = 0  # the old version keeps its bytes
        return new_size - old

    # ------------------------------------------------------------ JSON
    def etag(self, item: dict) -> str:
        guid = self._guid(item)
        return f'"{{{guid}}},{item["ver"]}"'

    def ctag(self, item: dict) -> str:
        return f'"c:{{{self._guid(item)}}},{item["cver"]}"'

    @staticmethod
    def _guid(item: dict) -> str:
        h = hashlib.sha1(item["id"].encode()).hexdigest().upper()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"

    def parent_path(self, drive: dict, parent: dict) -> str:
        prefix = "/drive/root:" if drive["driveType"] == "personal" else \
            f"/drives/{drive['id']}/root:"
        names = self.path_names(parent)
        if not names:
            return prefix
        return prefix + "/" + "/".join(quote(n, safe="!$&'()*+,;=@ ") for n in names)

    def render(self, item: dict, download_url: str | None = None) -> dict:
        emu = self.emu
        drive = emu.drives[item["drive"]]
        owner = drive["owner"]
        who = {"user": {"displayName": owner.get("name"), "id": owner.get("oid",
                                                                          owner.get("site"))}}
        out: dict[str, Any] = {
            "id": item["id"],
            "name": item["name"],
            "size": item["size"],
            "eTag": self.etag(item),
            "cTag": self.ctag(item),
            "createdDateTime": iso(item["created"]),
            "lastModifiedDateTime": iso(item["modified"]),
            "webUrl": f"{emu.files_url}/view/{quote(item['id'])}",
            "createdBy": who,
            "lastModifiedBy": who,
            "fileSystemInfo": {"createdDateTime": iso(item["fs_created"]),
                               "lastModifiedDateTime": iso(item["fs_modified"])},
        }
        drive_id = drive["id"]
        if emu.config.drive_id_quirk and drive["driveType"] == "personal":
            drive_id = drive_id.lstrip("0").upper()
        if item.get("parent"):
            parent = emu.items[item["parent"]]
            out["parentReference"] = {"driveId": drive_id, "driveType": drive["driveType"],
                                      "id": parent["id"],
                                      "path": self.parent_path(drive, parent)}
            if parent.get("parent") is None:
                pass
        else:
            out["parentReference"] = {"driveId": drive_id, "driveType": drive["driveType"]}
            out["root"] = {}
        if item["folder"]:
            out["folder"] = {"childCount": len(emu.children.get(item["id"], {}))}
            out["size"] = self.folder_size(item)
            if item.get("special"):
                out["specialFolder"] = {"name": item["special"]}
        else:
            file_facet: dict[str, Any] = {"mimeType": item["mime"] or
                                          "application/octet-stream"}
            if item.get("hashes"):
                file_facet["hashes"] = dict(item["hashes"])
            out["file"] = file_facet
            if download_url:
                out["@microsoft.graph.downloadUrl"] = download_url
        if item.get("description"):
            out["description"] = item["description"]
        return out

    def folder_size(self, folder: dict) -> int:
        total = 0
        stack = [folder]
        while stack:
            it = stack.pop()
            for ch in self.children_of(it):
                if ch["folder"]:
                    stack.append(ch)
                else:
                    total += ch["size"]
        return total
