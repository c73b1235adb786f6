"""Journeys as YAML files: load (with line numbers on every problem) and export.

The file format is the model with integrator-friendly shorthand: a step names
its trigger by key (``on``, ``before``, ``after``, ``every``, ``after_step``)
and its action by key (``send``, ``task``, ``tag``)::

    steps:
      - id: reminder
        stage: pre_visit
        before: {anchor: appointment, offset: 1d, at: "18:00"}
        send: {template: visit_reminder, via: [wechat, sms]}

Scalars follow YAML 1.2: only ``true``/``false`` are booleans (so ``on:`` stays
a key) and ``18:00`` is a string, not a base-60 number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Collection, Mapping

from pydantic import BaseModel, TypeAdapter, ValidationError

# the YAML dialect and the export live beside this module; their public names stay importable from here
from carepath.definition.journey_export import SHORTHAND_FIELD, journey_to_dict, journey_to_yaml, step_to_dict
from carepath.definition.journey_yaml import MAX_ALIAS_EXPANSION, MAX_DEPTH, _child, _parse_yaml
from carepath.definition.model import AfterStep, AnchorOffset, Calendar, Every, Idle, Journey, OnEvent, Reading, Step
from carepath.definition.validation import Problem, Reporter, check_trigger, suggest, validate_journey

__all__ = ["JourneyFileError", "load_journey_file", "read_journey_file", "read_journey_text", "journey_to_yaml",
           "journey_to_dict", "step_to_dict", "MAX_ALIAS_EXPANSION", "MAX_DEPTH", "SHORTHAND_FIELD", "STEP_KEYS"]

TRIGGER_KEYS = ("on", "before", "after", "every", "after_step", "idle", "calendar", "reading")
ACTION_KEYS = ("send", "survey", "checkin", "task", "tag")
STEP_KEYS = ("id", "stage", *TRIGGER_KEYS, "when", "condition", *ACTION_KEYS, "category", "missed", "over_cap",
             "resend_on_move", "confirm_within", "description", "workdays_only",
             "experiment")


class JourneyFileError(ValueError):
    """A journey file that cannot be parsed or does not validate."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# ------------------------------------------------------ shorthand -> model shape


def _expand(key: str, value: Any, path: str, report: Reporter, step: str | None = None) -> dict | None:
    """A shorthand value as the model's mapping: ``missed: skip`` -> ``{policy: skip}``."""
    if isinstance(value, dict):
        return dict(value)
    field = SHORTHAND_FIELD.get(key)
    if field == "add":
        return {"add": value if isinstance(value, list) else [value]}
    if field and value is not None and not isinstance(value, list):
        return {field: value}
    report.add(f"'{key}' must be a mapping" + (f" or a single {field}" if field else ""), path, step)
    return None


def _pick_one(raw: dict, keys: tuple[str, ...], what: str, path: str, report: Reporter, step: str | None) -> str | None:
    """The single key of ``keys`` present in ``raw``."""
    present = [k for k in keys if k in raw]
    if len(present) == 1:
        return present[0]
    found = f"; found {', '.join(present)}" if present else ""
    report.add(f"a step needs exactly one {what} among {', '.join(keys)}{found}", path, step)
    return None


def _step_data(raw: dict, path: str, report: Reporter, step: str | None) -> tuple[dict, dict[str, str], set[str]]:
    """The model-shaped step, the YAML key of each renamed model field and the fields already reported."""
    for key in raw:
        if key not in STEP_KEYS:
            report.add(f"unknown step field '{key}'{suggest(str(key), STEP_KEYS)}", _child(path, str(key)), step)
    renamed = (*TRIGGER_KEYS, *ACTION_KEYS, "when", "missed")
    data = {k: v for k, v in raw.items() if k in STEP_KEYS and k not in renamed}
    aliases: dict[str, str] = {}
    reported: set[str] = set()
    for field, keys in (("trigger", TRIGGER_KEYS), ("action", ACTION_KEYS)):
        key = _pick_one(raw, keys, field, path, report, step)
        body = _expand(key, raw[key], _child(path, key), report, step) if key else None
        if key and body is not None:
            data[field], aliases[field] = {**body, "kind": key}, key
        else:
            reported.add(field)
    if "when" in raw:
        if "condition" in raw:
            report.add("use either when or condition, not both", _child(path, "when"), step)
        data["condition"], aliases["condition"] = raw["when"], "when"
    if "missed" in raw:
        missed = _expand("missed", raw["missed"], _child(path, "missed"), report, step)
        if missed is not None:
            data["missed"] = missed
    return data, aliases, reported


