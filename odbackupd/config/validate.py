"""load -> normalise -> validate -> cross-field checks -> Config.

Every stage collects problems instead of stopping at the first, so one run of
``odbackupd --check-config`` shows everything that is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .checks import Table, cross_check
from .destkinds import kinds as destination_kinds
from .errors import ConfigError, KeyPath, Problem, format_key
from .intake import check_intake
from .kinds import Invalid, check_name, describe_type, suggest, toml_literal
from .load import Document, read_config_files, read_files
from .notify_schema import NotifyConfig, check_monitoring
from .schema import (
    AccountConfig,
    Config,
    DaemonConfig,
    IntakeConfig,
    IntakeUserConfig,
    JobConfig,
    Section,
    destination_config,
    is_required,
    schema_fields,
    sections,
)

__all__ = ["default_config", "load_config", "load_config_text"]


def _by_name() -> dict[str, Section]:
    return {s.name: s for s in sections()}


def _top() -> dict[str, Section]:
    return {s.path[0]: s for s in sections() if len(s.path) == 1}  # [intake.user.*] is in [intake]


def _raw(doc: Document, section: Section) -> Any:
    """The raw value at a section's path ({} when absent or when a parent is not a table)."""
    raw: Any = doc.data
    for part in section.path:
        raw = raw.get(part, {}) if isinstance(raw, dict) else {}
    return raw


def _subsections(section: Section) -> set[str]:
    """Keys of *section* that are sections of their own ("user" in [intake])."""
    return {s.path[-1] for s in sections() if s.path[:-1] == section.path}


class _Reporter:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []

    def _problem(self, path: KeyPath, message: str) -> Problem:
        file, line = self.doc.where(path)
        return Problem(file, line, format_key(path), message)

    def error(self, path: KeyPath, message: str) -> None:
        self.problems.append(self._problem(path, message))

    def warn(self, path: KeyPath, message: str) -> None:
        self.warnings.append(self._problem(path, message))

    def sorted(self, problems: list[Problem]) -> list[Problem]:
        order = {f: i for i, f in enumerate(self.doc.files)}
        return sorted(problems, key=lambda p: (order.get(p.file, -1), p.line or 0))


def _unknown_key(section: Section, path: KeyPath, key: str, value: Any) -> str:
    fields = schema_fields(section.cls)
    message = f"unknown key '{key}'"
    hint = suggest(key, list(fields))
    if hint:
        return message + hint
    homes = [s for s in sections() if s.name != section.name and key in schema_fields(s.cls)]
    if homes:
        where = " or ".join(f"[{s.name}.NAME]" if s.named else f"[{s.name}]" for s in homes)
        return f"{message} (it is a key of {where})"
    if section.named and isinstance(value, dict) and set(value) & set(fields):
        # [job.my.job] makes a job "my" with a table "job": a dotted name needs quotes
        dotted = f"{path[-1]}.{key}"
        return f"{message} (to name a {section.name} '{dotted}', quote it: " + (
            f'[{section.name}."{dotted}"])'
        )
    return message


def _convert_table(r: _Reporter, section: Section, body: dict, path: KeyPath) -> Table:
    """Check each key on its own: known, of the right type, in range."""
    fields = schema_fields(section.cls)
    values: dict[str, Any] = {}
    body = {k: v for k, v in body.items() if k not in _subsections(section)}
    for key, raw in body.items():
        f = fields.get(key)
        if f is None:
            r.error((*path, key), _unknown_key(section, path, key, raw))
            continue
        try:
            values[key] = f.metadata["kind"].convert(raw)
        except Invalid as e:
            r.error((*path, key, *e.at), e.message)
    for key, f in fields.items():
        if is_required(f) and key not in body:
            example = toml_literal(f.metadata["example"])
            r.error(path, f"missing required key '{key}' (for example: {key} = {example})")
    return Table(path, values, set(body))


