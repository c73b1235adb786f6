"""Stock journeys for hospitals to adapt: copy one under a new name, and list how a copy differs.

A copy is the stock file's text (its comments, order and wording kept) with a new ``name`` and an
``origin: {journey, version}`` line, plus the questionnaires its survey steps use, written into the
hospital's journeys folder; :func:`differences` compares the copy with the stock journey as
definitions (header, templates, steps by id, questionnaires), so reformatting a file changes nothing.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from carepath.definition.journey_files import read_journey_text, step_to_dict
from carepath.definition.journey_schema import SCHEMA_FILE, modeline, schema_text
from carepath.definition.model import Journey, Survey

__all__ = ["CopyError", "Copied", "Difference", "stock_journey_files", "copy_journey_text", "copy_stock_journey",
           "differences", "questionnaire_files"]

QUESTIONNAIRES = "questionnaires"
_NAME_LINE = re.compile(r"^name:[ \t]*\S.*$", re.M)
_ORIGIN_LINE = re.compile(r"^origin:.*\n(?:[ \t]+.*\n)*", re.M)
_MODELINE = re.compile(r"^#\s*yaml-language-server:.*\n", re.M)


class CopyError(ValueError):
    """A copy that cannot be made: an unknown stock journey, a taken name, a file already there."""


@dataclass(frozen=True)
class Copied:
    """What :func:`copy_stock_journey` wrote."""

    journey: Path
    questionnaires: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)  # questionnaires already there (and different): left alone
    schema: Path | None = None


@dataclass(frozen=True)
class Difference:
    """One way a copy differs from its stock journey: ``what`` (journey, template, step, questionnaire),
    its ``name``, ``change`` (added, removed, changed) and the lines that show it."""

    what: str
    name: str
    change: str
    lines: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def stock_journey_files() -> dict[str, Path]:
    """The stock journeys by name: every YAML file a plugin's ``carepath_journeys`` hook provides
    (carepath's own ``carepath.journeys`` among them)."""
    from carepath.definition.journey_files import read_journey_file
    from carepath.plugins.manager import get_plugin_manager

    found: dict[str, Path] = {}
    for batch in get_plugin_manager().hook.carepath_journeys():
        for item in batch or []:
            if isinstance(item, (str, Path)):
                journey, _ = read_journey_file(Path(item), known_templates=None)
                if journey is not None:
                    found[journey.name] = Path(item)
    return found


def questionnaire_files(folder: Path) -> dict[str, Path]:
    """The FHIR Questionnaire files in ``folder/questionnaires`` by questionnaire name (``name``, else ``id``)."""
    found: dict[str, Path] = {}
    for path in sorted((folder / QUESTIONNAIRES).glob("*.json")):
        try:
            resource = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        name = resource.get("name") or resource.get("id") if isinstance(resource, dict) else None
        if isinstance(name, str):
            found[name] = path
    return found


def _surveys(journey: Journey) -> list[str]:
    return sorted({step.action.survey for step in journey.steps if isinstance(step.action, Survey)})


def copy_journey_text(text: str, stock: Journey, new_name: str) -> str:
    """The stock file's text renamed to ``new_name``, with an ``origin`` line after the name and the schema
    modeline on top; everything else as the stock file has it."""
    if not _NAME_LINE.search(text):
        raise CopyError(f"stock journey {stock.name}: no top-level 'name:' line to rename")
    text = _ORIGIN_LINE.sub("", text)
    origin = f"origin: {{journey: {stock.name}, version: '{stock.version}'}}"
    text = _NAME_LINE.sub(lambda _: f"name: {new_name}\n{origin}", text, count=1)
    return modeline() + "\n" + _MODELINE.sub("", text)


def copy_stock_journey(stock_path: Path, new_name: str, folder: Path) -> Copied:
    """Copy the stock journey at ``stock_path`` into ``folder`` as ``new_name``, with its questionnaires and
    the journey schema; raise :class:`CopyError` (and write nothing) when that cannot be done."""
    text = stock_path.read_text(encoding="utf-8")
    stock, problems = read_journey_text(text, file=str(stock_path), known_templates=None)
    if stock is None:
        raise CopyError("; ".join(str(p) for p in problems) or f"{stock_path}: not a journey")
    target = folder / f"{new_name}.yaml"
    if target.exists():
        raise CopyError(f"{target} already exists: choose another name or remove it")
    copied_text = copy_journey_text(text, stock, new_name)
    copy, problems = read_journey_text(copied_text, file=str(target), known_templates=None)
    if copy is None:
        raise CopyError("the copy does not load: " + "; ".join(str(p) for p in problems))
    for other in folder.glob("*.y*ml") if folder.is_dir() else []:
        journey, _ = read_journey_text(other.read_text(encoding="utf-8"), known_templates=None)
        if journey is not None and journey.name == new_name:
            raise CopyError(f"{other} already defines journey {new_name!r}: choose another name")
    stock_questionnaires = questionnaire_files(stock_path.parent)
    missing = [name for name in _surveys(stock) if name not in stock_questionnaires]
    if missing:
        raise CopyError(f"questionnaire(s) {', '.join(missing)} of {stock.name} not found next to {stock_path}")
    folder.mkdir(parents=True, exist_ok=True)
    target.write_text(copied_text, encoding="utf-8")
    written, kept = [], []
    have = questionnaire_files(folder)
    for name in _surveys(stock):
        source = stock_questionnaires[name]
        there = have.get(name)
        if there is not None:
            if there.read_bytes() != source.read_bytes():
                kept.append(there)
            continue
        destination = folder / QUESTIONNAIRES / source.name
        destination.parent.mkdir(exist_ok=True)
        destination.write_bytes(source.read_bytes())
        written.append(destination)
    schema = folder / SCHEMA_FILE
    schema.write_text(schema_text(), encoding="utf-8")
    return Copied(journey=target, questionnaires=written, kept=kept, schema=schema)


# -------------------------------------------------------------------- differences


def _yaml(value: Any) -> list[str]:
    return yaml.safe_dump(value, allow_unicode=True, sort_keys=False, width=100).splitlines()


def _unified(before: list[str], after: list[str], stock: str, copy: str) -> list[str]:
    return list(difflib.unified_diff(before, after, stock, copy, lineterm="", n=1))


def _header(journey: Journey) -> dict[str, Any]:
    return journey.model_dump(mode="json", exclude={"name", "origin", "steps", "templates"})


def _compare(what: str, stock: dict[str, Any], copy: dict[str, Any], labels: tuple[str, str]) -> list[Difference]:
    """Differences between two name -> value mappings, in the stock's order, then the copy's additions."""
    out: list[Difference] = []
    for name, value in stock.items():
        if name not in copy:
            out.append(Difference(what, name, "removed"))
        elif copy[name] != value:
            out.append(Difference(what, name, "changed", _unified(_yaml(value), _yaml(copy[name]), *labels)))
    out += [Difference(what, name, "added", _yaml(value)) for name, value in copy.items() if name not in stock]
    return out


def _questionnaires(journey: Journey, folder: Path, fallback: Path | None = None) -> dict[str, Any]:
    """The questionnaires ``journey`` uses, from ``folder`` (else from ``fallback``, the stock folder)."""
    files = {**(questionnaire_files(fallback) if fallback else {}), **questionnaire_files(folder)}
    out: dict[str, Any] = {}
    for name in _surveys(journey):
        path = files.get(name)
        try:
            out[name] = json.loads(path.read_text(encoding="utf-8")) if path else None
        except (OSError, ValueError) as exc:
            out[name] = f"unreadable: {exc}"
    return out


def differences(stock: Journey, stock_folder: Path, copy: Journey, copy_folder: Path) -> list[Difference]:
    """How ``copy`` differs from ``stock``: journey-level fields, templates, steps (by id, and their order)
    and the questionnaires their survey steps use (read from each journey's folder; one the copy's folder
    lacks is the stock one)."""
    labels = (f"stock {stock.name}", copy.name)
    found = _compare("journey", _header(stock), _header(copy), labels)
    found += _compare("template", {n: t.model_dump(exclude={"name"}) for n, t in stock.templates.items()},
                      {n: t.model_dump(exclude={"name"}) for n, t in copy.templates.items()}, labels)
    found += _compare("step", {s.id: step_to_dict(s) for s in stock.steps},
                      {s.id: step_to_dict(s) for s in copy.steps}, labels)
    common = [s.id for s in stock.steps if s.id in {c.id for c in copy.steps}]
    copy_order = [s.id for s in copy.steps if s.id in set(common)]
    if common != copy_order:
        found.append(Difference("journey", "steps", "reordered", _unified(common, copy_order, *labels)))
    found += _compare("questionnaire", _questionnaires(stock, stock_folder),
                      _questionnaires(copy, copy_folder, fallback=stock_folder), labels)
    return found