def _templates_data(raw: Any) -> Any:
    """``templates: {name: {title, body}}`` or ``{name: body}`` with the name filled in."""
    if not isinstance(raw, dict):
        return raw
    return {name: {**(v if isinstance(v, dict) else {"body": v}), "name": name} for name, v in raw.items()}


# ------------------------------------------------------ pydantic -> problems


def _error_message(error: dict) -> str:
    kind, loc = error["type"], error["loc"]
    if kind == "missing":
        return f"missing required field '{loc[-1]}'" if loc else "missing required field"
    if kind == "extra_forbidden":
        return f"unknown field '{loc[-1]}'"
    if kind.startswith("time_delta"):
        return f"not a duration: {error['input']!r} (write e.g. 30m, 2h30m, 1d or 1w)"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    value = error.get("input")
    got = f" (got {value!r})" if isinstance(value, (str, int, float, bool)) or value is None else ""
    return f"{error['msg']}{got}"


def _error_path(loc: tuple, prefix: str, aliases: dict[str, str]) -> str:
    """Turn a pydantic location into the YAML path: ``('trigger', 'before', 'offset')`` -> ``before.offset``."""
    parts = list(loc)
    if parts and parts[0] in aliases:
        parts[0] = aliases[parts[0]]
        if len(parts) > 1 and parts[1] == parts[0]:  # the union's discriminator tag
            del parts[1]
    path = prefix
    for part in parts:
        path = _child(path, part if isinstance(part, int) else str(part))
    return path