def _section_tables(r: _Reporter, section: Section, raw: Any) -> dict[str, Table]:
    """The named tables of one section ([job.NAME], …), each checked on its own."""
    path = section.path
    if not isinstance(raw, dict):
        if isinstance(raw, list):
            r.error(path, f"write each as a table [{section.name}.NAME], not [[{section.name}]]")
        else:
            r.error(path, f"expected tables [{section.name}.NAME], got {describe_type(raw)}")
        return {}
    tables = {}
    fields = schema_fields(section.cls)
    for name, body in raw.items():
        p = (*path, name)
        if not isinstance(body, dict):
            if name in fields:
                r.error(
                    p,
                    f"'{name}' must go in a named table: write [{section.name}.NAME] "
                    f"(e.g. [{section.name}.{_sample_name(section)}]) and put it there",
                )
            else:
                r.error(p, f"expected a table [{section.name}.{name}], got {describe_type(body)}")
            continue
        problem = check_name(name)
        if problem:
            r.error(p, problem)
        tables[name] = _convert_table(r, section, body, p)
    return tables


def _sample_name(section: Section) -> str:
    return section.samples[0][0] if section.samples else "NAME"


def _build(table: Table, cls: type, name: str | None = None) -> Any:
    kwargs = dict(table.values)
    if name is not None:
        kwargs["name"] = name
    return cls(**kwargs)


def validate_document(doc: Document, path: Path | None, *, check_sources: bool) -> Config:
    """Check a merged document and build the Config, or raise ConfigError with everything."""
    r = _Reporter(doc)
    by_name, top_sections = _by_name(), _top()
    for top in doc.data:
        if top not in top_sections:
            hint = suggest(top, list(top_sections)) or (
                " (sections are " + ", ".join(f"[{s}]" for s in top_sections) + ")"
            )
            r.error((top,), f"unknown section '{top}'{hint}")

    raw_daemon = doc.data.get("daemon", {})
    if isinstance(raw_daemon, dict):
        daemon = _convert_table(r, by_name["daemon"], raw_daemon, ("daemon",))
    else:
        r.error(("daemon",), f"expected a table [daemon], got {describe_type(raw_daemon)}")
        daemon = Table(("daemon",), {}, set())
    named = {s.name: _section_tables(r, s, _raw(doc, s)) for s in by_name.values() if s.named}
    raw_intake = doc.data.get("intake", {})
    if isinstance(raw_intake, dict):
        intake = _convert_table(r, by_name["intake"], raw_intake, ("intake",))
    else:
        r.error(("intake",), f"expected a table [intake], got {describe_type(raw_intake)}")
        intake = Table(("intake",), {}, set())
    check_intake(r, named["intake.user"], named["job"])
    cross_check(
        r,
        daemon,
        named["destination"],
        named["account"],
        named["job"],
        check_sources=check_sources,
    )
    check_monitoring(r, daemon, named["notify"], named["job"], check_files=check_sources)
    if r.problems:
        raise ConfigError(r.sorted(r.problems))

    dest_cls = destination_config()
    destinations = {  # the built-in ones ("local") unless configured
        k.name: dest_cls(k.name, k.name, **k.builtin)
        for k in destination_kinds()
        if k.builtin is not None and k.name not in named["destination"]
    }
    destinations.update({n: _build(t, dest_cls, n) for n, t in named["destination"].items()})
    return Config(
        path=path,
        daemon=_build(daemon, DaemonConfig),
        destinations=destinations,
        accounts={n: _build(t, AccountConfig, n) for n, t in named["account"].items()},
        jobs={n: _build(t, JobConfig, n) for n, t in named["job"].items()},
        embedded=frozenset(n for n in destinations if n not in named["destination"]),
        intake=IntakeConfig(**intake.values, users={
            n: _build(t, IntakeUserConfig, n) for n, t in named["intake.user"].items()}),
        warnings=tuple(str(w) for w in r.sorted(r.warnings)),
        notify={n: _build(t, NotifyConfig, n) for n, t in named["notify"].items()},
    )


def load_config(path: Path, *, check_sources: bool = False) -> Config:
    """Read *path* and its drop-ins (``<path>.d/*.toml``, in name order) and validate them."""
    path = Path(path)
    doc, problems = read_config_files(path)
    if problems:
        raise ConfigError(problems)
    return validate_document(doc, path, check_sources=check_sources)


def load_config_text(
    text: str, filename: str = "<string>", *, check_sources: bool = False
) -> Config:
    """Validate one TOML text (no drop-ins); *filename* is what problems are reported under."""
    doc, problems = read_files([(filename, text)])
    if problems:
        raise ConfigError(problems)
    return validate_document(doc, None, check_sources=check_sources)


def default_config() -> Config:
    """The configuration of a machine without a config file: defaults, no jobs."""
    return load_config_text("", "<default>")
