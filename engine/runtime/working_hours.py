"""Deadlines counted in a team's working time (08:00–17:30 on its working days, the official Chinese calendar's
holidays off and adjusted working days on), or round the clock."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from carepath.teams import TeamConfig


def add_working_time(start: datetime, duration: timedelta, team: TeamConfig) -> datetime:
    """``start`` plus ``duration`` of the team's working time (UTC-aware in, UTC-aware out)."""
    if team.round_the_clock:
        return start + duration
    hours = team.hours()
    tz = ZoneInfo(team.timezone)
    local = start.astimezone(tz)
    left = duration
    for _ in range(3660):  # ten years of days: a bound, never reached by a sane SLA
        day = local.date()
        if team.is_working_day(day):
            open_at, close_at = hours or (datetime.min.time(), None)
            begin = datetime.combine(day, open_at, tzinfo=tz)
            end = datetime.combine(day, close_at, tzinfo=tz) if close_at else datetime.combine(
                day + timedelta(days=1), datetime.min.time(), tzinfo=tz)
            cursor = max(local, begin)
            if cursor < end:
                if cursor + left <= end:
                    return (cursor + left).astimezone(start.tzinfo)
                left -= end - cursor
        local = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=tz)
    raise ValueError("working time never reaches the deadline: check the team's workdays")
