"""A journey as a FHIR R4 ``PlanDefinition`` (issue 23): ``carepath journeys export NAME --format fhir``.

Each step becomes an ``action``; what standard elements can say, they say:

- its start: a ``named-event`` ``trigger`` (an ``on`` step, its delay as ``timingDuration``), or a
  ``relatedAction`` to the action of another step (``after_step``) or of an anchor (``before``/``after``,
  ``every``), with the offset as ``offsetDuration``; an ``every`` interval and count as ``timingTiming``;
- its ``condition`` as an ``applicability`` condition in the ``text/x-carepath`` expression language;
- who it involves as ``participant``: the patient (or a related person) for messages, a practitioner with the
  team as role for staff tasks;
- stage, category and action kind as ``code`` codings; channels and the template as extensions.

Each anchor (and the enrollment, where a step counts from it) is an action of its own, started by the events
that set it, so steps can point at it. Every step also carries itself as JSON in the extension
:data:`STEP_EXTENSION`, and the journey's header (enrollment, exit, anchors, templates...) sits in
:data:`JOURNEY_EXTENSION`, so carepath -> FHIR -> carepath is lossless. :func:`export_plan` reports, per step,
the fields that only that extension holds (calendar, idle and reading triggers, rrules, check-ins, ``send.to``,
``workdays_only``...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from carepath.definition.durations import CalendarDuration
from carepath.definition.journey_files import journey_to_dict, step_to_dict
from carepath.definition.model import (ENROLLED, AfterStep, AnchorOffset, Every, Journey, OnEvent, Send, Step, Task)

__all__ = ["standard_elements", "BASE", "STEP_EXTENSION", "JOURNEY_EXTENSION", "CHANNEL_EXTENSION", "TEMPLATE_EXTENSION", "EXPRESSION_LANGUAGE",
           "ExportReport", "export_plan", "fhir_id", "step_id_of", "fhir_duration"]

BASE = "https://carepath.example/fhir"
STEP_EXTENSION = f"{BASE}/StructureDefinition/step"
JOURNEY_EXTENSION = f"{BASE}/StructureDefinition/journey"
CHANNEL_EXTENSION = f"{BASE}/StructureDefinition/channel"
TEMPLATE_EXTENSION = f"{BASE}/StructureDefinition/template"
STAGE_SYSTEM = f"{BASE}/CodeSystem/stage"
CATEGORY_SYSTEM = f"{BASE}/CodeSystem/category"
KIND_SYSTEM = f"{BASE}/CodeSystem/action-kind"
ROLE_SYSTEM = f"{BASE}/CodeSystem/action-role"
EXPRESSION_LANGUAGE = "text/x-carepath"
UCUM = "http://unitsofmeasure.org"
ANCHOR_PREFIX = "anchor."

# UCUM codes of the fixed units, largest first
_UNITS = (("d", timedelta(days=1)), ("h", timedelta(hours=1)), ("min", timedelta(minutes=1)), ("s", timedelta(seconds=1)))


def fhir_id(step_id: str) -> str:
    """A step id as a FHIR ``id`` (letters, digits, ``-`` and ``.``): ``_`` becomes ``.``, which step ids never hold."""
    return step_id.replace("_", ".")


def step_id_of(action_id: str) -> str:
    """The step id of an action id written by :func:`fhir_id`."""
    return action_id.replace(".", "_")


def fhir_duration(span: timedelta | CalendarDuration) -> dict[str, Any] | None:
    """A FHIR ``Duration`` in the largest whole UCUM unit (``mo`` for whole calendar months); None when a span mixes
    months with fixed time or has fractions of a second (no single unit says it)."""
    if isinstance(span, CalendarDuration):
        if span.rest:
            return None
        return {"value": span.months, "unit": "mo", "system": UCUM, "code": "mo"}
    for code, unit in _UNITS:
        if span % unit == timedelta(0):
            return {"value": span // unit, "unit": code, "system": UCUM, "code": code}
    return None


@dataclass
class ExportReport:
    """Per step id, the fields (dotted paths) that only the carepath step extension holds."""

    extension_only: dict[str, list[str]] = field(default_factory=dict)
    #: the journey's own fields (enrollment, exit, templates, pause_on...) the journey extension holds
    journey_only: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        head = [f"only in the carepath journey extension ({JOURNEY_EXTENSION}): {', '.join(self.journey_only)}"
                ] if self.journey_only else []
        if not self.extension_only:
            return [*head, "every step is fully expressed in standard PlanDefinition elements"]
        return [*head,f"only in the carepath step extension ({STEP_EXTENSION}), no standard element says them:",
                *(f"  step {step}: {', '.join(paths)}" for step, paths in self.extension_only.items())]


def _set_paths(data: Any, prefix: str = "") -> list[str]:
    """The dotted paths of the leaves of a step's non-default dump (lists count as one leaf)."""
    if isinstance(data, dict) and data:
        return [p for k, v in data.items() for p in _set_paths(v, f"{prefix}.{k}" if prefix else k)]
    return [prefix]


