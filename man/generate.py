#!/usr/bin/env python3
"""Builds the man pages (roff) from their sources, at package build time.

The parts that would drift if written by hand are generated from the code they describe:
odbackupd.toml(5)'s key reference from :func:`odbackupd.config.schema_reference` (the same
schema that validates the file and writes the sample), odctl(1)'s command reference from
odctl's argparse tree, and odbackupd-dbus(5)'s interface reference from the committed
introspection XML when there is one. Everything else is prose in ``*.in`` templates,
where a line ``.\\" @NAME@`` marks the place of a generated block.

    python3 man/generate.py OUTDIR      # writes OUTDIR/odbackupd.8 … odbackupd-dbus.5
"""
from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

PAGES = ["odbackupd.8", "odctl.1", "odbackupd.toml.5", "odbackupd-dbus.5", "odbackupd-intake.8"]
SECTION_TITLES = {
    "daemon": "[daemon]",
    "destination": "[destination.NAME]",
    "account": "[account.NAME]",
    "job": "[job.NAME]",
    "notify": "[notify.NAME]",
    "intake": "[intake]",
    "intake.user": "[intake.user.NAME]",
}


def esc(text: str) -> str:
    """Text safe inside a roff line: backslashes, leading dots/quotes, dashes in options."""
    text = text.replace("\\", "\\e")
    if text[:1] in (".", "'"):
        text = "\\&" + text
    return text


def keys_block() -> list[str]:
    from odbackupd.config import schema_reference

    out: list[str] = []
    section = None
    for k in schema_reference():
        if k.section != section:
            section = k.section
            out += [".SS " + SECTION_TITLES.get(section, f"[{section}]")]
        out += [".TP", f"\\fB{esc(k.name)}\\fR (\\fI{esc(k.type)}\\fR)"]
        out += [esc(k.description)]
        facts = []
        if k.required:
            facts.append("Required.")
        if k.default is not None:
            facts.append(f"Default: {esc(k.default)}.")
        facts.append(f"Example: \\fB{esc(k.name)} = {esc(k.example)}\\fR")
        out += [".br", " ".join(facts)]
    return out


def _visible_subcommands(
        parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser, str]]:
    out = []
    for action in parser._actions:  # argparse has no public accessor for the tree
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                if name in helps:  # aliases are not listed twice
                    out.append((name, sub, helps[name]))
    return out


def _option_lines(parser: argparse.ArgumentParser, skip: set[str]) -> list[str]:
    out: list[str] = []
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction) or a.help == argparse.SUPPRESS:
            continue
        if not a.option_strings:
            continue
        if set(a.option_strings) & skip:
            continue
        flags = ", ".join(f"\\fB{esc(o).replace('-', chr(92) + '-')}\\fR" for o in a.option_strings)
        if a.nargs != 0:
            flags += f" \\fI{esc(a.metavar or a.dest.upper())}\\fR"
        out += [".TP", flags, esc(a.help or "")]
    return out


def _positionals(parser: argparse.ArgumentParser) -> str:
    words = []
    for a in parser._actions:
        if a.option_strings or isinstance(a, argparse._SubParsersAction):
            continue
        w = f"\\fI{esc(a.metavar or a.dest).upper()}\\fR"
        words.append(f"[{w}]" if a.nargs in ("?", "*") else w)
    return " ".join(words)


def commands_block() -> list[str]:
    from odctl.cli import build_parser
    from odctl.dispatch import how_it_runs

    top = build_parser()
    common = {o for a in top._actions for o in a.option_strings}
    out: list[str] = [".SH OPTIONS"] + _option_lines(top, set())
    out += [".SH COMMANDS", "Every command also takes the options above."]

    def walk(prefix: str, parser: argparse.ArgumentParser) -> None:
        nonlocal out
        for name, sub, help_ in _visible_subcommands(parser):
            full = f"{prefix} {name}".strip()
            nested = _visible_subcommands(sub)
            if nested:
                walk(full, sub)
                continue
            pos = _positionals(sub)
            out += [".SS " + f"odctl {full}" + (f" {pos}" if pos else "")]
            text = sub.description or (help_[:1].upper() + help_[1:] + "." if help_ else "")
            out += [esc(f"{text} {how_it_runs(sub)}")]
            opts = _option_lines(sub, common)
            if opts:
                out += [".RS"] + opts + [".RE"]

    walk("", top)
    return [line for line in out if line != ""]


