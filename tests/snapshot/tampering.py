"""What someone who can write to a destination (a leaked OneDrive token, a rogue tenant
admin) does to a snapshot: files moved, dropped, copied, and the plain-JSON manifest fixed
up to match, so that every size and hash in it is right. Used by the local and the
OneDrive tampering suites; each operation works on a dict ``{stored name: bytes}`` and the
manifest's JSON, and the suites write the result back to their destination."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from odbackupd import signing
from odbackupd.hashes import QuickXorHash

Files = dict[str, bytes]


def _qx(b: bytes) -> str:
    q = QuickXorHash()
    q.update(b)
    return q.b64digest()


def fix_up(doc: dict, files: Files, order: list[str]) -> dict:
    """The manifest an attacker writes: volumes ``order`` with their true sizes and
    hashes, the counts to match, and no signature (they do not have the key)."""
    doc = dict(doc)
    doc.pop("signature", None)
    doc["volumes"] = [{"name": n, "size": len(files[n]),
                       "sha256": hashlib.sha256(files[n]).hexdigest(),
                       "quickxor": _qx(files[n])} for n in order]
    doc["counts"] = dict(doc["counts"], volumes=len(order),
                         stored_bytes=sum(len(files[n]) for n in order))
    return doc


def vols(doc: dict) -> list[str]:
    return [v["name"] for v in doc["volumes"]]


# Each case: (files, manifest, context) -> (files, manifest), and the words the refusal must hold.
def drop_middle(files: Files, doc: dict, ctx: dict) -> tuple[Files, dict]:
    names = vols(doc)
    del files[names[1]]
    return files, fix_up(doc, files, names[:1] + names[2:])


def drop_middle_renumbered(files: Files, doc: dict, ctx: dict) -> tuple[Files, dict]:
    names = vols(doc)
    kept = [files[n] for n in names[:1] + names[2:]]
    others = {n: b for n, b in files.items() if n not in names}  # the index, RESTORE.txt: untouched
    # kept is one shorter than names: the last name goes unused, so not strict
    files = {**others, **{n: b for n, b in zip(names, kept, strict=False)}}
    return files, fix_up(doc, files, names[: len(kept)])


def drop_last(files: Files, doc: dict, ctx: dict) -> tuple[Files, dict]:
    names = vols(doc)
    del files[names[-1]]
    return files, fix_up(doc, files, names[:-1])


def swap(files: Files, doc: dict, ctx: dict) -> tuple[Files, dict]:
    names = vols(doc)
    files[names[1]], files[names[2]] = files[names[2]], files[names[1]]
    return files, fix_up(doc, files, names)


def reorder(files: Files, doc: dict, ctx: dict) -> tuple[Files, dict]:
    names = vols(doc)
    return files, fix_up(doc, files, [names[0], names[2], names[1], *names[3:]])


def replay_same(files: Files, doc: dict, ctx: dict) -> tuple[Files, dict]:
    names = vols(doc)
    files[names[2]] = files[names[1]]
    return files, fix_up(doc, files, names)


def replay_other(files: Files, doc: dict, ctx: dict) -> tuple[Files, dict]:
    names = vols(doc)
    files[names[1]] = ctx["other"][names[1]]  # the same place in another snapshot of the job
    return files, fix_up(doc, files, names)


def plain_under_age(files: Files, doc: dict, ctx: dict) -> tuple[Files, dict]:
    plain = ctx["plain"]  # an unencrypted snapshot's volumes, stored under the .age names
    names = [n + ".age" for n in sorted(plain)]
    files = {n: plain[n[: -len(".age")]] for n in names}
    return files, fix_up(doc, files, names)


def unencrypted(files: Files, doc: dict, ctx: dict) -> tuple[Files, dict]:
    plain = ctx["plain"]
    files = dict(plain)
    doc = dict(doc, encryption=None)
    return files, fix_up(doc, files, sorted(plain))


def other_recipient(files: Files, doc: dict, ctx: dict) -> tuple[Files, dict]:
    enc = dict(doc["encryption"], recipients=["0123456789abcdef"])
    return files, fix_up(dict(doc, encryption=enc), files, vols(doc))


CASES: dict[str, tuple[Callable, str]] = {
    "drop-middle": (drop_middle, "stands at place 2"),
    "drop-middle-renumbered": (drop_middle_renumbered, "stands at place 2"),
    "drop-last": (drop_last, "without its end marker"),
    "swap": (swap, "stands at place 2"),
    "reorder": (reorder, "stands at place 2"),
    "replay-same-snapshot": (replay_same, "stands at place 3"),
    "replay-other-snapshot": (replay_other, "a volume replayed from another snapshot"),
    "plain-under-age": (plain_under_age,
                        "age file, though the manifest says the snapshot is encrypted"),
}

# refused from the manifest alone, before anything is fetched (the job has recipients)
POLICY_CASES: dict[str, tuple[Callable, str]] = {
    "unencrypted-manifest": (unencrypted, "is not encrypted, but job t encrypts"),
    "other-recipient": (other_recipient, "not among job t's recipients"),
}


# -- signatures ------------------------------------------------------------------------------------
def resign_other_key(doc: dict) -> dict:
    return signing.sign({k: v for k, v in doc.items() if k != "signature"},
                        Ed25519PrivateKey.generate())


def unsign(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "signature"}


def alter_signed(doc: dict) -> dict:
    return dict(doc, counts=dict(doc["counts"], files=doc["counts"]["files"] + 1))


SIGNATURE_CASES: dict[str, tuple[Callable, str]] = {
    "signed-by-another-key": (resign_other_key, "not by the trusted key"),
    "unsigned": (unsign, "is not signed"),
    "altered-after-signing": (alter_signed, "does not match the manifest"),
}


def dumps(doc: dict) -> bytes:
    return (json.dumps(doc, indent=2) + "\n").encode()
