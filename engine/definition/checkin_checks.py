"""Issue 19: journey checks for check-ins and readings (called by :mod:`carepath.definition.validation`)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from carepath.definition.durations import format_duration
from carepath.definition.model import AfterStep, Checkin, Journey, Reading, Task

if TYPE_CHECKING:
    from carepath.definition.validation import Reporter

MIN_WINDOW, MAX_WINDOW = timedelta(hours=1), timedelta(days=90)
UNSUBSCRIBE_WORDS = {"td", "t", "退订", "n", "unsubscribe", "stop"}


def check_checkins(journey: Journey, report: "Reporter") -> None:
    """``unless: checked_in`` follows a check-in prompt; a check-in can be answered; a reading window is sane;
    readings that cross a threshold reach a person: some ``reading`` step opens a staff task."""
    actions = {s.id: s.action for s in journey.steps}
    reading_steps = []
    for index, step in enumerate(journey.steps):
        prefix, t, action = f"steps[{index}]", step.trigger, step.action
        if isinstance(t, AfterStep) and t.unless == "checked_in" and t.step in actions \
                and not isinstance(actions[t.step], Checkin):
            report.add(f"unless: checked_in follows a check-in prompt, and step '{t.step}' is no checkin step",
                       f"{prefix}.after_step.unless", step.id)
        if isinstance(action, Checkin):
            if action.measure is None and not action.keywords:
                report.add("a check-in without a measure needs keywords the patient replies (e.g. [打卡])",
                           f"{prefix}.checkin.keywords", step.id)
            _check_target(action, f"{prefix}.checkin.target", step.id, report)
            for word in action.keywords:
                if not word.strip() or word.strip().casefold() in UNSUBSCRIBE_WORDS:
                    report.add(f"check-in keyword {word!r} cannot be used: blank, or an unsubscribe word",
                               f"{prefix}.checkin.keywords", step.id)
        if isinstance(t, Reading):
            reading_steps.append(step)
            if not MIN_WINDOW <= t.within <= MAX_WINDOW:
                report.add(f"reading window {format_duration(t.within)} is out of range: must be between "
                           f"{format_duration(MIN_WINDOW)} and {format_duration(MAX_WINDOW)}",
                           f"{prefix}.reading.within", step.id)
    if reading_steps and not any(isinstance(s.action, Task) for s in reading_steps):
        report.add("readings that cross a threshold must reach a person: give one reading step a task action "
                   "(a staff task with an SLA)", f"steps[{journey.steps.index(reading_steps[0])}]",
                   reading_steps[0].id)


def _check_target(action: Checkin, path: str, step_id: str, report: "Reporter") -> None:
    """A check-in's clinical target names the measure it asks for (both numbers of a blood pressure)."""
    from carepath.definition.measures import BLOOD_PRESSURE

    if not action.target:
        return
    if action.measure is None:
        report.add("a target needs a measure: a keyword check-in has no value to compare", path, step_id)
        return
    allowed = {"systolic_bp", "diastolic_bp"} if action.measure == BLOOD_PRESSURE else {action.measure}
    for threshold in action.target:
        if threshold.measure not in allowed:
            report.add(f"target '{threshold.text()}' is about {threshold.measure}, but the check-in asks for "
                       f"{action.measure}", path, step_id)