def exit_codes_block() -> list[str]:
    """odctl's exit codes from the table `odctl --help` prints (odbackupd/bus/names.py)."""
    from odbackupd.bus.names import EXIT_CODES

    out = [".SH EXIT STATUS"]
    for code, text in EXIT_CODES.items():
        out += [".TP", f".B {code}", esc(text[:1].upper() + text[1:]) + "."]
    return out


def errors_block() -> list[str]:
    """The D-Bus error names, each with odctl's exit code, from the one table
    (odbackupd/bus/names.py ERRORS), as the daemon sends them."""
    from odbackupd.bus.names import ERROR_PREFIX, ERRORS

    out = [".SH ERRORS", "Errors are named", f".BI {ERROR_PREFIX} NAME :"]
    for e in ERRORS.values():
        text = f"{e.meaning[:1].upper()}{e.meaning[1:]} (odctl exits {e.exit})."
        out += [".TP", f".B {e.code}", esc(text)]
    return out


def _introspection_xml() -> Path | None:
    for pattern in ("odbackupd/bus/*.xml", "dbus/*.xml"):
        found = sorted(ROOT.glob(pattern))
        if found:
            return found[0]
    return None


def _dbus_signature_args(node: ET.Element) -> str:
    parts = []
    for arg in node.findall("arg"):
        d = arg.get("direction", "in" if node.tag == "method" else "out")
        n = arg.get("name", "")
        parts.append(f"{'' if node.tag == 'signal' else d + ' '}{arg.get('type')} {n}".strip())
    return ", ".join(parts)


def dbus_block() -> list[str]:
    xml = _introspection_xml()
    if xml is None:
        return [
            "The introspection XML is not part of this build; ask the running daemon:",
            ".PP",
            ".EX",
            "busctl introspect org.odbackupd.ODBackup1 /org/odbackupd/ODBackup1",
            ".EE",
        ]
    out: list[str] = [
        f"Generated from {esc(xml.name)}, which a test compares with the live daemon."]
    root = ET.parse(xml).getroot()
    for iface in root.iter("interface"):
        name = iface.get("name", "")
        if name.startswith("org.freedesktop.DBus."):
            continue
        out += [".SS " + esc(name)]
        first = True
        for kind, title in (("method", "Methods"), ("property", "Properties"),
                            ("signal", "Signals")):
            items = iface.findall(kind)
            if not items:
                continue
            out += ([] if first else [".PP"]) + [f"\\fI{title}\\fR"]
            first = False
            for it in items:
                if kind == "property":
                    head = (f"\\fB{esc(it.get('name', ''))}\\fR "
                            f"\\fI{esc(it.get('type', ''))}\\fR ({it.get('access', 'read')})")
                else:
                    head = f"\\fB{esc(it.get('name', ''))}\\fR({esc(_dbus_signature_args(it))})"
                doc = " ".join(
                    (d.text or "").strip() for d in it.iter()
                    if d.tag.endswith("docstring")
                    or (d.tag == "annotation" and d.get("name", "").endswith("DocString"))
                )
                out += [".TP", head] + ([esc(doc)] if doc else [".br"])
    return out


def render(page: str) -> str:
    template = (HERE / f"{page}.in").read_text(encoding="utf-8")
    blocks = {"@KEYS@": keys_block, "@COMMANDS@": commands_block,
              "@EXIT_CODES@": exit_codes_block, "@DBUS@": dbus_block, "@ERRORS@": errors_block}
    out: list[str] = []
    for line in template.splitlines():
        marker = line.removeprefix('.\\" ').strip()
        if marker in blocks:
            out += blocks[marker]()
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir", type=Path)
    args = ap.parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)
    for page in PAGES:
        (args.outdir / page).write_text(render(page), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
