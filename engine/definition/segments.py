"""Segments: named conditions over the patient and their portrait, grouped by dimension.

Where they come from, later ones replacing earlier ones of the same name:

1. the shipped defaults (:data:`DEFAULTS`: the four dimensions hospitals sort patients by),
   unless ``[segments] defaults = false``;
2. plugins' ``carepath_segments`` hook (name -> condition, or name -> a mapping like a file's);
3. YAML files in the folders or files of ``[segments] paths`` (default ``segments/`` beside
   carepath.toml, when it exists), each a mapping of name -> ``{when, dimension, title, sensitive}``;
4. ``[segments.<name>]`` tables of carepath.toml.

A segment condition sees ``patient`` (with ``patient.portrait``) and ``now``; it cannot
use ``patient.in_segment`` (membership is what it decides). A segment is *sensitive*
when it says so or its condition names a code of the sensitive list: its members and
counts are never shown below ``min_group_size``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from carepath.runtime.clinical_codes import SENSITIVE_CODES, check_code_list, matcher

DIMENSIONS = ("clinical", "behaviour", "value", "demographic", "custom")
_NAME = re.compile(r"^[a-z0-9][a-z0-9\-]*$")
_CODE_ARG = re.compile(r"""(?:has|has_diagnosis)\(\s*["']([A-Za-z0-9.]+)["']\s*\)""")


class SegmentDef(BaseModel):
    """One segment as written in a file or carepath.toml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    when: str = Field(description="condition over patient and patient.portrait")
    dimension: str = "custom"
    title: str = ""
    description: str = ""
    sensitive: bool = False

    @field_validator("dimension")
    @classmethod
    def _dimension(cls, v: str) -> str:
        if v not in DIMENSIONS:
            raise ValueError(f"unknown dimension {v!r} (known: {', '.join(DIMENSIONS)})")
        return v


@dataclass(frozen=True)
class Segment:
    name: str
    when: str
    dimension: str
    title: str
    description: str
    sensitive: bool
    source: str  # default | plugin:<name> | file path | carepath.toml

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dimension": self.dimension, "title": self.title, "when": self.when,
                "description": self.description, "sensitive": self.sensitive, "source": self.source}


def _d(when: str, dimension: str, title: str, description: str) -> SegmentDef:
    return SegmentDef(when=when, dimension=dimension, title=title, description=description)


_NOT_CHRONIC = "not patient.portrait.chronic"
#: the shipped segments; within each dimension a patient is in exactly one (the counts add up)
DEFAULTS: dict[str, SegmentDef] = {
    "chronic": _d("patient.portrait.chronic", "clinical", "慢病",
                  "a diagnosis in the chronic-disease list"),
    "post-operative": _d(f"{_NOT_CHRONIC} and patient.portrait.discharges_90d > 0", "clinical", "术后/出院",
                         "no chronic diagnosis; discharged from hospital in the last 90 days"),
    "acute": _d(f"{_NOT_CHRONIC} and patient.portrait.discharges_90d == 0 and "
                "(patient.portrait.visits_90d > 0 or patient.portrait.admitted)", "clinical", "急症/门诊",
                "no chronic diagnosis, no discharge in 90 days; a visit in the last 90 days or in hospital now"),
    "healthy": _d(f"{_NOT_CHRONIC} and patient.portrait.discharges_90d == 0 and "
                  "patient.portrait.visits_90d == 0 and not patient.portrait.admitted", "clinical", "健康",
                  "no chronic diagnosis and no visit or stay in the last 90 days"),
    "activity-high": _d("patient.portrait.interactions_30d >= 4", "behaviour", "高活跃",
                        "4 or more interactions (replies, clicks, surveys, check-ins, visits) in 30 days"),
    "activity-medium": _d("1 <= patient.portrait.interactions_30d < 4", "behaviour", "中活跃",
                          "1 to 3 interactions in 30 days"),
    "activity-low": _d("patient.portrait.interactions_30d == 0", "behaviour", "低活跃",
                       "no interaction in 30 days"),
    "value-high": _d("patient.portrait.visits_90d + patient.portrait.admissions_90d >= 3 or "
                     "patient.portrait.programmes | length >= 2", "value", "高价值",
                     "3 or more visits or stays in 90 days, or in 2 or more programmes"),
    "value-medium": _d("not (patient.portrait.visits_90d + patient.portrait.admissions_90d >= 3 or "
                       "patient.portrait.programmes | length >= 2) and (patient.portrait.visits_90d + "
                       "patient.portrait.admissions_90d >= 1 or patient.portrait.programmes | length == 1)",
                       "value", "中价值", "1 or 2 visits or stays in 90 days, or in one programme"),
    "value-low": _d("patient.portrait.visits_90d + patient.portrait.admissions_90d == 0 and "
                    "patient.portrait.programmes | length == 0", "value", "低价值",
                    "no visit or stay in 90 days and in no programme"),
    "age-child": _d("patient.age is not none and patient.age < 18", "demographic", "儿童", "under 18"),
    "age-adult": _d("patient.age is not none and 18 <= patient.age < 45", "demographic", "青年", "18 to 44"),
    "age-middle": _d("patient.age is not none and 45 <= patient.age < 65", "demographic", "中年", "45 to 64"),
    "age-elderly": _d("patient.age is not none and patient.age >= 65", "demographic", "老年", "65 and over"),
    "age-unknown": _d("patient.age is none", "demographic", "年龄未知", "no birth date on record"),
}


class SegmentSettings(BaseModel):
    """``[segments]`` options of carepath.toml (the other keys of the table are segments)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    paths: list[str] = Field(default_factory=lambda: ["segments"])
    defaults: bool = True
    min_group_size: int = Field(5, ge=1, le=1000)
    sensitive_codes: list[str] = Field(default_factory=lambda: list(SENSITIVE_CODES))

    @field_validator("sensitive_codes")
    @classmethod
    def _codes(cls, v: list[str]) -> list[str]:
        problems = check_code_list(v)
        if problems:
            raise ValueError("; ".join(problems))
        return v


@dataclass(frozen=True)
class SegmentSet:
    """Every segment this installation runs, with the settings that go with them."""

    segments: dict[str, Segment] = field(default_factory=dict)
    settings: SegmentSettings = field(default_factory=SegmentSettings)

    @functools.cached_property
    def fingerprint(self) -> tuple:
        """What the segments' membership depends on: names, conditions and sensitive codes (a cache key)."""
        return (tuple((n, s.when) for n, s in self.segments.items()), tuple(self.settings.sensitive_codes))

    def sensitive_code(self, code: str) -> bool:
        return matcher(tuple(self.settings.sensitive_codes))(code)

    @property
    def min_group_size(self) -> int:
        return self.settings.min_group_size


class SegmentError(ValueError):
    """Segments that do not load: every problem names its file or key."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _mentions_sensitive(when: str, settings: SegmentSettings) -> bool:
    codes = _CODE_ARG.findall(when)
    is_sensitive = matcher(tuple(settings.sensitive_codes))
    return any(is_sensitive(c) for c in codes)


def _build(name: str, raw: Any, source: str, where: str, settings: SegmentSettings,
           problems: list[str]) -> Segment | None:
    if not _NAME.match(str(name)):
        problems.append(f"{where}: segment names use lower-case letters, digits and '-' (got {name!r})")
        return None
    if isinstance(raw, str):
        raw = {"when": raw}
    try:
        d = raw if isinstance(raw, SegmentDef) else SegmentDef.model_validate(raw)
    except ValidationError as exc:
        for e in exc.errors(include_url=False):
            key = ".".join(map(str, e["loc"]))
            problems.append(f"{where}.{key}: {e['msg'].removeprefix('Value error, ')}")
        return None
    from carepath.definition.segment_checks import condition_problems

    for message in condition_problems(d.when):
        problems.append(f"{where}.when: {message}")
    return Segment(name, d.when, d.dimension, d.title or name, d.description,
                   d.sensitive or _mentions_sensitive(d.when, settings), source)


def _read_files(paths: Iterable[Path], problems: list[str]) -> list[tuple[Path, dict]]:
    found = []
    for path in paths:
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]
        for file in files:
            try:
                data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError) as exc:
                problems.append(f"{file}: cannot read segments: {exc}")
                continue
            if not isinstance(data, dict):
                problems.append(f"{file}: a segments file is a mapping of name -> {{when, dimension, title}}")
                continue
            found.append((file, data))
    return found


def build_segment_set(table: Mapping[str, Any] | None = None, base: Path | None = None,
                      plugin_segments: Mapping[str, Any] | None = None) -> SegmentSet:
    """The segments of a ``[segments]`` table (options and ``[segments.<name>]``), its files and plugins."""
    table = dict(table or {})
    problems: list[str] = []
    options = {k: v for k, v in table.items() if not isinstance(v, dict)}
    try:
        settings = SegmentSettings.model_validate(options)
    except ValidationError as exc:
        raise SegmentError([f"segments.{'.'.join(map(str, e['loc']))}: "
                            f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors(include_url=False)])
    out: dict[str, Segment] = {}

    def add(name: str, raw: Any, source: str, where: str) -> None:
        seg = _build(name, raw, source, where, settings, problems)
        if seg is not None:
            out[name] = seg

    if settings.defaults:
        for name, d in DEFAULTS.items():
            add(name, d, "default", f"default segment {name}")
    for name, raw in (plugin_segments or {}).items():
        add(name, raw, "plugin", f"plugin segment {name}")
    base = base or Path.cwd()
    explicit = "paths" in options
    paths = [(base / p).resolve() for p in settings.paths]
    for i, path in enumerate(paths):
        if not path.exists():
            if explicit:
                problems.append(f"segments.paths[{i}]: no such file or folder: {path}")
            continue
        for file, data in _read_files([path], problems):
            for name, raw in data.items():
                add(str(name), raw, str(file), f"{file.name}: {name}")
    for name, raw in table.items():
        if isinstance(raw, dict):
            add(name, raw, "carepath.toml", f"segments.{name}")
    if problems:
        raise SegmentError(problems)
    return SegmentSet(out, settings)


@functools.lru_cache(maxsize=1)
def _configured() -> SegmentSet:
    from carepath.config import load_config

    return load_config().segments


def configured_segments() -> SegmentSet:
    """The segments of this installation's carepath.toml (cached; a configuration that fails gives the defaults)."""
    try:
        return _configured()
    except Exception:  # reported by `carepath config check` and `carepath segments list`
        return build_segment_set()


def reload_segments() -> None:
    _configured.cache_clear()
