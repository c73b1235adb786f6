"""Durations as integrators write them: ``90m``, ``2h30m``, ``3d``, ``1w``, ``1mo``, ``1y``, ISO 8601 or seconds.

Two kinds:

- :data:`Duration` is a fixed length (a ``timedelta``): SLAs, grace periods, windows. Months and years
  are refused there, since they have no fixed length (write ``30d``).
- :data:`CalendarSpan` is what a journey's triggers take (offsets, delays, intervals): besides fixed
  lengths it takes calendar months and years (``1mo``, ``6mo``, ``1y``, ``P1Y``, ``P1Y2M``), which become
  a :class:`CalendarDuration`: a month later is the same day of the next month (the 31st becomes the
  month's last day) at the same wall time, never 30 days; a year is twelve months. Spans without months
  stay plain ``timedelta`` values, so definitions written before keep their form and their version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Annotated, Any

from dateutil.relativedelta import relativedelta
from pydantic import BeforeValidator, PlainSerializer, PlainValidator, TypeAdapter

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(mo|w|d|h|m|s|y)")
_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_MONTHS = {"y": 12, "mo": 1}
_ISO_CALENDAR = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?((?:\d+(?:\.\d+)?[WD])*(?:T.*)?)$")
#: a month as the validator's range checks count it (``1y`` is 360 days there, never more than a year)
RANGE_MONTH = timedelta(days=30)


@dataclass(frozen=True)
class CalendarDuration:
    """``months`` calendar months (a year is 12) and then ``rest`` of fixed time.

    ``when + span`` counts the months on ``when``'s own calendar (its offset or zone):
    :func:`add` takes the patient's zone instead, as the planner does.
    """

    months: int
    rest: timedelta = timedelta(0)

    def __radd__(self, other: Any) -> datetime:
        if isinstance(other, datetime):
            return other + relativedelta(months=self.months) + self.rest
        return NotImplemented

    def __rsub__(self, other: Any) -> datetime:
        if isinstance(other, datetime):
            return other - relativedelta(months=self.months) - self.rest
        return NotImplemented

    def __neg__(self) -> "CalendarDuration":
        return CalendarDuration(-self.months, -self.rest)

    def __mul__(self, n: int) -> "CalendarDuration":
        return CalendarDuration(self.months * n, self.rest * n)

    def __str__(self) -> str:
        return format_duration(self)


def add(when: datetime, span: timedelta | CalendarDuration, tz: tzinfo | None = None) -> datetime:
    """``when`` plus ``span``, calendar months counted on the local calendar of ``tz`` (default ``when``'s own)."""
    if isinstance(span, timedelta):
        return when + span
    local = when.astimezone(tz) if tz is not None else when
    return (local + relativedelta(months=span.months)).astimezone(when.tzinfo) + span.rest


def for_range_checks(span: timedelta | CalendarDuration) -> timedelta:
    """A length to compare with limits (a month counts as :data:`RANGE_MONTH`)."""
    return span if isinstance(span, timedelta) else span.months * RANGE_MONTH + span.rest


def _fixed(body: str) -> timedelta:
    # one timedelta per part: a float sum would round away microseconds of long durations
    return sum((timedelta(seconds=float(n) * _UNITS[u]) for n, u in _PART.findall(body)), timedelta())


def _calendar_parts(text: str) -> tuple[int, str] | None:
    """``(months, the fixed part's text)`` when ``text`` names months or years, else None."""
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    if body.startswith("p"):
        m = _ISO_CALENDAR.match(body.upper())
        if m and (m[1] or m[2]):
            rest = f"{'-' if sign < 0 else ''}P{m[3]}" if m[3] not in ("", "T") else "0s"
            return sign * (int(m[1] or 0) * 12 + int(m[2] or 0)), rest
        return None
    parts = _PART.findall(body)
    if not (body and _PART.sub("", body) == "" and any(u in _MONTHS for _, u in parts)):
        return None
    if any(u in _MONTHS and not n.isdigit() for n, u in parts):
        raise ValueError(f"{text!r}: months and years are whole numbers (1mo, 6mo, 1y)")
    months = sum(int(n) * _MONTHS[u] for n, u in parts if u in _MONTHS)
    rest = "".join(f"{n}{u}" for n, u in parts if u not in _MONTHS)
    return sign * months, ("-" if sign < 0 else "") + (rest or "0s")


def parse_duration(value: Any) -> Any:
    """Turn ``"2h30m"`` into a timedelta; leave other forms to pydantic; refuse months and years."""
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if _calendar_parts(text) is not None:
            raise ValueError(f"{value!r}: months and years have no fixed length here; write days (30d, 365d)")
        sign = -1 if text.startswith("-") else 1
        body = text.lstrip("+-")
        if body and _PART.sub("", body) == "" and _PART.search(body):
            return sign * _fixed(body)
        if body.isdigit():
            return timedelta(seconds=sign * int(body))
    return value


_TIMEDELTA = TypeAdapter(Annotated[timedelta, BeforeValidator(parse_duration)])


def parse_span(value: Any) -> timedelta | CalendarDuration:
    """A trigger's span: a :class:`CalendarDuration` when it names months or years, else a timedelta."""
    if isinstance(value, (timedelta, CalendarDuration)):
        return value
    if isinstance(value, str):
        found = _calendar_parts(value.strip().lower().replace(" ", ""))
        if found is not None:
            months, rest = found
            fixed = _TIMEDELTA.validate_python(rest)
            return CalendarDuration(months, fixed) if months else fixed
    return _TIMEDELTA.validate_python(value)


def format_duration(value: timedelta | CalendarDuration) -> str:
    """The compact form, used for hashing and export: ``1d2h``, ``1y2mo3d`` (``1.5s`` below a second);
    parses back equal."""
    if isinstance(value, CalendarDuration):
        sign = "-" if value.months < 0 else ""
        years, months = divmod(abs(value.months), 12)
        head = (f"{years}y" if years else "") + (f"{months}mo" if months else "")
        rest = value.rest if not sign else -value.rest
        return sign + head + ("" if rest == timedelta(0) else format_duration(rest))
    micros = value // timedelta(microseconds=1)
    if micros == 0:
        return "0s"
    sign = "-" if micros < 0 else ""
    seconds, fraction = divmod(abs(micros), 1_000_000)
    out = []
    for unit in ("d", "h", "m"):
        n, seconds = divmod(seconds, _UNITS[unit])
        if n:
            out.append(f"{n}{unit}")
    if seconds or fraction:
        out.append(f"{seconds}.{fraction:06d}".rstrip("0").rstrip(".") + "s")
    return sign + "".join(out)


Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]
CalendarSpan = Annotated[timedelta | CalendarDuration, PlainValidator(parse_span),
                         PlainSerializer(format_duration, return_type=str)]
