"""Semantic checks on a journey: what pydantic cannot see on one field alone.

Every check reports a :class:`Problem` naming the step and the field path as an
integrator writes it in YAML (``steps[2].before.offset``); ``lines`` maps those
paths to line numbers when the journey came from a file.

Beyond shape and ranges it checks what fails at run time: event types against
the catalogue, every template and condition against what can reach it
(:mod:`carepath.definition.reach`), private attributes, constant parts that go
past the sandbox's limits, and templates a configured channel cannot send.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Collection, Iterator, Mapping

from carepath.definition import expression_checks as checks
from carepath.definition.catalog import EventType, event_types
from carepath.definition.durations import CalendarDuration, for_range_checks, format_duration
from carepath.definition.expressions import ExpressionError, compile_condition, compile_template
from carepath.definition.checkin_checks import check_checkins
from carepath.definition.model import (ENROLLED, AfterStep, AnchorOffset, Calendar, Every, Idle, Journey, OnEvent,
                                       Send, Step)
from carepath.definition.programme_checks import check_chosen_time, check_programme  # issue 19
from carepath.definition.family_checks import check_recipients  # issue 19
from carepath.definition.experiment_checks import check_experiment, check_journey_experiment  # issue 23
from carepath.definition.reach import (Scope, check_uses, enroll_scope, exit_scope, step_scope, suggest,
                                       unused_scope)

DAY = timedelta(days=1)
MAX_OFFSET = 366 * DAY
MIN_INTERVAL = timedelta(hours=1)
MAX_UNTIL = 3 * 365 * DAY
MAX_GRACE = 30 * DAY
MAX_COUNT = 1000
MAX_IDLE_DAYS = 365


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a journey, located as precisely as known."""

    message: str
    file: str | None = None
    step: str | None = None
    field: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = ":".join(str(part) for part in (self.file, self.line) if part is not None)
        context = ", ".join(part for part in (
            f"step '{self.step}'" if self.step is not None else None,
            f"field {self.field}" if self.field is not None else None,
        ) if part)
        return ": ".join(part for part in (where, context, self.message) if part)


def line_of(lines: Mapping[str, int] | None, path: str | None) -> int | None:
    """The line of ``path`` or of its nearest ancestor that has one."""
    if not lines or path is None:
        return None
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return lines.get("")


class Reporter:
    """Collects problems, filling in file and line from the field path."""

    def __init__(self, file: str | None, lines: Mapping[str, int] | None,
                 catalogue: Mapping[str, EventType] | None = None):
        self.file = file
        self.lines = lines
        self.problems: list[Problem] = []
        self.catalogue = catalogue if catalogue is not None else event_types()

    def add(self, message: str, field: str | None = None, step: str | None = None, line: int | None = None) -> None:
        """Record a problem (once); ``line`` defaults to the line of ``field``."""
        problem = Problem(message, self.file, step, field, line or line_of(self.lines, field))
        if problem not in self.problems:
            self.problems.append(problem)


def validate_journey(journey: Journey, *, known_templates: Collection[str] | None,
                     known_channels: Collection[str] | None, file: str | None = None,
                     lines: Mapping[str, int] | None = None, channels: Mapping[str, Any] | None = None,
                     catalogue: Mapping[str, EventType] | None = None) -> list[Problem]:
    """Report every semantic problem of ``journey``.

    ``known_templates`` are templates available besides the journey's own
    (names, or a mapping of names to ``Template`` objects, which are then
    checked against the steps that send them too) and ``known_channels`` the
    installed channels; ``None`` skips that check.
    ``channels`` (configured ``Channel`` instances by name) adds the check that
    each can send the templates routed to it; ``catalogue`` defaults to every
    known event type.
    """
    report = Reporter(file, lines, catalogue)
    _check_journey_rules(journey, report)
    _check_event_types(journey, report)
    ids = [step.id for step in journey.steps]
    seen: set[str] = set()
    for index, step in enumerate(journey.steps):
        prefix = f"steps[{index}]"
        if step.id in seen:
            report.add(f"duplicate step id '{step.id}'", f"{prefix}.id", step.id)
        seen.add(step.id)
        check_trigger(journey.anchors, step.trigger, prefix, step.id, report, ids)
        if isinstance(step.trigger, Idle) and step.category.value == "urgent":
            report.add("an idle step reaches out to a quiet patient: it cannot be urgent (use clinical or "
                       "marketing)", f"{prefix}.category", step.id)
        if isinstance(step.trigger, Calendar) and step.category.value == "urgent":  # issue 19
            report.add("a calendar moment (a greeting) cannot be urgent: it would bypass quiet hours and caps",
                       f"{prefix}.category", step.id)
        _check_action(journey, step, prefix, known_templates, known_channels, channels or {}, report)
        check_experiment(journey, step, prefix, known_templates, known_channels, report)
        _check_condition(step.condition, _condition_path(prefix, lines), report, step_scope(journey, step), step.id)
        _check_range(step.missed.grace, timedelta(0), MAX_GRACE, f"{prefix}.missed.grace", report, step.id)
    check_journey_experiment(journey, known_templates, known_channels, report)
    check_recipients(journey, report)  # issue 19: family and guardians
    _check_templates(journey, report, known_templates if isinstance(known_templates, Mapping) else {})
    return report.problems


