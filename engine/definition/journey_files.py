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

import enum
import re
from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Any, Collection, Mapping

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from carepath.definition.durations import CalendarDuration, format_duration
from carepath.definition.model import AfterStep, AnchorOffset, Calendar, Every, Idle, Journey, OnEvent, Reading, Step
from carepath.definition.validation import Problem, Reporter, check_trigger, suggest, validate_journey

__all__ = ["JourneyFileError", "load_journey_file", "read_journey_file", "read_journey_text", "journey_to_yaml"]

TRIGGER_KEYS = ("on", "before", "after", "every", "after_step", "idle", "calendar", "reading")
ACTION_KEYS = ("send", "survey", "checkin", "task", "tag")
STEP_KEYS = ("id", "stage", *TRIGGER_KEYS, "when", "condition", *ACTION_KEYS, "category", "missed", "over_cap",
             "resend_on_move", "confirm_within", "description", "workdays_only",
             "experiment")
# A scalar given where a mapping is expected fills this field: ``on: visit.checked_in``.
SHORTHAND_FIELD = {"on": "event", "after_step": "step", "task": "task", "tag": "add", "missed": "policy",
                   "idle": "days", "calendar": "moment"}


class JourneyFileError(ValueError):
    """A journey file that cannot be parsed or does not validate."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# ------------------------------------------------------------------ YAML dialect

_CORE_SCALARS = {
    "tag:yaml.org,2002:bool": (r"^(?:[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$", "tTfF"),
    "tag:yaml.org,2002:int": (r"^[-+]?(?:0|[1-9][0-9_]*)$", "-+0123456789"),
    "tag:yaml.org,2002:float": (r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?$"
                                r"|^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$",
                                "-+.0123456789"),
}
_DROPPED = {*_CORE_SCALARS, "tag:yaml.org,2002:timestamp"}


def _use_core_scalars(cls: type) -> type:
    """Replace YAML 1.1 booleans (on/yes/no), base-60 and octal numbers and timestamps."""
    cls.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in _DROPPED]
        for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
    }
    for tag, (pattern, first) in _CORE_SCALARS.items():
        cls.add_implicit_resolver(tag, re.compile(pattern), list(first))
    return cls


#: deepest nesting of lists and mappings a journey file may have (journeys need fewer than ten levels)
MAX_DEPTH = 64


@_use_core_scalars
class _Loader(yaml.SafeLoader):
    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        """Stops past :data:`MAX_DEPTH` levels with a YAML error at the place (composing is recursive)."""
        if self._depth >= MAX_DEPTH and not self.check_event(yaml.AliasEvent, yaml.ScalarEvent):
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                              self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_YAML11 = yaml.resolver.Resolver()
_STR = "tag:yaml.org,2002:str"


@_use_core_scalars
class _Dumper(yaml.SafeDumper):
    def represent_list(self, data):  # short lists of scalars read best inline: [wechat, sms]
        flow = all(isinstance(item, (str, int, float, bool)) for item in data)
        return self.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)

    def represent_str(self, data):  # quote what a YAML 1.1 reader would misread (18:00, yes), but not the key on
        ambiguous = data != "on" and _YAML11.resolve(yaml.ScalarNode, data, (True, False)) != _STR
        style = "|" if "\n" in data else "'" if ambiguous else None
        return self.represent_scalar(_STR, data, style=style)


_Dumper.add_representer(list, _Dumper.represent_list)
_Dumper.add_representer(str, _Dumper.represent_str)


# ----------------------------------------------------------------- parsing YAML


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _index_lines(node: yaml.Node, path: str, report: Reporter, lines: dict[str, int],
                 active: frozenset[int] = frozenset()) -> None:
    """Record the 1-based line of every path under ``node``; report duplicate keys."""
    if id(node) in active:  # a recursive alias
        return
    active = active | {id(node)}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            path_ = _child(path, key_node.value)
            line = key_node.start_mark.line + 1
            if path_ in lines:
                report.add(f"duplicate key '{key_node.value}' (first at line {lines[path_]})", path_, line=line)
            lines[path_] = line
            _index_lines(value_node, path_, report, lines, active)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[_child(path, i)] = item.start_mark.line + 1
            _index_lines(item, _child(path, i), report, lines, active)


#: values aliases may add to a document (``*name`` repeats its anchor's whole value): more is refused
MAX_ALIAS_EXPANSION = 5000


def _alias_expansion(root: yaml.Node) -> tuple[int, int | None]:
    """How many values following every alias adds to the document, and the line of one repeated anchor.

    Counted in linear time over the node graph (an alias is the same node object
    again), so a "billion laughs" file of nested aliases is measured, not expanded.
    An alias of a value that contains it (recursive) counts once, as indexing does.
    """
    size: dict[int, int] = {}
    busy: set[int] = set()
    shared_line: int | None = None
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            busy.discard(key)
            size[key] = 1 + sum(size.get(id(c), 1) for c in _children(node))
            continue
        if key in size or key in busy:
            if shared_line is None:
                shared_line = node.start_mark.line + 1
            continue
        busy.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in size and id(c) not in busy)
    distinct = len(size)
    return size[id(root)] - distinct, shared_line


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _yaml_problem(exc: yaml.YAMLError, report: Reporter) -> None:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if not isinstance(exc, yaml.MarkedYAMLError) or mark is None:
        report.add(f"invalid YAML: {exc}")
        return
    where = f"column {mark.column + 1}"
    if exc.context and exc.context_mark:
        where += f"; {exc.context} started at line {exc.context_mark.line + 1}"
    report.add(f"invalid YAML: {exc.problem or exc.context} ({where})", line=mark.line + 1)


def _parse_yaml(text: str, report: Reporter, lines: dict[str, int]) -> Any:
    """The document's data, filling ``lines``; None (with a problem) when it is not YAML."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            report.add("the file is empty: a journey needs name, enroll and steps")
            return None
        lines[""] = node.start_mark.line + 1
        extra, line = _alias_expansion(node)
        if extra > MAX_ALIAS_EXPANSION:
            report.add(f"aliases expand to {extra:,} more values, over the limit of {MAX_ALIAS_EXPANSION:,} "
                       "(nested aliases of aliases, a \"billion laughs\" file?): write the repeated parts out "
                       "or alias fewer of them", line=line)
            return None
        _index_lines(node, "", report, lines)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        _yaml_problem(exc, report)
        return None
    except RecursionError:
        report.add("the document is nested too deeply to read (hundreds of levels of lists or mappings)")
        return None
    finally:
        loader.dispose()


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