def _validate(model: type[BaseModel], data: dict, report: Reporter, prefix: str = "",
              aliases: dict[str, str] | None = None, step: str | None = None, reported: Collection[str] = ()) -> Any:
    """``model.model_validate(data)``, or None with its errors reported (but not those on ``reported`` fields)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            if error["loc"] and error["loc"][0] in reported:
                continue
            report.add(_error_message(error), _error_path(error["loc"], prefix, aliases or {}), step)
        return None


# ------------------------------------------------------------------- loading


def _parse_steps(raw_steps: Any, report: Reporter, header: Journey | None = None) -> list[Step] | None:
    """The steps, or None when one did not parse; then the trigger of every step is still checked."""
    if not isinstance(raw_steps, list):
        report.add("steps must be a list of steps" if raw_steps is not None else "missing required field 'steps'",
                   "steps")
        return None
    steps: list[Step] = []
    triggers: list[tuple[Any, str, str | None]] = []
    for i, raw in enumerate(raw_steps):
        path = f"steps[{i}]"
        if not isinstance(raw, dict):
            report.add("a step must be a mapping with id, stage, a trigger and an action", path)
            continue
        step_id = raw.get("id") if isinstance(raw.get("id"), str) else None
        before = len(report.problems)
        data, aliases, reported = _step_data(raw, path, report, step_id)
        parsed = _validate(Step, data, report, path, aliases, step_id, reported)
        if parsed is not None and len(report.problems) == before:
            steps.append(parsed)
        trigger = parsed.trigger if parsed is not None else _partial_trigger(data.get("trigger"))
        if trigger is not None:
            triggers.append((trigger, path, step_id))
    if len(steps) == len(raw_steps):
        return steps
    ids = [r["id"] for r in raw_steps if isinstance(r, dict) and isinstance(r.get("id"), str)]
    for trigger, path, step_id in triggers:
        check_trigger(header.anchors if header else None, trigger, path, step_id, report, ids)
    return None


TRIGGER_MODELS = {"on": OnEvent, "before": AnchorOffset, "after": AnchorOffset, "every": Every,
                  "after_step": AfterStep, "idle": Idle, "calendar": Calendar, "reading": Reading}


def _partial_trigger(raw: Any) -> BaseModel | None:
    """The fields of a trigger that did not validate as a whole, each kept if it validates on its own."""
    model = TRIGGER_MODELS.get(raw.get("kind")) if isinstance(raw, dict) else None
    if model is None:
        return None
    good: dict[str, Any] = {"kind": raw["kind"]}
    for name, info in model.model_fields.items():
        if name in raw and name != "kind":
            try:
                kind = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
                good[name] = TypeAdapter(kind).validate_python(raw[name])
            except ValidationError:
                continue
    return model.model_construct(**good)


def _parse_journey(data: Any, report: Reporter) -> Journey | None:
    if not isinstance(data, dict):
        report.add("a journey file must be a mapping with name, enroll and steps", line=report.lines.get(""))
        return None
    top = {k: v for k, v in data.items() if k != "steps"}
    if "templates" in top:
        top["templates"] = _templates_data(top["templates"])
    before = len(report.problems)
    header = _validate(Journey, {**top, "steps": []}, report)
    steps = _parse_steps(data.get("steps"), report, header)
    if header is None or steps is None or len(report.problems) > before:
        return None
    return _validate(Journey, {**top, "steps": steps}, report)


def read_journey_text(text: str, *, file: str | None = None, known_templates: Collection[str] | None = frozenset(),
                      known_channels: Collection[str] | None = None, channels: Mapping[str, Any] | None = None,
                      catalogue: Mapping[str, Any] | None = None) -> tuple[Journey | None, list[Problem]]:
    """Parse and validate journey YAML; the journey is None when it did not parse.

    Never raises for mistakes in the text; problems come sorted by line.
    ``channels`` and ``catalogue`` are passed to :func:`validate_journey`.
    """
    lines: dict[str, int] = {}
    report = Reporter(file, lines, catalogue)
    data = _parse_yaml(text, report, lines)
    journey = _parse_journey(data, report) if not report.problems else None
    if journey is not None:
        report.problems += validate_journey(journey, known_templates=known_templates,
                                            known_channels=known_channels, file=file, lines=lines,
                                            channels=channels, catalogue=report.catalogue)
    return journey, sorted(report.problems, key=lambda p: (p.line is None, p.line or 0))


def read_journey_file(path: str | Path, *, known_templates: Collection[str] | None = frozenset(),
                      known_channels: Collection[str] | None = None, channels: Mapping[str, Any] | None = None,
                      catalogue: Mapping[str, Any] | None = None) -> tuple[Journey | None, list[Problem]]:
    """Load ``path`` and list its problems; never raises for user mistakes.

    ``known_templates`` are templates available besides the journey's own
    (``None`` skips the check); ``known_channels=None`` skips the channel check.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return None, [Problem(f"cannot read journey file: {reason}", file=str(path))]
    return read_journey_text(text, file=str(path), known_templates=known_templates, known_channels=known_channels,
                             channels=channels, catalogue=catalogue)


def load_journey_file(path: str | Path, *, known_templates: Collection[str] | None = None,
                      known_channels: Collection[str] | None = None) -> Journey:
    """Load ``path``; raise :class:`JourneyFileError` listing every problem.

    Template and channel names are checked only against the sets given: a
    journey may use templates that plugins provide (see ``carepath journeys validate``).
    """
    journey, problems = read_journey_file(path, known_templates=known_templates, known_channels=known_channels)
    if problems or journey is None:
        raise JourneyFileError(problems)
    return journey