def _check_journey_rules(journey: Journey, report: Reporter) -> None:
    if journey.reentry == "per_key" and not journey.key:
        report.add("reentry 'per_key' needs a key: the event payload field that identifies the episode",
                   "reentry")
    _check_condition(journey.enroll.condition, "enroll.condition", report, enroll_scope(journey))
    _check_condition(journey.exit.condition, "exit.condition", report, exit_scope(journey))
    check_programme(journey, report)  # issue 19
    check_checkins(journey, report)  # issue 19: check-ins and readings


def _event_type_fields(journey: Journey) -> Iterator[tuple[str, str, str | None]]:
    """(event type, field path, step id) for every event type a journey names."""
    for i, name in enumerate(journey.enroll.events):
        yield name, f"enroll.events[{i}]", None
    for i, name in enumerate(journey.exit.events):
        yield name, f"exit.events[{i}]", None
    for anchor, rule in journey.anchors.items():
        for key in ("set_by", "cancelled_by"):
            for i, name in enumerate(getattr(rule, key)):
                yield name, f"anchors.{anchor}.{key}[{i}]", None
    for key in ("pause_on", "resume_on"):  # issue 19
        for i, name in enumerate(getattr(journey, key) or []):
            yield name, f"{key}[{i}]", None
    for i, step in enumerate(journey.steps):
        if isinstance(step.trigger, OnEvent):
            yield step.trigger.event, f"steps[{i}].on.event", step.id


def _check_event_types(journey: Journey, report: Reporter) -> None:
    """Unknown event types anywhere; anchor ``field`` and journey ``key`` against the payloads."""
    known = report.catalogue
    for name, field, step_id in _event_type_fields(journey):
        if name not in known:
            report.add(f"unknown event type '{name}'{suggest(name, known)} "
                       "(`carepath events types` lists the known ones; plugins add more)", field, step_id)
    for anchor, rule in journey.anchors.items():
        for name in (rule.set_by if rule.field else []):
            _check_payload_field(known.get(name), rule.field, f"anchors.{anchor}.field", report, date_time=True)
    if journey.key:
        for name in journey.enroll.events:
            _check_payload_field(known.get(name), journey.key, "key", report)


def _check_payload_field(event_type: EventType | None, name: str, field: str, report: Reporter,
                         date_time: bool = False) -> None:
    if event_type is None:
        return
    found = event_type.field(name)
    if found is None:
        report.add(f"{event_type.name} has no payload field '{name}'"
                   f"{suggest(name, [f.name for f in event_type.fields()])}", field)
    elif date_time and "date-time" not in found.type:
        report.add(f"payload field '{name}' of {event_type.name} is {found.type}, not a date-time", field)


def _check_templates(journey: Journey, report: Reporter, provided: Mapping[str, Any]) -> None:
    """Each journey template against every step that sends it (or, unused, against the journey);
    each template ``provided`` by a plugin against the steps of this journey that send it."""
    senders: dict[str, list[tuple[int, Step]]] = {}
    for index, step in enumerate(journey.steps):
        if isinstance(step.action, Send):
            senders.setdefault(step.action.template, []).append((index, step))
    for name, tpl in journey.templates.items():
        users = [(step.id, step_scope(journey, step)) for _, step in senders.get(name, [])]
        for part in ("title", "body"):
            _check_expression(getattr(tpl, part), f"templates.{name}.{part}", report, None, compile_template,
                              "template", users or [(None, unused_scope(journey))])
    for name, users in senders.items():
        tpl = provided.get(name) if name not in journey.templates else None
        for index, step in users if tpl is not None else []:
            for part in ("title", "body"):
                _check_expression(getattr(tpl, part, ""), f"steps[{index}].send.template", report, step.id,
                                  compile_template, "template", [(step.id, step_scope(journey, step))],
                                  label=f"plugin template '{name}' {part}: ")