# ------------------------------------------------------------------- export


def _plain(value: Any) -> Any:
    """Model dump values as YAML scalars: enums, ``HH:MM`` times, compact durations."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, time):
        return value.strftime("%H:%M:%S" if value.second else "%H:%M")
    if isinstance(value, (timedelta, CalendarDuration)):
        return format_duration(value)
    return value


def _dump(model: BaseModel, exclude: set[str] | None = None) -> Any:
    return _plain(model.model_dump(exclude=exclude, exclude_defaults=True))


def _shorten(key: str, body: dict) -> Any:
    """The scalar shorthand when only its field is set: ``{policy: skip}`` -> ``skip``."""
    field = SHORTHAND_FIELD.get(key)
    return body[field] if field and set(body) == {field} else body


def _step_to_dict(step: Step) -> dict:
    out: dict[str, Any] = {"id": step.id, "stage": step.stage.value}
    out[step.trigger.kind] = _shorten(step.trigger.kind, _dump(step.trigger, {"kind"}))
    if step.condition is not None:
        out["when"] = step.condition
    out[step.action.kind] = _shorten(step.action.kind, _dump(step.action, {"kind"}))
    rest = _dump(step, {"id", "stage", "trigger", "action", "condition"})
    if step.trigger.kind == "calendar":  # a calendar step without a category reads back as marketing
        rest.setdefault("category", step.category.value)
    if "missed" in rest:
        rest["missed"] = _shorten("missed", rest["missed"])
    return {**out, **rest}


def step_to_dict(step: Step) -> dict:
    """A step as a journey file writes it: trigger and action by key, shorthand where it applies."""
    return _step_to_dict(step)


def journey_to_dict(journey: Journey) -> dict:
    """The journey as a journey file's data (shorthand format, plain scalars); reads back to an equal journey."""
    data = _dump(journey, {"steps", "templates"})
    if journey.templates:
        data["templates"] = {name: _dump(t, {"name"}) for name, t in journey.templates.items()}
    data["steps"] = [_step_to_dict(step) for step in journey.steps]
    return data


def journey_to_yaml(journey: Journey) -> str:
    """The journey as a YAML file in the shorthand format; loads back to an equal journey."""
    return yaml.dump(journey_to_dict(journey), Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=100)
