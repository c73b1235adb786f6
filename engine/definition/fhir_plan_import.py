"""A FHIR ``PlanDefinition`` back into a journey (issue 23): ``carepath journeys import FILE``.

A PlanDefinition carepath exported carries each step and the journey header in its extensions
(:mod:`carepath.definition.fhir_plan`): those are read back as they are, so the round trip is lossless.
A foreign PlanDefinition is mapped from standard elements, action by action:

- the start: a ``relatedAction`` to another step's action (``after_step``, its ``offsetDuration`` the delay),
  to an anchor action (``before``/``after`` with the offset; ``every`` where ``timingTiming`` repeats), or a
  ``named-event`` ``trigger`` (``on``, ``timingDuration`` the delay);
- an ``applicability`` condition in ``text/x-carepath`` becomes the step's condition;
- a ``practitioner`` participant makes a staff task (its role's text the team), any other a message: its
  template from the template extension, else ``textEquivalent`` (as a new template), its channels from the
  channel extension, else ``sms``.

The journey enrolls on the named events of the anchor actions (else of the event-started actions). An action
that cannot be mapped is left out and named in the report with the reason; assumptions (a default channel or
stage) are reported too. The result is checked as any journey file is.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Collection

from carepath.definition.fhir_plan import (ANCHOR_PREFIX, CATEGORY_SYSTEM, CHANNEL_EXTENSION, EXPRESSION_LANGUAGE,
                                           JOURNEY_EXTENSION, KIND_SYSTEM, ROLE_SYSTEM, STAGE_SYSTEM, STEP_EXTENSION,
                                           TEMPLATE_EXTENSION, step_id_of)
from carepath.definition.journey_files import read_journey_text
from carepath.definition.model import Journey, Step
from carepath.definition.validation import Problem

__all__ = ["PlanImportError", "ImportReport", "import_plan", "read_plan_text"]

#: UCUM time units (and the Timing period units, the same codes) as carepath duration units, with a factor
_UNITS = {"s": ("s", 1), "min": ("m", 1), "h": ("h", 1), "d": ("d", 1), "wk": ("d", 7), "mo": ("mo", 1),
          "a": ("y", 1)}


class PlanImportError(ValueError):
    """The input is not a PlanDefinition carepath can read (not JSON, another resource, invalid FHIR)."""


@dataclass
class ImportReport:
    """Actions left out (with the reason), assumptions made, and the journey's problems, if any."""

    unmapped: dict[str, str] = field(default_factory=dict)
    assumed: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"action {name}: not imported: {reason}" for name, reason in self.unmapped.items()]
        out += [f"assumed: {note}" for note in self.assumed]
        out += [str(p) for p in self.problems]
        return out or ["every action imported"]