def _condition_path(prefix: str, lines: Mapping[str, int] | None) -> str:
    """Steps accept ``when:`` or ``condition:``; name the one the file used."""
    if lines and f"{prefix}.condition" in lines:
        return f"{prefix}.condition"
    return f"{prefix}.when"


def _check_condition(source: str | None, field: str, report: Reporter, scope: Scope,
                     step: str | None = None) -> None:
    _check_expression(source, field, report, step, compile_condition, "condition", [(step, scope)])


def _check_expression(source: str | None, field: str, report: Reporter, step: str | None,
                      compile_fn: Callable[[str], Any], what: str, scopes: list[tuple[str | None, Scope]],
                      label: str = "") -> None:
    """Syntax, private attributes and constant parts past a limit (reported for ``step``), then the
    names that would be undefined where each of ``scopes`` reaches it (reported for its step)."""
    if not source:
        return
    try:
        compile_fn(source)
    except ExpressionError as exc:
        report.add(f"{label}{what} syntax error: {_syntax_message(exc)}", field, step)
        return
    tree = checks.parse(source, condition=what == "condition")
    if tree is None:
        return
    multi_line = "\n" in source

    def add(message: str, line: int, step_id: str | None) -> None:
        where = f"line {line} of the {what}: " if multi_line else ""
        report.add(f"{label}{where}{message}", field, step_id)

    for attribute, line in checks.private_attributes(tree):
        add(f"'{attribute}' is private: templates and conditions may not reach for private or dunder "
            "attributes", line, step)
    for message, line in checks.constant_failures(tree, source):
        add(message, line, step)
    if what == "condition":
        from carepath.definition.segment_checks import unknown_segments
        from carepath.definition.segments import configured_segments

        for message, line in unknown_segments(source, configured_segments().segments):
            add(message, line, step)
    found = checks.uses(tree)
    for step_id, scope in scopes:
        for message, line in check_uses(found, scope, report.catalogue):
            add(message, line, step_id)


def _syntax_message(exc: ExpressionError) -> str:
    """Jinja's message in the author's terms, with the position and the text there."""
    message = exc.message
    lines = exc.source.splitlines() or [""]
    text = lines[min(exc.line or 1, len(lines)) - 1]
    if "'}'" in message and "}" not in exc.source:  # the closing braces we wrapped a condition in
        message = message.replace("'}'", "end of expression")
    position = f" (line {exc.line or 1}" + (f", column {exc.column})" if exc.column else ")")
    shown = text if len(text) <= 80 else text[:77] + "..."
    if exc.column and exc.column <= len(text):
        return f'{message}{position} at "{text[exc.column - 1:exc.column + 19]}" in "{shown}"'
    return f'{message}{position} at the end of "{shown}"' if text else f"{message}{position}"


def _check_range(value: timedelta | CalendarDuration | None, low: timedelta, high: timedelta, field: str,
                 report: Reporter, step: str, hint: str = "") -> None:
    if value is None or low <= for_range_checks(value) <= high:
        return
    report.add(f"{format_duration(value)} is out of range: must be between {format_duration(low)} "
               f"and {format_duration(high)}{hint}", field, step)


def _trigger_durations(t: Any, prefix: str) -> Iterator[tuple[timedelta | None, timedelta, timedelta, str]]:
    """(value, low, high, field) for every duration of a trigger."""
    at = f"{prefix}.{t.kind}"
    ranges: dict[str, tuple[timedelta, timedelta]] = {}
    if isinstance(t, AnchorOffset):
        ranges = {"offset": (timedelta(0), MAX_OFFSET)}
    elif isinstance(t, (OnEvent, AfterStep)):
        ranges = {"delay": (timedelta(0), MAX_OFFSET)}
    elif isinstance(t, Every):
        ranges = {"start": (timedelta(0), MAX_OFFSET), "interval": (MIN_INTERVAL, MAX_OFFSET),
                  "until": (timedelta(0), MAX_UNTIL)}
    for name, (low, high) in ranges.items():
        yield getattr(t, name, None), low, high, f"{at}.{name}"


