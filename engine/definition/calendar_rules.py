"""Calendar rules of journeys (issue 19): RFC 5545 recurrence rules, named calendar moments, lunar dates.

- ``every: {rrule: "FREQ=MONTHLY;BYDAY=1MO"}`` is parsed by python-dateutil (:func:`check_rrule` refuses a rule
  it cannot read, naming the part);
- a ``calendar`` trigger names a moment: the patient's ``birthday``, a lunar festival (春节, 元宵, 端午, 七夕,
  中秋, 重阳, 除夕) or a fixed Gregorian day (世界糖尿病日 on 14 November, 全国高血压日 on 8 October, or any
  ``date: MM-DD``);
- lunar dates come from the ``lunardate`` package (Chinese calendar years 1900-2099).

A lunar birthday is the lunar month and day the patient was born on (their Gregorian birth date converted),
kept each year by the conventional rules: born on the 30th of a month that has 29 days that year, it is kept
on the 29th (the month's last day); born in a leap month (闰月), it is kept in the ordinary month of the same
number, every year (also in the rare years that have that leap month again).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Literal

BIRTHDAY = "birthday"


@dataclass(frozen=True)
class Moment:
    """A named day each year: on the lunar calendar (``lunar``) or the Gregorian one, as ``(month, day)``;
    lunar day 0 is the last day of the month (除夕: the last day of the twelfth month)."""

    name: str
    calendar: Literal["lunar", "gregorian"]
    month: int
    day: int
    aliases: tuple[str, ...] = ()


MOMENTS: tuple[Moment, ...] = (
    Moment("春节", "lunar", 1, 1, ("spring-festival", "chinese-new-year")),
    Moment("元宵", "lunar", 1, 15, ("lantern-festival", "元宵节")),
    Moment("端午", "lunar", 5, 5, ("dragon-boat", "端午节")),
    Moment("七夕", "lunar", 7, 7, ("qixi", "七夕节")),
    Moment("中秋", "lunar", 8, 15, ("mid-autumn", "中秋节")),
    Moment("重阳", "lunar", 9, 9, ("double-ninth", "重阳节")),
    Moment("除夕", "lunar", 12, 0, ("new-years-eve-lunar",)),
    Moment("世界糖尿病日", "gregorian", 11, 14, ("world-diabetes-day",)),
    Moment("全国高血压日", "gregorian", 10, 8, ("national-hypertension-day",)),
)
_BY_NAME = {n: m for m in MOMENTS for n in (m.name, *m.aliases)}


def moment_names() -> list[str]:
    """Every name a ``calendar: {moment: ...}`` takes (``birthday`` first)."""
    return [BIRTHDAY, *_BY_NAME]


def check_moment(name: str) -> str:
    """``name`` when it is ``birthday`` or a known moment, else a ValueError with a "did you mean"."""
    if name == BIRTHDAY or name in _BY_NAME:
        return name
    close = difflib.get_close_matches(name, moment_names(), n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ValueError(f"unknown calendar moment {name!r}{hint} (known: {', '.join(moment_names())}; "
                     "or write date: MM-DD for another fixed day)")


def check_month_day(text: str) -> str:
    """``MM-DD`` of a day every year has (29 February is refused: write 02-28 or 03-01)."""
    match = re.fullmatch(r"(\d{2})-(\d{2})", text.strip())
    try:
        if match is None:
            raise ValueError
        month, day = int(match[1]), int(match[2])
        date(2026, month, day)
    except ValueError:
        raise ValueError(f"date {text!r} must be MM-DD, a day every year has (e.g. 11-14)") from None
    return f"{month:02d}-{day:02d}"


def check_rrule(text: str) -> str:
    """An RFC 5545 RRULE (``FREQ=MONTHLY;BYDAY=1MO``, an optional ``RRULE:`` prefix) python-dateutil reads.

    DTSTART is not allowed in it: the series starts at the step's anchor (plus ``start``).
    """
    rule = text.strip()
    body = rule[6:] if rule.upper().startswith("RRULE:") else rule
    if not body:
        raise ValueError("rrule is empty: write e.g. FREQ=MONTHLY;BYDAY=1MO")
    if "DTSTART" in body.upper() or "\n" in body:
        raise ValueError("rrule takes one RRULE line without DTSTART: the series starts at the step's anchor")
    parts = [p for p in body.split(";") if p]
    if not any(p.upper().startswith("FREQ=") for p in parts):
        raise ValueError(f"rrule {text!r} has no FREQ (e.g. FREQ=WEEKLY;BYDAY=MO)")
    try:
        parse_rrule(body, datetime(2026, 1, 1))
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ValueError(f"rrule {text!r} is not a valid RFC 5545 rule: {exc}") from None
    return body


def parse_rrule(body: str, dtstart: datetime):  # noqa: ANN201 - dateutil's rrule
    """The dateutil ``rrule`` of ``body`` from the naive local ``dtstart``."""
    from dateutil.rrule import rrulestr

    return rrulestr(body, dtstart=dtstart, forceset=False, cache=False)


# ------------------------------------------------------------------ lunar dates


def _lunar():  # noqa: ANN202
    from lunardate import LunarDate

    return LunarDate


LUNAR_YEARS = range(1900, 2100)  # what lunardate covers


def lunar_month_days(year: int, month: int) -> int:
    """Days of the ordinary lunar ``month`` of lunar ``year`` (29 or 30)."""
    LunarDate = _lunar()
    try:
        LunarDate(year, month, 30).to_solar_date()
    except ValueError:
        return 29
    return 30


@lru_cache(maxsize=4096)
def lunar_to_gregorian(year: int, month: int, day: int) -> date | None:
    """The Gregorian date of lunar ``year``-``month``-``day`` (ordinary month; day 0 is its last day, a 30th
    kept on the 29th of a short month); None outside the years the calendar covers."""
    if year not in LUNAR_YEARS:
        return None
    days = lunar_month_days(year, month)
    day = days if day == 0 else min(day, days)
    return _lunar()(year, month, day).to_solar_date()


@lru_cache(maxsize=4096)
def lunar_birth(born: date) -> tuple[int, int]:
    """The lunar ``(month, day)`` of a Gregorian birth date (a leap month counts as its ordinary month)."""
    found = _lunar().from_solar_date(born.year, born.month, born.day)
    return found.month, found.day


def moment_dates(name: str | None, month_day: str | None, years: range, *, born: date | None = None,
                 lunar_birthday: bool = False) -> list[date]:
    """The Gregorian dates of a moment in the Gregorian ``years`` (sorted): a named moment, a fixed ``MM-DD``,
    or the birthday of someone ``born`` then (lunar when ``lunar_birthday``). A birthday on 29 February is kept
    on 28 February in other years. No birth date: no birthday."""
    out: list[date] = []
    if name == BIRTHDAY:
        if born is None:
            return []
        if lunar_birthday:
            month, day = lunar_birth(born)
            return _lunar_in(years, month, day)
        for year in years:
            out.append(date(year, born.month, 28) if (born.month, born.day) == (2, 29) and not _leap(year)
                       else date(year, born.month, born.day))
        return out
    if month_day is not None:
        month, day = int(month_day[:2]), int(month_day[3:])
        return [date(year, month, day) for year in years]
    moment = _BY_NAME[name]
    if moment.calendar == "gregorian":
        return [date(year, moment.month, moment.day) for year in years]
    return _lunar_in(years, moment.month, moment.day)


def _lunar_in(years: range, month: int, day: int) -> list[date]:
    """Dates of lunar month/day falling in the Gregorian ``years`` (lunar years overlap two Gregorian ones)."""
    found = (lunar_to_gregorian(y, month, day) for y in range(years.start - 1, years.stop))
    return sorted(d for d in found if d is not None and d.year in years)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