def read_plan_text(text: str, source: str = "input") -> dict[str, Any]:
    """The PlanDefinition JSON in ``text``, validated by ``fhir.resources``; :class:`PlanImportError` otherwise."""
    from fhir.resources.R4B.plandefinition import PlanDefinition
    from pydantic import ValidationError

    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PlanImportError(f"{source}: not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("resourceType") != "PlanDefinition":
        kind = data.get("resourceType") if isinstance(data, dict) else type(data).__name__
        raise PlanImportError(f"{source}: not a FHIR PlanDefinition (resourceType: {kind or 'missing'})")
    try:
        PlanDefinition.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise PlanImportError(f"{source}: invalid PlanDefinition at {where}: {first['msg']} "
                              f"({exc.error_count()} problem(s))") from None
    return data


def _extension(element: dict[str, Any], url: str) -> list[Any]:
    return [next((v for k, v in e.items() if k.startswith("value")), None)
            for e in element.get("extension") or [] if e.get("url") == url]


def _code(element: dict[str, Any], system: str) -> str | None:
    for concept in element.get("code") or []:
        for coding in concept.get("coding") or []:
            if coding.get("system") == system:
                return coding.get("code")
    return None


def _amount(value: Any, unit: str | None) -> str | None:
    """``value`` of a UCUM time ``unit`` as a carepath duration text (``2d``); None for a unit carepath lacks or a
    fraction."""
    known = _UNITS.get(unit or "")
    if known is None or not isinstance(value, (int, float)) or float(value) != int(value):
        return None
    return f"{int(value) * known[1]}{known[0]}"


def _span(duration: dict[str, Any] | None) -> str | None:
    """A FHIR Duration as a carepath duration text; None when absent or not countable."""
    if not duration:
        return None
    return _amount(duration.get("value"), duration.get("code") or duration.get("unit"))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "imported"


class _ActionMapper:
    """Maps one foreign action to a step (journey-file data), or says why it cannot."""

    def __init__(self, anchors: dict[str, str], steps: set[str], report: ImportReport, templates: dict) -> None:
        self.anchors, self.steps, self.report, self.templates = anchors, steps, report, templates

    def step(self, action: dict[str, Any], step_id: str) -> dict[str, Any]:
        """The step data; raises ValueError with the reason when the action cannot be mapped."""
        if action.get("action"):
            raise ValueError("it groups sub-actions; carepath steps do not nest")
        data: dict[str, Any] = {"id": step_id, "stage": self._stage(action, step_id)}
        if category := _code(action, CATEGORY_SYSTEM):
            data["category"] = category
        data.update(self._trigger(action))
        if condition := self._condition(action):
            data["when"] = condition
        data.update(self._doing(action, step_id))
        if action.get("description"):
            data["description"] = action["description"]
        return data

    def _stage(self, action: dict[str, Any], step_id: str) -> str:
        stage = _code(action, STAGE_SYSTEM)
        if stage is None:
            self.report.assumed.append(f"step {step_id}: stage post_visit (the action names none)")
        return stage or "post_visit"

    def _trigger(self, action: dict[str, Any]) -> dict[str, Any]:
        for related in action.get("relatedAction") or []:
            target, relationship = related.get("actionId", ""), related.get("relationship", "")
            offset = related.get("offsetDuration")
            delay = _span(offset) if offset else "0s"
            if delay is None:
                raise ValueError(f"its offset {offset} is in a unit carepath cannot count")
            if target in self.anchors:
                anchor = self.anchors[target]
                if (repeat := (action.get("timingTiming") or {}).get("repeat")) is not None:
                    return {"every": self._every(repeat, anchor, delay)}
                if relationship in ("before-start", "before", "before-end"):
                    return {"before": {"anchor": anchor, "offset": delay}}
                if relationship in ("after-start", "after", "after-end", "concurrent-with-start"):
                    return {"after": {"anchor": anchor, "offset": delay}}
                raise ValueError(f"relationship {relationship!r} to an anchor has no carepath counterpart")
            if step_id_of(target) in self.steps:
                if relationship not in ("after-end", "after", "after-start"):
                    raise ValueError(f"relationship {relationship!r} to another step: carepath only follows a step")
                return {"after_step": {"step": step_id_of(target), "delay": delay}}
            raise ValueError(f"relatedAction names {target!r}, which is no imported action")
        events = [t.get("name") for t in action.get("trigger") or [] if t.get("type") == "named-event" and t.get("name")]
        if len(events) == 1:
            delay = _span(action.get("timingDuration")) if action.get("timingDuration") else "0s"
            if delay is None:
                raise ValueError(f"its timingDuration {action['timingDuration']} is in a unit carepath cannot count")
            return {"on": {"event": events[0], "delay": delay}}
        if len(events) > 1:
            raise ValueError(f"it starts on several events ({', '.join(events)}); a carepath step starts on one")
        kinds = sorted({t.get("type", "?") for t in action.get("trigger") or []})
        raise ValueError("no named-event trigger or relatedAction carepath can plan"
                         + (f" (trigger types: {', '.join(kinds)})" if kinds else ""))

    @staticmethod
    def _every(repeat: dict[str, Any], anchor: str, start: str) -> dict[str, Any]:
        interval = _amount(repeat.get("period"), repeat.get("periodUnit"))
        if interval is None or repeat.get("frequency", 1) != 1:
            raise ValueError(f"its timing repeat {repeat} is not one occurrence per whole period")
        every: dict[str, Any] = {"interval": interval, "anchor": anchor, "start": start}
        if repeat.get("count") is not None:
            every["count"] = repeat["count"]
        return every

    @staticmethod
    def _condition(action: dict[str, Any]) -> str | None:
        texts = []
        for condition in action.get("condition") or []:
            expression = condition.get("expression") or {}
            if condition.get("kind") != "applicability":
                raise ValueError(f"a {condition.get('kind')!r} condition has no carepath counterpart")
            if expression.get("language") != EXPRESSION_LANGUAGE:
                raise ValueError(f"its condition is in {expression.get('language')!r}; carepath reads "
                                 f"{EXPRESSION_LANGUAGE} expressions")
            texts.append(str(expression.get("expression") or ""))
        if len(texts) < 2:
            return texts[0] if texts else None
        return " and ".join(f"({t})" for t in texts)

    def _doing(self, action: dict[str, Any], step_id: str) -> dict[str, Any]:
        participants = action.get("participant") or []
        kind = _code(action, KIND_SYSTEM)
        if kind == "task" or any(p.get("type") == "practitioner" for p in participants):
            team = next((p.get("role", {}).get("text") for p in participants if p.get("type") == "practitioner"),
                        None)
            task = action.get("textEquivalent") or action.get("title") or step_id
            return {"task": {"task": task, "team": team or "nursing"}}
        if kind not in (None, "send"):
            raise ValueError(f"a {kind} action needs the carepath step extension, which this action lacks")
        template = next(iter(_extension(action, TEMPLATE_EXTENSION)), None)
        if template is None:
            body = action.get("textEquivalent") or action.get("description")
            if not body:
                raise ValueError("no template extension and no textEquivalent to send")
            template = step_id
            self.templates[template] = {"body": body}
        via = [c for c in _extension(action, CHANNEL_EXTENSION) if c]
        if not via:
            via = ["sms"]
            self.report.assumed.append(f"step {step_id}: channel sms (the action names none)")
        return {"send": {"template": template, "via": via}}


def _without_orphans(steps: list[dict[str, Any]], report: ImportReport) -> list[dict[str, Any]]:
    """Leave out (and report) the steps that follow a step that was not imported, transitively."""
    while True:
        ids = {s["id"] for s in steps}
        orphans = [s for s in steps if "after_step" in s and s["after_step"]["step"] not in ids]
        if not orphans:
            return steps
        for s in orphans:
            report.unmapped[s["id"]] = f"it follows step {s['after_step']['step']}, which was not imported"
        steps = [s for s in steps if s not in orphans]


def _foreign(plan: dict[str, Any], report: ImportReport) -> dict[str, Any]:
    """Journey-file data mapped from a PlanDefinition's standard elements."""
    actions = plan.get("action") or []
    anchors = {a["id"]: a.get("title") or a["id"][len(ANCHOR_PREFIX):] for a in actions
               if a.get("id") and (_code(a, ROLE_SYSTEM) == "anchor" or a["id"].startswith(ANCHOR_PREFIX))}
    enroll = [t["name"] for a in actions if a.get("id") in anchors for t in a.get("trigger") or []
              if t.get("type") == "named-event" and t.get("name")]
    templates: dict[str, dict] = {}
    step_ids = {step_id_of(a.get("id") or "") for a in actions if a.get("id") not in anchors}
    mapper = _ActionMapper({k: ("enrolled" if v == "enrolled" else v) for k, v in anchors.items()}, step_ids,
                           report, templates)
    steps = []
    for n, action in enumerate(actions):
        if action.get("id") in anchors:
            continue
        name = action.get("id") or action.get("title") or f"#{n + 1}"
        step_id = step_id_of(action["id"]) if action.get("id") else _slug(action.get("title") or f"action-{n + 1}")
        try:
            steps.append(mapper.step(action, step_id))
        except ValueError as exc:
            report.unmapped[name] = str(exc)
    steps = _without_orphans(steps, report)
    if not enroll:
        enroll = list(dict.fromkeys(s["on"]["event"] for s in steps if "on" in s))
    data: dict[str, Any] = {"name": _slug(plan.get("name") or plan.get("id") or "imported"),
                            "title": plan.get("title") or "", "description": plan.get("description") or "",
                            "enroll": {"events": enroll},
                            "anchors": {v: {"set_by": [t["name"] for t in a.get("trigger") or []
                                                       if t.get("type") == "named-event"]}
                                        for a in actions if (v := anchors.get(a.get("id"))) and v != "enrolled"},
                            "steps": steps}
    if templates:
        data["templates"] = templates
    return data


def _compare(action: dict[str, Any], step: Step, report: ImportReport) -> None:
    """Note where an action's standard elements no longer say what its carepath step extension says (edited in
    another tool): the extension is used, and the report names the elements that differ."""
    from carepath.definition.fhir_plan import STANDARD_ELEMENTS, standard_elements

    expected = standard_elements(step)
    given = {k: action[k] for k in STANDARD_ELEMENTS if k in action}
    given["extension"] = [e for e in action.get("extension") or [] if e.get("url") in (CHANNEL_EXTENSION,
                                                                                      TEMPLATE_EXTENSION)]
    differ = [k for k in (*STANDARD_ELEMENTS, "extension") if given.get(k) != expected.get(k)]
    if differ:
        report.assumed.append(f"step {step.id}: standard elements differ from its carepath step extension: "
                              f"{', '.join(differ)}; the extension was used (edit the journey in carepath and "
                              f"export it again)")


def import_plan(plan: dict[str, Any], source: str = "input", *, known_templates: Collection[str] | None = None,
                known_channels: Collection[str] | None = None) -> tuple[Journey | None, ImportReport]:
    """The journey a PlanDefinition describes (None when it does not validate) and the import report; template
    and channel names are checked against the sets given (None skips the check)."""
    report = ImportReport()
    header = next(iter(_extension(plan, JOURNEY_EXTENSION)), None)
    if header is not None:
        data = json.loads(header)
        steps, carrying = [], []
        for n, action in enumerate(plan.get("action") or []):
            carried = next(iter(_extension(action, STEP_EXTENSION)), None)
            if carried is not None:
                steps.append(json.loads(carried))
                carrying.append(action)
            elif _code(action, ROLE_SYSTEM) != "anchor":
                report.unmapped[action.get("id") or f"#{n + 1}"] = \
                    "added outside carepath: it has no carepath step extension (re-export from carepath to add steps)"
        data["steps"] = steps
    else:
        data, carrying = _foreign(plan, report), []
    journey, problems = read_journey_text(json.dumps(data, ensure_ascii=False), file=source,
                                          known_templates=known_templates, known_channels=known_channels)
    report.problems = list(problems)
    if journey is not None:
        for action, step in zip(carrying, journey.steps):
            _compare(action, step, report)
    return (journey if not problems else None), report
