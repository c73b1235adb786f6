"""The official working-day calendar of mainland China: public holidays and adjusted working days (调休).

Each year the State Council publishes which days are public holidays (国务院办公厅关于节假日安排的通知)
and which weekend days become working days to bridge them. The data comes from the
``chinesecalendar`` package, which is updated each year once the notice is out. For a year it
does not cover yet, a day is a working day when it is Monday to Friday, and a warning is logged
once per year: upgrade the package when the new notice is published.

Used by working-hours SLAs (:mod:`carepath.runtime.working_hours`) and meant for anything that
needs "the next working day" (a ``workdays_only`` trigger, a reminder that waits for office hours).
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Literal

log = logging.getLogger(__name__)

DayKind = Literal["holiday", "adjusted_workday"]


@lru_cache(maxsize=64)
def covered(year: int) -> bool:
    """Whether the installed calendar knows ``year``'s holidays (else: plain weekdays, and a warning)."""
    import chinese_calendar

    try:
        chinese_calendar.is_workday(date(year, 6, 1))
    except NotImplementedError:
        log.warning("the Chinese working-day calendar (package chinesecalendar) has no data for %d: counting "
                    "Monday to Friday as working days; upgrade chinesecalendar once that year's holiday notice "
                    "is published", year)
        return False
    return True


def official_day(day: date) -> DayKind | None:
    """``holiday`` (a public holiday, bridging days included), ``adjusted_workday`` (a weekend day made a
    working day), or ``None`` for an ordinary day (and for every day of a year the calendar does not cover)."""
    if not covered(day.year):
        return None
    import chinese_calendar

    off, name = chinese_calendar.get_holiday_detail(day)
    if off and name is not None:
        return "holiday"
    if not off and day.isoweekday() > 5:
        return "adjusted_workday"
    return None


def is_workday(day: date) -> bool:
    """Whether ``day`` is an official working day in mainland China."""
    kind = official_day(day)
    return kind == "adjusted_workday" or (kind is None and day.isoweekday() <= 5)


def on_workday(when: datetime, tz: tzinfo) -> datetime:
    """``when`` if its local day is a working day, else the same wall time on the next working day (issue 19:
    ``workdays_only`` steps)."""
    from carepath.runtime.policy import local_wall

    local = when.astimezone(tz)
    day = local.date()
    if is_workday(day):
        return when
    while not is_workday(day):
        day += timedelta(days=1)
    return local_wall(day, local.time().replace(tzinfo=None), tz)
