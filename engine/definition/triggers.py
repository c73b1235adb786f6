"""When a journey step runs: its trigger (an event, an anchor offset, a rhythm, another step, idleness, a calendar
moment, readings past a threshold)."""

from __future__ import annotations

import re
from datetime import time, timedelta
from typing import Annotated, Literal, Union

from pydantic import Field, ValidationInfo, field_validator, model_validator

from carepath.definition.durations import CalendarSpan, Duration
from carepath.definition.model_base import ENROLLED, _Model


class OnEvent(_Model):
    """Run when the enrolled patient has an event of this type (after ``delay``).

    It runs once per enrollment and business identity of the event: the value
    of the payload field ``once_per`` names, by default the journey's ``key``.
    A resend of the same fact under a new message id plans nothing again.
    """

    kind: Literal["on"] = "on"
    event: str
    delay: CalendarSpan = timedelta(0)
    once_per: str | None = None


def _wall_time(v, *, chosen: bool = False):
    """``at`` as authors write it: ``HH:MM`` (or ``HH:MM:SS`` as a stored definition gives it back), or, where
    ``chosen``, ``patient.preferences.NAME``: the time the patient chose (issue 19)."""
    if isinstance(v, str):
        text = v.strip()
        if text.startswith(PREFERENCE_PREFIX):
            if not chosen:
                raise ValueError("a patient-chosen time (patient.preferences...) works on every and calendar "
                                 "triggers; write HH:MM here")
            if not re.fullmatch(r"[a-z][a-z0-9_]*", text[len(PREFERENCE_PREFIX):]):
                raise ValueError(f"at {v!r}: name a preference, e.g. patient.preferences.medication_time")
            return text
        try:
            if text.count(":") == 2:
                return time.fromisoformat(text)
            hh, mm = text.split(":")
            return time(int(hh), int(mm))
        except ValueError:
            raise ValueError(f"at must be HH:MM in the patient's time zone"
                             f"{' or patient.preferences.NAME' if chosen else ''}, got {v!r}") from None
    return v


#: ``at: patient.preferences.medication_time``: the time of day the patient chose (carepath.definition.preferences)
PREFERENCE_PREFIX = "patient.preferences."


class AnchorOffset(_Model):
    """``before``/``after`` an anchor by ``offset``, optionally at a patient-local time of day."""

    kind: Literal["before", "after"]
    anchor: str
    offset: CalendarSpan = timedelta(0)
    at: time | None = None

    @field_validator("at", mode="before")
    @classmethod
    def _hhmm(cls, v):
        return _wall_time(v)


