"""What can reach a template or condition, and whether what it reads is there.

At run time an expression sees ``patient``, ``event`` (the payload of the event
that enrolled the patient, or of the event an ``on`` step fires on), ``anchors``
(those set so far) and ``journey``. A :class:`Scope` says which event types and
anchors can reach one place of a journey; :func:`check_uses` reports each path
that would be undefined there (strict undefined fails the send), with a "did
you mean" and, for a value that may be missing, the fix with a default.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Collection, Mapping

from carepath.definition.catalog import EventType
from carepath.definition.context import CONTEXT_NAMES, patient_fields, recipient_fields
from carepath.definition.expression_checks import Use
from carepath.definition.sandbox import environment
from carepath.definition.model import ENROLLED, AnchorOffset, Checkin, Every, Journey, OnEvent, Reading, Step, Survey

_DEFAULTS = {"true/false": "false", "integer": "0", "number": "0", "text": "''"}
SURVEY_FIELDS = frozenset({"name", "link"})  # what a survey invitation template sees as ``survey``
CHECKIN_FIELDS = frozenset({"name", "link"})  # issue 19: what a check-in prompt sees as ``checkin``


@dataclass(frozen=True)
class Scope:
    """What reaches one place: the event types whose payload is ``event`` and the anchors it may read.

    ``declared`` are the anchors that exist there at all (empty: ``anchors`` is
    empty, as in enrollment and exit conditions); ``certain`` those surely set.
    An empty ``events`` leaves payload fields unchecked.
    """

    where: str
    events: tuple[str, ...]
    declared: frozenset[str]
    certain: frozenset[str]
    extras: Mapping[str, frozenset[str]] = field(default_factory=dict)  # more names and their fields
    cleared: frozenset[str] = frozenset()  # anchors the triggering event cancels: empty when the step runs


def _anchors_set_by(journey: Journey, event_types: tuple[str, ...]) -> set[str]:
    """Anchors every one of ``event_types`` sets."""
    return {name for name, rule in journey.anchors.items()
            if event_types and all(t in rule.set_by for t in event_types)}


def enroll_scope(journey: Journey) -> Scope:
    return Scope("the enrollment condition", tuple(journey.enroll.events), frozenset(), frozenset())


def exit_scope(journey: Journey) -> Scope:
    return Scope("the exit condition", tuple(journey.exit.events), frozenset(), frozenset())


def step_scope(journey: Journey, step: Step) -> Scope:
    declared = frozenset(journey.anchors) | {ENROLLED}
    enrolled_by = tuple(journey.enroll.events)
    certain = {ENROLLED} | _anchors_set_by(journey, enrolled_by)
    if isinstance(step.trigger, (AnchorOffset, Every)):
        certain.add(step.trigger.anchor)
    extras = {"survey": SURVEY_FIELDS} if isinstance(step.action, Survey) else {}
    if isinstance(step.action, Checkin):
        extras = {"checkin": CHECKIN_FIELDS}
    if isinstance(step.trigger, Reading):  # issue 19: runs on the reading that completed the episode
        return Scope(f"step '{step.id}' (reading)", ("vitals.reading",), declared, frozenset(certain), extras)
    if isinstance(step.trigger, OnEvent):
        event = step.trigger.event
        certain |= _anchors_set_by(journey, (event,))
        # the event moves anchors before its ``on`` steps are planned: one it cancels is gone by then
        cleared = frozenset(name for name, rule in journey.anchors.items() if event in rule.cancelled_by)
        return Scope(f"step '{step.id}' (on {event})", (event,), declared, frozenset(certain - cleared), extras,
                     cleared)
    return Scope(f"step '{step.id}' (enrolled by {', '.join(enrolled_by)})", enrolled_by, declared,
                 frozenset(certain), extras)


def unused_scope(journey: Journey) -> Scope:
    """For a template no step sends: names are checked, payload fields and anchor timing are not."""
    declared = frozenset(journey.anchors) | {ENROLLED}
    return Scope("a template no step sends", (), declared, declared)


def suggest(name: str, candidates: Collection[str]) -> str:
    """A ``"; did you mean 'x'?"`` hint, or an empty string."""
    close = difflib.get_close_matches(name, sorted(candidates), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def check_uses(found: list[Use], scope: Scope, catalogue: Mapping[str, EventType]) -> list[tuple[str, int]]:
    """``(message, line)`` for every path in ``found`` that would be undefined in ``scope``."""
    problems: list[tuple[str, int]] = []
    visible = (*CONTEXT_NAMES, *scope.extras)
    known_names = set(visible) | set(environment().globals)
    for use in found:
        if use.root not in known_names:
            problems.append((f"unknown name '{use.root}'{suggest(use.root, visible)} "
                             f"({scope.where} sees {', '.join(visible)})", use.line))
        elif use.path and not use.path[0].startswith("_"):  # private names are refused on their own
            check = {"patient": _patient, "event": _event, "anchors": _anchor,
                     "recipient": _recipient}.get(use.root, _extra)
            message = check(use, scope, catalogue)
            if message:
                problems.append((message, use.line))
    return problems


def _patient(use: Use, scope: Scope, catalogue: Mapping[str, EventType]) -> str | None:
    name = use.path[0]
    known = patient_fields()
    if name == "portrait" and len(use.path) > 1:
        from carepath.definition.portrait import portrait_fields

        fields = portrait_fields()
        field_name = use.path[1]
        if field_name in fields:
            return None
        return (f"patient.portrait has no field '{field_name}'{suggest(field_name, fields)} "
                "(its fields are listed in docs/segments.md)")
    if name in known:
        return None
    return f"patient has no field '{name}'{suggest(name, known)} (patient fields: {', '.join(sorted(known))})"


def _recipient(use: Use, scope: Scope, catalogue: Mapping[str, EventType]) -> str | None:
    known = recipient_fields()
    name = use.path[0]
    if name in known:
        return None
    return f"recipient has no field '{name}'{suggest(name, known)} (recipient fields: {', '.join(sorted(known))})"


def _event(use: Use, scope: Scope, catalogue: Mapping[str, EventType]) -> str | None:
    types = [catalogue[t] for t in scope.events if t in catalogue]
    if not types or use.guarded:
        return None
    name = use.path[0]
    fields = {t.name: t.field(name) for t in types}
    present = [f for f in fields.values() if f is not None]
    fix = f"`event.{name} | default({_DEFAULTS.get(present[0].type, 'none') if present else 'none'})`"
    names = ", ".join(fields)
    if not present:
        every = {f.name for t in types for f in t.fields()}
        return (f"{scope.where} is reached by {names}, whose payload has no field '{name}'{suggest(name, every)} "
                f"(fields: {', '.join(sorted(every))}); if your system sends it anyway, write {fix}")
    absent = [t for t, f in fields.items() if f is None]
    optional = [t for t, f in fields.items() if f is not None and not f.required]
    if not absent and not optional:
        return None
    how = "; ".join(part for part in (f"optional in {', '.join(optional)}" if optional else "",
                                      f"not in {', '.join(absent)}" if absent else "") if part)
    reaches = "reach" if len(absent) + len(optional) > 1 else "reaches"
    return (f"payload field '{name}' is {how}, which {reaches} {scope.where}: a send fails when it is missing; "
            f"write {fix}")


def _anchor(use: Use, scope: Scope, catalogue: Mapping[str, EventType]) -> str | None:
    name = use.path[0]
    if not scope.declared:
        return f"{scope.where} sees no anchors (they are set by enrolling)"
    if name not in scope.declared:
        return f"unknown anchor '{name}'{suggest(name, scope.declared)} (anchors: {', '.join(sorted(scope.declared))})"
    if name in scope.cleared and not use.guarded:
        event = scope.events[0]
        return (f"anchor '{name}' is cleared by {event}, the event that triggers {scope.where}: it has no value "
                f"when this step runs (a notice would print nothing, or fail); print the event's own field "
                f"instead (e.g. `event.start`, when {event} carries it) or write "
                f"`anchors.{name} | datetime(missing='...')`")
    if name not in scope.certain and use.none_test:
        return (f"`anchors.{name} is none` is false while anchor '{name}' is not set, as it may not be when "
                f"{scope.where} runs: an anchor not set yet is undefined, not none (strict undefined), so `is none` "
                f"is false and `is not none` true then; write `(anchors.{name} | default(none)) is none` "
                f"(or `anchors.{name} is not defined`)")
    if name not in scope.certain and not use.guarded:
        return (f"anchor '{name}' may not be set yet when {scope.where} runs: a send fails then; "
                f"write `anchors.{name} | default(none)`")
    return None


def _extra(use: Use, scope: Scope, catalogue: Mapping[str, EventType]) -> str | None:
    fields = scope.extras.get(use.root)
    name = use.path[0]
    if fields is None or name in fields:
        return None
    return f"{use.root} has no field '{name}'{suggest(name, fields)} ({use.root} fields: {', '.join(sorted(fields))})"
