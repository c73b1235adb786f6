"""A journey as a map: its steps by stage, what starts each one and what each does.

The renderers (:mod:`carepath.definition.render_mermaid`, :mod:`carepath.definition.render_terminal`,
:mod:`carepath.definition.render_docs`) draw this description, never the model directly. It is built
from the model's fields: a trigger or action kind this module does not know yet is described by its
``kind`` and the fields it sets (and starts from the anchor, event or step it names, if any), so a new
kind of step renders as a generic node instead of failing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import time, timedelta
from typing import Any

from pydantic import BaseModel

from carepath.definition.durations import CalendarDuration, format_duration
from carepath.definition.model import (ENROLLED, AfterStep, AnchorOffset, Calendar, Every, Idle, Journey, OnEvent,
                                       Send, Stage, Step, Survey, Tag, Task)

__all__ = ["JourneyMap", "MapStep", "Source", "journey_map", "describe_trigger", "describe_action", "plain_value"]


@dataclass(frozen=True)
class Source:
    """Where a step's trigger starts from: the enrollment (``start``), an ``anchor``, an ``event`` or a ``step``."""

    kind: str
    name: str = ""


@dataclass(frozen=True)
class MapStep:
    """One step as drawn: its id and stage, what starts it (``source`` + ``when``) and what it does."""

    id: str
    stage: str
    trigger_kind: str
    action_kind: str
    source: Source
    when: str  # the trigger, relative to its source: "1d before, at 18:00"
    trigger: str  # the trigger in full: "1d before appointment, at 18:00"
    action: str  # "send visit_guide via wechat, sms"
    category: str
    condition: str | None = None
    notes: tuple[str, ...] = ()  # other options set: "missed: skip", "workdays only"
    description: str | None = None


@dataclass(frozen=True)
class JourneyMap:
    """A journey's map: header facts and its steps grouped by stage (in the model's stage order)."""

    name: str
    title: str
    version: str
    enroll: tuple[str, ...]
    enroll_condition: str | None
    exit: tuple[str, ...]
    pause_on: tuple[str, ...]
    resume_on: tuple[str, ...]
    anchors: dict[str, tuple[str, ...]]  # anchor -> the events that set it
    stages: list[tuple[str, list[MapStep]]] = field(default_factory=list)

    @property
    def steps(self) -> list[MapStep]:
        return [step for _, steps in self.stages for step in steps]


def plain_value(value: Any) -> str:
    """A field value as authors write it: ``1d``, ``18:00``, ``wechat, sms``."""
    if isinstance(value, (timedelta, CalendarDuration)):
        return format_duration(value)
    if isinstance(value, time):
        return value.strftime("%H:%M:%S" if value.second else "%H:%M")
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, (list, tuple)):
        return ", ".join(plain_value(v) for v in value)
    if isinstance(value, BaseModel):
        return "{" + _set_fields(value) + "}"
    return str(value)


def _set_fields(model: BaseModel, skip: tuple[str, ...] = ("kind",)) -> str:
    """``key=value`` for each field set to something other than its default."""
    parts = []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name, None)
        if name in skip or value is None or value == info.default or value in ([], ()):
            continue
        parts.append(f"{name}={plain_value(value)}")
    return ", ".join(parts)


def _generic(model: BaseModel) -> str:
    kind = getattr(model, "kind", type(model).__name__.lower())
    fields = _set_fields(model)
    return f"{kind} {fields}" if fields else str(kind)


def _at(at: Any) -> str:
    return f", at {plain_value(at)}" if at is not None else ""


def _source(trigger: BaseModel) -> Source:
    """The anchor, event or step a trigger counts from: by its type, else by the fields it has."""
    if isinstance(trigger, (Idle, Calendar)):
        return Source("start")
    anchor, event, step = (getattr(trigger, name, None) for name in ("anchor", "event", "step"))
    if isinstance(step, str):
        return Source("step", step)
    if isinstance(event, str):
        return Source("event", event)
    if isinstance(anchor, str) and anchor != ENROLLED:
        return Source("anchor", anchor)
    return Source("start")


def _every(t: Every) -> str:
    rhythm = f"every {plain_value(t.interval)}" if t.interval is not None else f"rrule {t.rrule}"
    if t.start:
        rhythm += f" from +{plain_value(t.start)}"
    ends = [f"{t.count} times" if t.count is not None else "", f"until +{plain_value(t.until)}" if t.until else ""]
    ends = [e for e in ends if e] or (["until exit"] if t.open_ended else [])
    return rhythm + _at(t.at) + "".join(f", {e}" for e in ends)


