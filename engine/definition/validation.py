"""Semantic checks on a journey: what pydantic cannot see on one field alone.

Every check reports a :class:`Problem` naming the step and the field path as an
integrator writes it in YAML (``steps[2].before.offset``); ``lines`` maps those
paths to line numbers when the journey came from a file.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import timedelta
from typing import Collection, Iterator, Mapping

from carepath.definition.durations import format_duration
from carepath.definition.expressions import ExpressionError, compile_condition, compile_template
from carepath.definition.model import ENROLLED, AfterStep, AnchorOffset, Every, Journey, OnEvent, Send, Step

DAY = timedelta(days=1)
MAX_OFFSET = 366 * DAY
MIN_INTERVAL = timedelta(hours=1)
MAX_UNTIL = 3 * 365 * DAY
MAX_GRACE = 30 * DAY
MAX_COUNT = 1000


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


def suggest(name: str, candidates: Collection[str]) -> str:
    """A ``"; did you mean 'x'?"`` hint, or an empty string."""
    close = difflib.get_close_matches(name, sorted(candidates), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


class Reporter:
    """Collects problems, filling in file and line from the field path."""

    def __init__(self, file: str | None, lines: Mapping[str, int] | None):
        self.file = file
        self.lines = lines
        self.problems: list[Problem] = []

    def add(self, message: str, field: str | None = None, step: str | None = None, line: int | None = None) -> None:
        """Record a problem; ``line`` defaults to the line of ``field``."""
        self.problems.append(Problem(message, self.file, step, field, line or line_of(self.lines, field)))


def validate_journey(journey: Journey, *, known_templates: Collection[str] | None,
                     known_channels: Collection[str] | None, file: str | None = None,
                     lines: Mapping[str, int] | None = None) -> list[Problem]:
    """Report every semantic problem of ``journey``.

    ``known_templates`` are templates available besides the journey's own and
    ``known_channels`` the installed channels; ``None`` skips that check. Given
    as channel instances by name, each channel's template map is checked too
    (``Channel.unmapped_templates``: Chinese SMS and WeChat send only mapped templates).
    """
    report = Reporter(file, lines)
    _check_journey_rules(journey, report)
    ids = [step.id for step in journey.steps]
    seen: set[str] = set()
    for index, step in enumerate(journey.steps):
        prefix = f"steps[{index}]"
        if step.id in seen:
            report.add(f"duplicate step id '{step.id}'", f"{prefix}.id", step.id)
        seen.add(step.id)
        _check_trigger(journey, step, prefix, ids, report)
        _check_action(journey, step, prefix, known_templates, known_channels, report)
        _check_condition(step.condition, _condition_path(prefix, lines), report, step.id)
        _check_range(step.missed.grace, timedelta(0), MAX_GRACE, f"{prefix}.missed.grace", report, step.id)
    return report.problems


def _check_journey_rules(journey: Journey, report: Reporter) -> None:
    if journey.reentry == "per_key" and not journey.key:
        report.add("reentry 'per_key' needs a key: the event payload field that identifies the episode",
                   "reentry")
    _check_condition(journey.enroll.condition, "enroll.condition", report)
    _check_condition(journey.exit.condition, "exit.condition", report)
    for name, tpl in journey.templates.items():
        for part in ("title", "body"):
            _check_expression(getattr(tpl, part), f"templates.{name}.{part}", report, None,
                              compile_template, "template")


def _condition_path(prefix: str, lines: Mapping[str, int] | None) -> str:
    """Steps accept ``when:`` or ``condition:``; name the one the file used."""
    if lines and f"{prefix}.condition" in lines:
        return f"{prefix}.condition"
    return f"{prefix}.when"


def _check_condition(source: str | None, field: str, report: Reporter, step: str | None = None) -> None:
    _check_expression(source, field, report, step, compile_condition, "condition")


def _check_expression(source: str | None, field: str, report: Reporter, step: str | None,
                      compile_fn, what: str) -> None:
    if not source:
        return
    try:
        compile_fn(source)
    except ExpressionError as exc:
        position = f" (line {exc.line or 1}" + (f", column {exc.column})" if exc.column else ")")
        report.add(f"{what} syntax error: {exc.message}{position}", field, step)


def _check_range(value: timedelta | None, low: timedelta, high: timedelta, field: str,
                 report: Reporter, step: str, hint: str = "") -> None:
    if value is None or low <= value <= high:
        return
    report.add(f"{format_duration(value)} is out of range: must be between {format_duration(low)} "
               f"and {format_duration(high)}{hint}", field, step)


def _trigger_durations(step: Step, prefix: str) -> Iterator[tuple[timedelta | None, timedelta, timedelta, str]]:
    """(value, low, high, field) for every duration of the step's trigger."""
    t = step.trigger
    at = f"{prefix}.{t.kind}"
    if isinstance(t, AnchorOffset):
        yield t.offset, timedelta(0), MAX_OFFSET, f"{at}.offset"
    elif isinstance(t, (OnEvent, AfterStep)):
        yield t.delay, timedelta(0), MAX_OFFSET, f"{at}.delay"
    elif isinstance(t, Every):
        yield t.start, timedelta(0), MAX_OFFSET, f"{at}.start"
        yield t.interval, MIN_INTERVAL, MAX_OFFSET, f"{at}.interval"
        yield t.until, timedelta(0), MAX_UNTIL, f"{at}.until"


def _check_trigger(journey: Journey, step: Step, prefix: str, ids: list[str], report: Reporter) -> None:
    t = step.trigger
    for value, low, high, field in _trigger_durations(step, prefix):
        hint = " (a negative 'before' offset is an 'after')" if (
            isinstance(t, AnchorOffset) and t.kind == "before" and value < timedelta(0)) else ""
        _check_range(value, low, high, field, report, step.id, hint)
    if isinstance(t, Every) and t.count is not None and not 1 <= t.count <= MAX_COUNT:
        report.add(f"count {t.count} is out of range: must be between 1 and {MAX_COUNT}",
                   f"{prefix}.every.count", step.id)
    if step.anchor is not None:
        _check_anchor(journey, step.anchor, f"{prefix}.{t.kind}.anchor", report, step.id)
    if isinstance(t, AfterStep):
        _check_step_reference(t.step, step.id, ids, f"{prefix}.after_step.step", report)


def _check_anchor(journey: Journey, anchor: str, field: str, report: Reporter, step: str) -> None:
    if anchor == ENROLLED:
        return
    rule = journey.anchors.get(anchor)
    if rule is None:
        known = sorted(journey.anchors) + [ENROLLED]
        report.add(f"no event sets anchor '{anchor}': declare it under anchors with set_by events"
                   f"{suggest(anchor, known)}", field, step)
    elif not rule.set_by:
        report.add(f"no event sets anchor '{anchor}': its set_by list is empty", field, step)


def _check_step_reference(target: str, own: str, ids: list[str], field: str, report: Reporter) -> None:
    if target == own:
        report.add("after_step names the step itself", field, own)
    elif target not in ids:
        report.add(f"after_step names unknown step '{target}'{suggest(target, ids)}", field, own)


def _check_action(journey: Journey, step: Step, prefix: str, known_templates: Collection[str] | None,
                  known_channels: Collection[str] | None, report: Reporter) -> None:
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
            elif isinstance(known_channels, Mapping) and known_channels[channel].unmapped_templates([action.template]):
                report.add(f"template '{action.template}' has no provider template on channel '{channel}' "
                           f"(map it under [connectors.{channel}.templates.{action.template}])",
                           f"{prefix}.send.via[{i}]", step.id)