class Every(_Model):
    """Repeat every ``interval`` (or by an RFC 5545 ``rrule``) from ``anchor + start``, until ``count`` or
    ``until`` after the anchor, or without an end: then until the enrollment exits, planned on a rolling
    horizon (:mod:`carepath.runtime.horizon`). ``at`` is a patient-local time of day or the time the patient
    chose (``patient.preferences.medication_time``)."""

    kind: Literal["every"] = "every"
    interval: CalendarSpan | None = None
    anchor: str = ENROLLED
    start: CalendarSpan = timedelta(0)
    at: time | str | None = None
    count: int | None = None
    until: CalendarSpan | None = None
    #: issue 19: a calendar rule, e.g. ``FREQ=MONTHLY;BYDAY=1MO`` (the first Monday of each month)
    rrule: str | None = None

    @field_validator("at", mode="before")
    @classmethod
    def _hhmm(cls, v):
        return _wall_time(v, chosen=True)

    @field_validator("rrule")
    @classmethod
    def _rule(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from carepath.definition.calendar_rules import check_rrule

        return check_rrule(v)

    @model_validator(mode="after")
    def _one_rhythm(self):
        if (self.interval is None) == (self.rrule is None):
            raise ValueError("every takes an interval or an rrule (one of them)")
        return self

    @property
    def open_ended(self) -> bool:
        """No end: runs until the enrollment exits (``count`` and ``until`` absent, no COUNT/UNTIL in the rule)."""
        if self.count is not None or self.until is not None:
            return False
        return self.rrule is None or not re.search(r"(^|;)(COUNT|UNTIL)=", self.rrule.upper())


class AfterStep(_Model):
    """``delay`` after another step reached ``outcome``, unless the patient did ``unless`` meanwhile."""

    kind: Literal["after_step"] = "after_step"
    step: str
    delay: CalendarSpan = timedelta(0)
    outcome: Literal["sent", "failed"] = "sent"
    #: ``replied``: skipped when the patient replied meanwhile; ``checked_in`` (issue 19): skipped when the
    #: patient checked in after the source step (a check-in prompt) was sent, the one nudge of a missed check-in
    unless: Literal["replied", "checked_in"] | None = None


class Idle(_Model):
    """Run once when the patient has not interacted for ``days`` (no reply, click, survey answer, check-in,
    visit...; counted from enrollment when they never did).

    It fires once per idle period and re-arms after the patient's next interaction. A
    patient who is admitted, deceased or has no consent for the step's category is
    never "reactivated"; an interaction or an admission before the message goes out
    cancels it. The maintenance flow plans these (``carepath.runtime.idle``).
    """

    kind: Literal["idle"] = "idle"
    days: int


class Calendar(_Model):
    """A calendar moment each year at a patient-local time: the patient's ``birthday`` (lunar where their record
    says so), a named festival (``moment: 中秋``; :data:`carepath.definition.calendar_rules.MOMENTS`) or a fixed
    Gregorian day (``date: "05-12"``). Planned on the rolling horizon; its steps default to ``marketing``."""

    kind: Literal["calendar"] = "calendar"
    moment: str | None = None
    date: str | None = None
    at: time | str = time(9, 0)

    _hhmm = field_validator("at", mode="before")(Every._hhmm.__func__)

    @field_validator("moment", "date")
    @classmethod
    def _day(cls, v: str | None, info: ValidationInfo) -> str | None:
        from carepath.definition.calendar_rules import check_moment, check_month_day

        if v is None:
            return v
        return check_moment(v) if info.field_name == "moment" else check_month_day(v)

    @model_validator(mode="after")
    def _one_day(self):
        if (self.moment is None) == (self.date is None):
            raise ValueError("calendar takes a moment (birthday or a festival) or a date (MM-DD), one of them")
        return self


class Threshold(_Model):
    """One threshold of a ``reading`` trigger: ``systolic_bp >= 140 mmHg`` (a measure of
    :mod:`carepath.definition.measures`, a comparison, a value and its unit, which is required)."""

    measure: str
    op: Literal[">=", ">", "<=", "<"]
    value: float
    unit: str

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data):
        if isinstance(data, str):
            found = re.fullmatch(r"\s*([a-z_0-9]+)\s*(>=|<=|>|<|≥|≤)\s*(-?\d+(?:\.\d+)?)\s*(\S+)?\s*", data)
            if found is None:
                raise ValueError(f"threshold {data!r}: write MEASURE OP VALUE UNIT, e.g. 'systolic_bp >= 140 mmHg'")
            measure, op, value, unit = found.groups()
            if unit is None:
                raise ValueError(f"threshold {data!r} has no unit: write e.g. '{data.strip()} mmHg'")
            return {"measure": measure, "op": {"≥": ">=", "≤": "<="}.get(op, op), "value": float(value), "unit": unit}
        return data

    @model_validator(mode="after")
    def _known(self):
        from carepath.definition.measures import MEASURES, unit_factor

        if self.measure not in MEASURES:
            raise ValueError(f"unknown measure {self.measure!r} (known: {', '.join(MEASURES)})")
        if unit_factor(self.measure, self.unit) is None:
            raise ValueError(f"unit {self.unit!r} is not a unit of {self.measure} "
                             f"(use {', '.join(MEASURES[self.measure].units())})")
        return self

    def text(self) -> str:
        return f"{self.measure} {self.op} {self.value:g} {self.unit}"

    def holds(self, value: float) -> bool:
        """Whether ``value`` (in the measure's own unit) crosses this threshold."""
        from carepath.definition.measures import unit_factor

        limit = round(self.value * (unit_factor(self.measure, self.unit) or 1.0), 2)
        return {">=": value >= limit, ">": value > limit, "<=": value <= limit, "<": value < limit}[self.op]


class Reading(_Model):
    """Issue 19: run when the patient's readings (``vitals.reading``) cross a threshold: a reading counts when
    ``any`` of the thresholds holds; the step runs when ``count`` readings counted ``within`` the window. It
    opens one episode: no other run until the episode is resolved (its staff task closed, or its message sent),
    and only readings after that count again (:mod:`carepath.runtime.reading_alerts`)."""

    kind: Literal["reading"] = "reading"
    any: list[Threshold] = Field(min_length=1)
    count: int = Field(1, ge=1, le=50)
    within: Duration = timedelta(days=7)


Trigger = Annotated[Union[OnEvent, AnchorOffset, Every, AfterStep, Idle, Calendar, Reading],
                    Field(discriminator="kind")]