def _coding(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _offset(span: timedelta | CalendarDuration, mapped: set[str], path: str) -> dict[str, Any] | None:
    duration = fhir_duration(span)
    if duration is not None:
        mapped.add(path)
    return duration


class _StepExport:
    """Builds one step's action and records which of its fields standard elements express."""

    def __init__(self, step: Step) -> None:
        self.step = step
        self.mapped: set[str] = {"id", "stage", "category", "action.kind", "description"}
        if isinstance(step.trigger, (OnEvent, AnchorOffset, AfterStep, Every)):
            self.mapped.add("trigger.kind")  # idle, calendar and reading triggers: the kind itself is carepath's
        self.action: dict[str, Any] = {
            "id": fhir_id(step.id), "title": step.id,
            "code": [_coding(STAGE_SYSTEM, step.stage.value), _coding(CATEGORY_SYSTEM, step.category.value),
                     _coding(KIND_SYSTEM, step.action.kind)],
        }
        if step.description:
            self.action["description"] = step.description

    def build(self) -> dict[str, Any]:
        self._trigger()
        self._condition()
        self._doing()
        self.action["extension"] = [*self.action.get("extension", []),
                                    {"url": STEP_EXTENSION, "valueString": json.dumps(step_to_dict(self.step),
                                                                                    ensure_ascii=False)}]
        return self.action

    def _related(self, target: str, relationship: str, span: timedelta | CalendarDuration, path: str) -> None:
        related: dict[str, Any] = {"actionId": target, "relationship": relationship}
        duration = _offset(span, self.mapped, path)
        if duration is not None and duration["value"]:
            related["offsetDuration"] = duration
        self.action["relatedAction"] = [related]

    def _trigger(self) -> None:
        t = self.step.trigger
        if isinstance(t, OnEvent):
            self.action["trigger"] = [{"type": "named-event", "name": t.event}]
            self.mapped.add("trigger.event")
            duration = _offset(t.delay, self.mapped, "trigger.delay")
            if duration is not None and duration["value"]:
                self.action["timingDuration"] = duration
        elif isinstance(t, AnchorOffset):
            self.mapped.add("trigger.anchor")
            self._related(ANCHOR_PREFIX + fhir_id(t.anchor), f"{t.kind}-start", t.offset, "trigger.offset")
        elif isinstance(t, AfterStep):
            self.mapped.add("trigger.step")
            self._related(fhir_id(t.step), "after-end", t.delay, "trigger.delay")
        elif isinstance(t, Every):
            self.mapped.add("trigger.anchor")
            self._related(ANCHOR_PREFIX + fhir_id(t.anchor), "after-start", t.start, "trigger.start")
            if t.interval is not None and (period := fhir_duration(t.interval)) is not None:
                repeat: dict[str, Any] = {"frequency": 1, "period": period["value"], "periodUnit": period["code"]}
                self.mapped.add("trigger.interval")
                if t.count is not None:
                    repeat["count"] = t.count
                    self.mapped.add("trigger.count")
                self.action["timingTiming"] = {"repeat": repeat}
        # idle, calendar and reading triggers have no standard counterpart: only the extension holds them

    def _condition(self) -> None:
        if self.step.condition is not None:
            self.action["condition"] = [{"kind": "applicability", "expression": {
                "language": EXPRESSION_LANGUAGE, "expression": self.step.condition}}]
            self.mapped.add("condition")

    def _doing(self) -> None:
        a = self.step.action
        if isinstance(a, Task):
            self.action["participant"] = [{"type": "practitioner", "role": {"text": a.team}}]
            self.action["textEquivalent"] = a.task
            self.mapped.update({"action.team", "action.task"})
        elif isinstance(a, Send):
            who = "patient" if a.to in (None, "patient") else "related-person"
            self.action["participant"] = [{"type": who}]
            self.action["extension"] = [*({"url": CHANNEL_EXTENSION, "valueCode": c} for c in a.via),
                                        {"url": TEMPLATE_EXTENSION, "valueString": a.template}]
            self.mapped.update({"action.via", "action.template"})
            if a.to in (None, "patient"):
                self.mapped.add("action.to")
        # tag actions: only the extension holds what they add and remove

    def extension_only(self) -> list[str]:
        dump = self.step.model_dump(mode="json", exclude_defaults=True)
        dump["trigger"] = {"kind": self.step.trigger.kind, **dump.get("trigger", {})}
        dump["action"] = {"kind": self.step.action.kind, **dump.get("action", {})}
        return [p for p in _set_paths(dump) if p not in self.mapped]


#: the elements of an action that :class:`_StepExport` writes from the step (what an edit elsewhere would change)
STANDARD_ELEMENTS = ("code", "trigger", "timingDuration", "timingTiming", "relatedAction", "condition",
                     "participant", "textEquivalent")


def standard_elements(step: Step) -> dict[str, Any]:
    """The standard elements (and channel and template extensions) the export writes for ``step``."""
    action = _StepExport(step).build()
    out = {k: action[k] for k in STANDARD_ELEMENTS if k in action}
    out["extension"] = [e for e in action["extension"] if e["url"] in (CHANNEL_EXTENSION, TEMPLATE_EXTENSION)]
    return out


def _anchor_actions(journey: Journey) -> list[dict[str, Any]]:
    """One action per anchor a step counts from: started by the events that set it (the enrollment's by the
    enrollment events)."""
    used = [a for a in dict.fromkeys(s.anchor for s in journey.steps) if a is not None]
    out = []
    for anchor in used:
        events = journey.enroll.events if anchor == ENROLLED or anchor not in journey.anchors \
            else journey.anchors[anchor].set_by
        out.append({"id": ANCHOR_PREFIX + fhir_id(anchor), "title": anchor, "code": [_coding(ROLE_SYSTEM, "anchor")],
                    "description": f"the {anchor} anchor: the time its events give",
                    "trigger": [{"type": "named-event", "name": e} for e in events]})
    return out


def export_plan(journey: Journey) -> tuple[dict[str, Any], ExportReport]:
    """The journey as a PlanDefinition (JSON, validated by ``fhir.resources``) and what only extensions hold."""
    from fhir.resources.R4B.plandefinition import PlanDefinition

    report = ExportReport()
    actions = _anchor_actions(journey)
    for step in journey.steps:
        built = _StepExport(step)
        actions.append(built.build())
        if missing := built.extension_only():
            report.extension_only[step.id] = missing
    header = {k: v for k, v in journey_to_dict(journey).items() if k != "steps"}
    report.journey_only = [k for k in header if k not in ("name", "title", "description")]
    plan: dict[str, Any] = {
        "resourceType": "PlanDefinition", "id": journey.name, "url": f"{BASE}/PlanDefinition/{journey.name}",
        "version": journey.version, "name": journey.name, "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/plan-definition-type",
                             "code": "workflow-definition"}]},
        "extension": [{"url": JOURNEY_EXTENSION, "valueString": json.dumps(header, ensure_ascii=False)}],
        "action": actions,
    }
    if journey.title:
        plan["title"] = journey.title
    if journey.description:
        plan["description"] = journey.description
    PlanDefinition.model_validate(plan)  # what we write must read back in any FHIR tool
    return plan, report
