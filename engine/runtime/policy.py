"""Messaging policy in patient-local time: quiet hours, the marketing window, daily caps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from carepath.definition.model import Category

UTC = timezone.utc


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_wall(d: date, t: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of wall time ``t`` on local date ``d``.

    A wall time skipped by a daylight-saving jump is moved forward by the gap
    (02:30 on a spring-forward night becomes 03:30), as a person would expect.
    """
    # PEP 495: with fold=0 a wall time inside a gap takes the offset from before
    # the jump, which lands it after the gap by the gap's length.
    return datetime.combine(d, t).replace(tzinfo=tz, fold=0).astimezone(UTC)


@dataclass(frozen=True)
class Policy:
    """Defaults: quiet 21:00–08:00, marketing 08:00–21:00, at most 3 non-urgent a local day."""

    quiet_start: time = time(21, 0)
    quiet_end: time = time(8, 0)
    marketing_start: time = time(8, 0)
    marketing_end: time = time(21, 0)
    daily_cap: int = 3

    def window(self, category: Category) -> tuple[time, time] | None:
        """The allowed local window ``[start, end)`` for a category, or None for any time."""
        if category is Category.urgent:
            return None
        start, end = self.quiet_end, self.quiet_start
        if category is Category.marketing:
            start, end = max(start, self.marketing_start), min(end, self.marketing_end)
        return start, end

    def allowed(self, when: datetime, category: Category, tz: ZoneInfo) -> bool:
        win = self.window(category)
        if win is None:
            return True
        t = when.astimezone(tz).time()
        return win[0] <= t < win[1]

    def next_allowed(self, when: datetime, category: Category, tz: ZoneInfo) -> datetime:
        """``when`` if allowed, else the start of the next allowed window (UTC)."""
        win = self.window(category)
        if win is None:
            return when
        local = when.astimezone(tz)
        t = local.time()
        if win[0] <= t < win[1]:
            return when
        day = local.date() if t < win[0] else local.date() + timedelta(days=1)
        return local_wall(day, win[0], tz)

    def counts_toward_cap(self, category: Category) -> bool:
        return category is not Category.urgent

    def next_day_same_time(self, when: datetime, tz: ZoneInfo) -> datetime:
        local = when.astimezone(tz)
        return local_wall(local.date() + timedelta(days=1), local.time().replace(tzinfo=None), tz)