def _relative(trigger: BaseModel) -> str:
    """The trigger's wording without its source: what the edge from the source says."""
    if isinstance(trigger, OnEvent):
        return "on" + (f" +{plain_value(trigger.delay)}" if trigger.delay else "") + (
            f", once per {trigger.once_per}" if trigger.once_per else "")
    if isinstance(trigger, AnchorOffset):
        offset = f"{plain_value(trigger.offset)} {trigger.kind}" if trigger.offset else f"at ({trigger.kind})"
        return offset + _at(trigger.at)
    if isinstance(trigger, Every):
        return _every(trigger)
    if isinstance(trigger, AfterStep):
        text = (f"{plain_value(trigger.delay)} after " if trigger.delay else "after ") + trigger.outcome
        return text + (f", unless {trigger.unless}" if trigger.unless else "")
    if isinstance(trigger, Idle):
        return f"idle {trigger.days} days"
    if isinstance(trigger, Calendar):
        return f"calendar {trigger.moment or trigger.date}" + _at(trigger.at)
    return _generic(trigger)


def describe_trigger(trigger: BaseModel) -> str:
    """The trigger in one line, naming what it counts from: ``1d before appointment, at 18:00``."""
    source = _source(trigger)
    relative = _relative(trigger)
    if isinstance(trigger, AnchorOffset):
        offset = f"{plain_value(trigger.offset)} " if trigger.offset else ""
        return f"{offset}{trigger.kind} {trigger.anchor}{_at(trigger.at)}"
    if isinstance(trigger, OnEvent):
        return f"on {trigger.event}" + relative[2:]
    if isinstance(trigger, AfterStep):
        return relative.replace(f"after {trigger.outcome}", f"after {trigger.step} {trigger.outcome}")
    if isinstance(trigger, Every) and source.kind == "anchor":
        return f"{relative} (from {source.name})"
    return relative


def describe_action(action: BaseModel) -> str:
    """The action in one line: ``send visit_guide via wechat, sms``, ``task call_patient → nursing, SLA 24h``."""
    if isinstance(action, Survey):
        detractor = "; detractor → complaint case" if action.detractor == "complaint_case" else ""
        return f"survey {action.survey} ({action.template}) via {plain_value(action.via)}{detractor}"
    if isinstance(action, Send):
        return f"send {action.template} via {plain_value(action.via)}"
    if isinstance(action, Task):
        priority = f", {action.priority}" if action.priority != "normal" else ""
        return f"task {action.task} → {action.team}, SLA {plain_value(action.sla)}{priority}"
    if isinstance(action, Tag):
        return "tag " + " ".join([*(f"+{t}" for t in action.add), *(f"-{t}" for t in action.remove)])
    return _generic(action)


_NOTE_SKIP = ("id", "stage", "trigger", "action", "condition", "category", "description")


def _notes(step: Step) -> tuple[str, ...]:
    """The step's other options that differ from their defaults, as ``name: value``."""
    notes = []
    for name, info in type(step).model_fields.items():
        value = getattr(step, name, None)
        if name in _NOTE_SKIP or value is None or value == info.default:
            continue
        if name == "missed":
            value = value.policy if value.grace == info.default.grace else f"{value.policy}, grace {plain_value(value.grace)}"
        notes.append(f"{name.replace('_', ' ')}: {plain_value(value)}")
    return tuple(notes)


def map_step(step: Step) -> MapStep:
    """One step of the map."""
    trigger, action = step.trigger, step.action
    return MapStep(
        id=step.id, stage=plain_value(step.stage), trigger_kind=str(getattr(trigger, "kind", "?")),
        action_kind=str(getattr(action, "kind", "?")), source=_source(trigger), when=_relative(trigger),
        trigger=describe_trigger(trigger), action=describe_action(action), category=plain_value(step.category),
        condition=step.condition, notes=_notes(step), description=step.description)


def journey_map(journey: Journey) -> JourneyMap:
    """The map of ``journey``: its steps grouped by stage, known stages first in their order."""
    order = [s.value for s in Stage]
    by_stage: dict[str, list[MapStep]] = {}
    for step in journey.steps:
        mapped = map_step(step)
        by_stage.setdefault(mapped.stage, []).append(mapped)
    stages = sorted(by_stage, key=lambda s: (order.index(s) if s in order else len(order), s))
    return JourneyMap(
        name=journey.name, title=journey.title, version=journey.version, enroll=tuple(journey.enroll.events),
        enroll_condition=journey.enroll.condition, exit=tuple(journey.exit.events),
        pause_on=tuple(journey.pause_on or ()), resume_on=tuple(journey.resume_on or ()),
        anchors={name: tuple(rule.set_by) for name, rule in journey.anchors.items()},
        stages=[(stage, by_stage[stage]) for stage in stages])
