"""Occurrences of the steps planned on a rolling horizon (issue 19), pure computation.

A horizon step is an ``every`` without an end, with an ``rrule``, with a patient-chosen ``at`` or
``workdays_only``, or a ``calendar`` moment. :func:`window` gives its occurrences in a window of time, as
``(occurrence key, instant)``, so that the planner never needs the whole (endless) series:

- an occurrence's key is its local date (``2026-05-01``) for series of at most one a day, else its local
  minute (``2026-05-01T08:30``): re-timing a day's reminder keeps its key, so it is never sent twice;
- ``at`` is a patient-local wall time, or the time the patient chose (their preference, else its default);
- an ``every`` with ``workdays_only`` leaves out the days that are not official working days.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Mapping

from dateutil.relativedelta import relativedelta

from carepath.definition.calendar_rules import moment_dates, parse_rrule
from carepath.definition.durations import CalendarDuration, add
from carepath.definition.model import ENROLLED, PREFERENCE_PREFIX, Calendar, Every, Step
from carepath.definition.preferences import chosen_time
from carepath.runtime.policy import local_wall, zone
from carepath.runtime.workdays import is_workday

DAY = timedelta(days=1)


def on_horizon(step: Step) -> bool:
    """Whether ``step`` is planned on the rolling horizon rather than all at once (:attr:`Step.on_horizon`)."""
    return step.on_horizon


def preference_of(step: Step) -> str | None:
    """The preference a step's ``at`` names (``medication_time``), if any."""
    at = getattr(step.trigger, "at", None)
    return at[len(PREFERENCE_PREFIX):] if isinstance(at, str) else None


@dataclass(frozen=True)
class Patient:
    """What a series needs of its patient."""

    tz: str
    preferences: Mapping[str, str] = field(default_factory=dict)
    birth_date: date | None = None
    lunar_birthday: bool = False


@dataclass
class Window:
    """The occurrences of one step in ``(after, until]``; ``ended``: the series has none after ``until``."""

    occurrences: list[tuple[str, datetime]]
    ended: bool = False


def window(step: Step, anchors: Mapping[str, datetime | None], patient: Patient, *, after: datetime | None,
           until: datetime) -> Window:
    """The occurrences of horizon step ``step`` in ``(after, until]`` (``after`` None: from the series' start).

    An ``every`` starts at its anchor plus ``start``; a calendar moment at enrollment (``anchors['enrolled']``).
    No anchor yet: none, and not ended.
    """
    t = step.trigger
    tz = zone(patient.tz)
    at = _wall(t.at, patient)
    if isinstance(t, Calendar):
        start = anchors.get(ENROLLED)
        if start is None:
            return Window([])
        low = max(start - timedelta(microseconds=1), after) if after is not None else start - timedelta(microseconds=1)
        years = range(low.astimezone(tz).year, until.astimezone(tz).year + 1)
        days = moment_dates(t.moment, t.date, years, born=patient.birth_date, lunar_birthday=patient.lunar_birthday)
        found = [(d.isoformat(), local_wall(d, at, tz)) for d in days]
        return Window([(k, w) for k, w in found if low < w <= until])
    base = anchors.get(t.anchor)
    if base is None:
        return Window([])
    first = add(base, t.start, tz)
    end = add(base, t.until, tz) if t.until is not None else None
    low = first - timedelta(microseconds=1) if after is None else max(after, first - timedelta(microseconds=1))
    high = min(until, end) if end is not None else until
    if t.rrule is not None:
        found, more = _rule(t, first, at, tz, low, high)
    else:
        found, more = _interval(t, first, at, tz, low, high)
    if step.workdays_only:
        found = [(k, w) for k, w in found if is_workday(w.astimezone(tz).date())]
    return Window(found, ended=not more or (end is not None and until >= end))


def _wall(at: time | str | None, patient: Patient) -> time | None:
    if isinstance(at, str):
        return chosen_time(at[len(PREFERENCE_PREFIX):], patient.preferences)
    return at


