"""A journey as a journey file writes it: the shorthand format with plain scalars (:mod:`carepath.definition.journey_files`
reads it back to an equal journey)."""

from __future__ import annotations

import enum
from datetime import time, timedelta
from typing import Any

import yaml
from pydantic import BaseModel

from carepath.definition.durations import CalendarDuration, format_duration
from carepath.definition.journey_yaml import _Dumper
from carepath.definition.model import Journey, Step

#: A scalar given where a mapping is expected fills this field: ``on: visit.checked_in``.
SHORTHAND_FIELD = {"on": "event", "after_step": "step", "task": "task", "tag": "add", "missed": "policy",
                   "idle": "days", "calendar": "moment"}


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