def check_trigger(anchors: Mapping[str, Any] | None, t: Any, prefix: str, step_id: str | None,
                  report: Reporter, ids: list[str] | None = None) -> None:
    """Every problem of one trigger; ``t`` may be partial (``model_construct`` of the fields that parsed).

    ``anchors`` (the journey's anchor rules) and ``ids`` (its step ids) are
    None when unknown, which skips those checks.
    """
    for value, low, high, field in _trigger_durations(t, prefix):
        hint = " (a negative 'before' offset is an 'after')" if (
            isinstance(t, AnchorOffset) and t.kind == "before" and value is not None
            and for_range_checks(value) < timedelta(0)) else ""
        _check_range(value, low, high, field, report, step_id, hint)
    count, until = getattr(t, "count", None), getattr(t, "until", None)
    if isinstance(t, Every) and count is not None and not 1 <= count <= MAX_COUNT:
        report.add(f"count {count} is out of range: must be between 1 and {MAX_COUNT}",
                   f"{prefix}.every.count", step_id)
    if isinstance(t, Every) and count is not None and until is not None:
        report.add("every takes count or until, not both: they conflict (keep the one you mean)",
                   f"{prefix}.every.until", step_id)
    days = getattr(t, "days", None)
    if isinstance(t, Idle) and days is not None and not 1 <= days <= MAX_IDLE_DAYS:
        report.add(f"idle days {days} is out of range: must be between 1 and {MAX_IDLE_DAYS}",
                   f"{prefix}.idle.days", step_id)
    check_chosen_time(t, prefix, step_id, report)  # issue 19
    anchor = getattr(t, "anchor", None)
    if isinstance(t, (AnchorOffset, Every)) and anchors is not None and anchor is not None:
        _check_anchor(anchors, anchor, f"{prefix}.{t.kind}.anchor", report, step_id)
    if isinstance(t, AfterStep) and ids is not None and getattr(t, "step", None) is not None:
        _check_step_reference(t.step, step_id, ids, f"{prefix}.after_step.step", report)


def _check_anchor(anchors: Mapping[str, Any], anchor: str, field: str, report: Reporter, step: str | None) -> None:
    if anchor == ENROLLED:
        return
    rule = anchors.get(anchor)
    if rule is None:
        known = sorted(anchors) + [ENROLLED]
        report.add(f"no event sets anchor '{anchor}': declare it under anchors with set_by events"
                   f"{suggest(anchor, known)}", field, step)
    elif not rule.set_by:
        report.add(f"no event sets anchor '{anchor}': its set_by list is empty", field, step)


def _check_step_reference(target: str, own: str | None, ids: list[str], field: str, report: Reporter) -> None:
    if target == own:
        report.add("after_step names the step itself", field, own)
    elif target not in ids:
        report.add(f"after_step names unknown step '{target}'{suggest(target, ids)}", field, own)


def _check_action(journey: Journey, step: Step, prefix: str, known_templates: Collection[str] | None,
                  known_channels: Collection[str] | None, channels: Mapping[str, Any], report: Reporter) -> None:
    action = step.action
    if not isinstance(action, Send):
        return
    if known_templates is not None:
        available = set(journey.templates) | set(known_templates)
        if action.template not in available:
            report.add(f"unknown template '{action.template}'{suggest(action.template, available)}",
                       f"{prefix}.send.template", step.id)
    if known_channels is not None:
        known = ", ".join(sorted(known_channels)) or "none installed"
        for i, channel in enumerate(action.via):
            if channel not in known_channels:
                report.add(f"unknown channel '{channel}' (known channels: {known})",
                           f"{prefix}.send.via[{i}]", step.id)
    for i, channel in enumerate(action.via):
        if channel in channels and channels[channel].unmapped_templates([action.template]):
            report.add(f"channel '{channel}' cannot send template '{action.template}': map it to a provider "
                       f"template under [connectors.{channel}.templates.{action.template}] in carepath.toml",
                       f"{prefix}.send.via[{i}]", step.id)