def _key(when: datetime, tz, daily: bool) -> str:  # noqa: ANN001
    local = when.astimezone(tz)
    return local.date().isoformat() if daily else local.strftime("%Y-%m-%dT%H:%M")


def _interval(t: Every, first: datetime, at: time | None, tz, low: datetime,  # noqa: ANN001
              high: datetime) -> tuple[list[tuple[str, datetime]], bool]:
    """Occurrence ``k`` of a fixed or calendar interval, found from the window by arithmetic (no walk from the
    start). Whole days and months keep the wall time (``at``, else the first occurrence's)."""
    interval = t.interval
    daily = isinstance(interval, CalendarDuration) or interval >= DAY
    local_first = first.astimezone(tz)
    wall = at or local_first.time().replace(tzinfo=None)
    if isinstance(interval, CalendarDuration) or interval % DAY == timedelta(0):
        start_day = local_first.date()
        if local_wall(start_day, wall, tz) < first:
            start_day += DAY  # today's wall time already passed at the anchor: start the next day
        nth = _month_step(start_day, interval) if isinstance(interval, CalendarDuration) else _day_step(
            start_day, interval.days)
        when = lambda k: local_wall(nth(k), wall, tz)  # noqa: E731
        k = max(0, _first_k(nth, low.astimezone(tz).date(), interval))
    else:
        if at is not None:  # `at` fixes the first occurrence; the interval counts on from there
            at_first = local_wall(local_first.date(), at, tz)
            first = at_first if at_first >= first else local_wall(local_first.date() + DAY, at, tz)
        when = lambda k: first + interval * k  # noqa: E731
        k = max(0, math.floor((low - first) / interval))
    out = []
    while t.count is None or k < t.count:
        instant = when(k)
        if instant > high:
            return out, True
        if instant > low:
            out.append((_key(instant, tz, daily), instant))
        k += 1
    return out, False


def _day_step(start: date, days: int):  # noqa: ANN202
    return lambda k: start + timedelta(days=days * k)


def _month_step(start: date, span: CalendarDuration):  # noqa: ANN202
    # occurrence k counts k intervals from the first (a 31st falls on a short month's last day and comes back)
    return lambda k: start + relativedelta(months=span.months * k) + timedelta(days=span.rest.days * k)


def _first_k(nth, day: date, interval) -> int:  # noqa: ANN001
    """An index at or before the first occurrence on or after ``day`` (a cheap estimate, then stepped back)."""
    length = 30.44 * interval.months + interval.rest.days if isinstance(interval, CalendarDuration) \
        else interval.days
    k = max(0, int((day - nth(0)).days / length) - 1) if length > 0 else 0
    while k > 0 and nth(k) >= day:
        k -= 1
    return k


def _rule(t: Every, first: datetime, at: time | None, tz, low: datetime,  # noqa: ANN001
          high: datetime) -> tuple[list[tuple[str, datetime]], bool]:
    """Occurrences of an RRULE on the patient's local calendar from the first occurrence's local time.

    With ``at``, the rule gives the days and ``at`` the time (an occurrence before the first is left out)."""
    local_first = first.astimezone(tz).replace(tzinfo=None)
    rule = parse_rrule(t.rrule, local_first)
    if t.count is not None:
        rule = rule.replace(count=t.count)
    daily = rule._freq <= 3 and (at is not None or len(rule._byhour or ()) <= 1)  # YEARLY..DAILY
    lo = low.astimezone(tz).replace(tzinfo=None) - DAY
    hi = high.astimezone(tz).replace(tzinfo=None) + DAY
    out = []
    for naive in rule.between(lo, hi, inc=True):
        instant = local_wall(naive.date(), at or naive.time(), tz)
        if low < instant <= high and instant >= first:
            out.append((_key(instant, tz, daily), instant))
    return out, rule.after(hi) is not None


def same_day_at(when: datetime, at: time, tz_name: str) -> datetime:
    """``at`` on the patient-local day of ``when`` (re-timing an occurrence keeps its day)."""
    tz = zone(tz_name)
    return local_wall(when.astimezone(tz).date(), at, tz)
