"""The commented sample configuration, generated from the schema."""

from __future__ import annotations

import textwrap

from .kinds import toml_literal
from .schema import KeyDoc, Section, schema_reference, sections

__all__ = ["sample_config"]

WIDTH = 88

_HEADER = """\
odbackupd configuration: /etc/odbackupd/odbackupd.toml

Drop-ins in /etc/odbackupd/odbackupd.toml.d/*.toml are read after this file, in
name order. A drop-in may add jobs, destinations and accounts, or set keys of a table
defined before it (a key set again replaces the earlier value). Check the result with
`odbackupd --check-config` or `odctl config check`; `systemctl reload odbackupd`
applies it, and keeps the running configuration if the new one is invalid.

Sizes are a number of bytes or a string with a unit: "64MiB", "20GiB", "1.5GiB",
"500M" (K, M, G, T are powers of 1000; KiB, MiB, GiB, TiB powers of 1024).
Durations are seconds or a string with units: "90s", "10min", "2h", "1d", "1h30min".

Keys that are commented out show an example; the default is noted above each.
This file is generated from the schema (odbackupd/config/schema.py)."""


def _comment(text: str, indent: str = "# ") -> list[str]:
    return [
        (indent + line).rstrip()
        for para in text.split("\n")
        for line in (textwrap.wrap(para, WIDTH - len(indent)) or [""])
    ]


def _key_lines(doc: KeyDoc, active: str | None) -> list[str]:
    """A key with its description; *active* is the TOML value to set, else it is commented."""
    if doc.required:
        default = "Required."
    elif doc.default is None:
        default = "Default: unset."
    else:
        default = f"Default: {doc.default}."
    lines = _comment(doc.description) + _comment(f"Type: {doc.type}. {default}")
    if active is not None:
        return [*lines, f"{doc.name} = {active}"]
    return [*lines, f"#{doc.name} = {doc.example}"]


def _section_lines(section: Section, docs: list[KeyDoc]) -> list[str]:
    title = f"[{section.name}.NAME]" if section.named else f"[{section.name}]"
    out = ["", "", f"# ==== {title} " + "=" * (WIDTH - 8 - len(title)), *_comment(section.doc)]
    for i, (name, keys, comment) in enumerate(section.samples):
        header = f"[{section.name}.{name}]" if section.named else f"[{section.name}]"
        if comment:
            out += ["", *_comment(comment)]
        elif i:
            out.append("")
        out.append(header)
        for doc in docs:
            if i:  # further example tables: only what they set
                if doc.name in keys:
                    out.append(f"{doc.name} = {toml_literal(keys[doc.name])}")
                continue
            if doc.name in keys:
                active = toml_literal(keys[doc.name])
            else:  # a required key stays active (with its example) so the sample loads
                active = doc.example if doc.required else None
            out += ["", *_key_lines(doc, active)]
    return out


def sample_config() -> str:
    """A commented configuration showing every key; it loads without errors as it is."""
    reference = schema_reference()
    lines = [f"# {line}".rstrip() for line in _HEADER.splitlines()]
    for section in sections():
        lines += _section_lines(section, [d for d in reference if d.section == section.name])
    return "\n".join(lines) + "\n"
