"""Validation of what programmes add to a journey (issue 19): pauses, the horizon, patient-chosen times.

RRULE syntax, festival names and ``MM-DD`` days are checked where they are parsed (the trigger models, with
:mod:`carepath.definition.calendar_rules`); this module checks what needs the whole journey or the
installation: a pause that can resume, a horizon in range, and preferences the installation knows.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from carepath.definition.durations import format_duration
from carepath.definition.model import PREFERENCE_PREFIX, Journey
from carepath.definition.preferences import unknown_preference

if TYPE_CHECKING:
    from carepath.definition.validation import Reporter

MIN_HORIZON, MAX_HORIZON = timedelta(days=1), timedelta(days=90)


def check_programme(journey: Journey, report: "Reporter") -> None:
    """``pause_on`` needs ``resume_on`` (and the other way round), no event does both; the horizon's range."""
    pause, resume = journey.pause_on or [], journey.resume_on or []
    if pause and not resume:
        report.add("pause_on needs resume_on: a paused programme would never resume (e.g. resume_on: "
                   "[encounter.discharged])", "pause_on")
    if resume and not pause:
        report.add("resume_on without pause_on: nothing pauses this journey", "resume_on")
    for name in sorted(set(pause) & set(resume)):
        report.add(f"event '{name}' both pauses and resumes the programme", "resume_on")
    if journey.horizon is not None and not MIN_HORIZON <= journey.horizon <= MAX_HORIZON:
        report.add(f"horizon {format_duration(journey.horizon)} is out of range: must be between "
                   f"{format_duration(MIN_HORIZON)} and {format_duration(MAX_HORIZON)}", "horizon")


def check_chosen_time(t: Any, prefix: str, step_id: str | None, report: "Reporter") -> None:
    """``at: patient.preferences.NAME`` must name a preference this installation knows."""
    at = getattr(t, "at", None)
    if isinstance(at, str) and at.startswith(PREFERENCE_PREFIX):
        problem = unknown_preference(at[len(PREFERENCE_PREFIX):])
        if problem is not None:
            report.add(problem, f"{prefix}.{t.kind}.at", step_id)
