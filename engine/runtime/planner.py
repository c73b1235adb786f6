"""The planner: pure computation from an enrollment's anchors to timed touchpoints.

Nothing here touches the database; ``carepath.runtime.scheduling`` feeds it the
patient's existing daily load and writes its output in bulk.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from datetime import date, datetime, timedelta
from typing import Iterable, Mapping

from dateutil.rrule import DAILY, HOURLY, rrule

from carepath.definition.durations import CalendarDuration, add, for_range_checks
from carepath.definition.model import ENROLLED, AnchorOffset, Category, Every, Step
from carepath.runtime.policy import Policy, local_wall, zone
from carepath.runtime.workdays import on_workday  # issue 19

MAX_DEFER_DAYS = 60

# reasons recorded on touchpoints
QUIET_HOURS = "deferred: quiet hours"
MARKETING_WINDOW = "deferred: marketing window"
DAILY_CAP = "deferred: daily cap"
CAP_DROPPED = "skipped: daily cap"
MISSED_SKIPPED = "skipped: missed"
MISSED_LATE = "missed: sent late within grace"


@dataclass(frozen=True, slots=True)
class Planned:
    """One touchpoint the planner decided on."""

    step: Step
    occurrence: str
    planned_at: datetime  # the step's own time, before policy
    due_at: datetime
    status: str = "scheduled"  # or "skipped"
    reason: str | None = None
    event_id: int | None = None
    anchor_at: datetime | None = None  # the anchor value an anchored step was planned for


def _anchored(at_time, base: datetime, tz) -> datetime:
    if at_time is None:
        return base
    return local_wall(base.astimezone(tz).date(), at_time, tz)


def occurrences(step: Step, anchors: Mapping[str, datetime | None], tz_name: str) -> list[tuple[str, datetime]]:
    """The step's own times ``(occurrence, instant)`` for anchor-based triggers.

    A missing or cancelled anchor gives none. ``on`` and ``after_step``
    triggers are planned when their event or outcome happens.
    """
    anchor = step.anchor  # set for anchor-based triggers only
    if anchor is None or step.on_horizon:  # issue 19: those are carepath.runtime.horizon's
        return []
    base = anchors.get(anchor)
    if base is None:
        return []
    return _occurrences(step.trigger, base, tz_name)


@lru_cache(maxsize=65536)
def _occurrences(trig: AnchorOffset | Every, base: datetime, tz_name: str) -> list[tuple[str, datetime]]:
    # memoized: appointment slots repeat across thousands of enrollments (callers must not mutate)
    tz = zone(tz_name)
    if isinstance(trig, AnchorOffset):
        when = add(base, -trig.offset if trig.kind == "before" else trig.offset, tz)
        return [("0", _anchored(trig.at, when, tz))]
    first = add(base, trig.start, tz)
    end = add(base, trig.until, tz) if trig.until is not None else None
    if isinstance(trig.interval, CalendarDuration):
        return _calendar_series(trig, first, end, tz)
    if trig.at is not None:
        # whole-day intervals repeat at the same local wall time across DST changes
        local_first = first.astimezone(tz).replace(tzinfo=None)
        step_days = trig.interval.total_seconds() / 86400
        if step_days == int(step_days):
            start = local_first.replace(hour=trig.at.hour, minute=trig.at.minute, second=0, microsecond=0)
            if start < local_first:  # today's wall time already passed at the anchor: start tomorrow
                start += timedelta(days=1)
            rule = rrule(DAILY, interval=int(step_days), dtstart=start, count=trig.count,
                until=end.astimezone(tz).replace(tzinfo=None) if end else None)
            return [(str(i), local_wall(d.date(), trig.at, tz)) for i, d in enumerate(rule)]
        # shorter intervals: `at` fixes the first occurrence, the interval counts on from there
        at_first = _anchored(trig.at, first, tz)
        first = at_first if at_first >= first else local_wall(
            first.astimezone(tz).date() + timedelta(days=1), trig.at, tz)
    hours = trig.interval.total_seconds() / 3600
    if hours == int(hours):
        rule = rrule(HOURLY, interval=int(hours), dtstart=first, count=trig.count, until=end)
        return [(str(i), d) for i, d in enumerate(rule)]
    out, n, when = [], 0, first
    while (trig.count is None or n < trig.count) and (end is None or when <= end):
        out.append((str(n), when))
        n, when = n + 1, when + trig.interval
    return out


def _calendar_series(trig: Every, first: datetime, end: datetime | None, tz) -> list[tuple[str, datetime]]:  # noqa: ANN001
    """``every`` in calendar months: occurrence k is k intervals after the first on the patient's calendar
    (a 31st falls on a shorter month's last day and comes back on the 31st), at ``at`` when given."""
    if for_range_checks(trig.interval) <= timedelta(0):
        return []
    if trig.at is not None:
        at_first = _anchored(trig.at, first, tz)
        first = at_first if at_first >= first else local_wall(
            first.astimezone(tz).date() + timedelta(days=1), trig.at, tz)
    out: list[tuple[str, datetime]] = []
    while trig.count is None or len(out) < trig.count:
        when = add(first, trig.interval * len(out), tz)
        when = _anchored(trig.at, when, tz)  # the same wall time, whatever the offset that day
        if end is not None and when > end:
            break
        out.append((str(len(out)), when))
    return out


class DayLoad:
    """Non-urgent touchpoints a patient already has per local day."""

    def __init__(self, tz_name: str, existing: Iterable[datetime] = ()) -> None:
        self.tz = zone(tz_name)
        self.counts: Counter[date] = Counter(d.astimezone(self.tz).date() for d in existing)

    def day(self, when: datetime) -> date:
        return when.astimezone(self.tz).date()

    def copy(self) -> DayLoad:
        """The same zone and counts, counted on apart from this load."""
        other = DayLoad.__new__(DayLoad)
        other.tz, other.counts = self.tz, Counter(self.counts)
        return other


def takes_slot(step: Step, policy: Policy) -> bool:
    """Whether a planned ``step`` takes a day's slot under the daily cap: a non-urgent send without a condition
    (a conditional one is counted by the dispatcher when it goes out; tasks and tags are no messages)."""
    return policy.counts_toward_cap(step.category) and step.touchpoint_action == "send" and not step.condition


def apply_policy(items: Iterable[Planned], *, tz_name: str, now: datetime, policy: Policy,
                 load: DayLoad) -> list[Planned]:
    """Missed policy, quiet hours / marketing window and the daily cap, in due order.

    The cap counts the sends of steps without a condition: a conditional one is decided at send time, where the
    dispatcher counts only what really went out that day.
    """
    tz = zone(tz_name)
    out: list[Planned] = []
    for item in sorted(items, key=lambda p: p.planned_at):
        step, category = item.step, item.step.category
        due, reason = item.planned_at, None
        if due < now:
            if step.missed.policy == "send" and now - due <= step.missed.grace:
                # urgent work always goes at once (an urgent ``on`` step fires on an event that occurred
                # moments before it arrived): that is no late send worth a label
                due, reason = now, None if category is Category.urgent else MISSED_LATE
            else:
                out.append(_decided(item, due, "skipped", MISSED_SKIPPED))
                continue
        if step.workdays_only and not isinstance(step.trigger, Every):  # issue 19: the next working day
            due = on_workday(due, tz)
        # quiet hours keep messages from patients at night; a staff task or a tag is no message: it is due
        # at once, and a task counts its deadlines in its team's working hours (carepath.runtime.working_hours)
        allowed = policy.next_allowed(due, category, tz) if step.touchpoint_action == "send" else due
        if allowed != due:
            in_quiet = not policy.allowed(due, Category.clinical, tz)
            due, reason = allowed, QUIET_HOURS if in_quiet else MARKETING_WINDOW
            if step.workdays_only:  # issue 19: deferred onto a holiday: on to the next working day
                due = policy.next_allowed(on_workday(due, tz), category, tz)
        # a step with a ``when`` may be skipped at send time: it reserves no day's slot (and is moved by no other's);
        # the dispatcher checks the cap as it goes out, after its condition (carepath.runtime.dispatch.decide)
        if takes_slot(step, policy):
            tries = 0
            while load.counts[load.day(due)] >= policy.daily_cap and tries < MAX_DEFER_DAYS:
                if step.over_cap == "drop":
                    break
                due = policy.next_allowed(policy.next_day_same_time(due, tz), category, tz)
                reason, tries = DAILY_CAP, tries + 1
            day = load.day(due)
            if load.counts[day] >= policy.daily_cap:
                out.append(_decided(item, due, "skipped", CAP_DROPPED))
                continue
            load.counts[day] += 1
        out.append(_decided(item, due, "scheduled", reason))
    return out


def _decided(item: Planned, due: datetime, status: str, reason: str | None) -> Planned:
    # a plain constructor call: dataclasses.replace is several times slower on this hot path
    return Planned(item.step, item.occurrence, item.planned_at, due, status, reason, item.event_id, item.anchor_at)


def plan_anchored(steps: Iterable[Step], anchors: Mapping[str, datetime | None], *, tz_name: str,
                  now: datetime, policy: Policy, load: DayLoad) -> list[Planned]:
    """Plan every anchor-based step of a journey for one enrollment."""
    raw = [Planned(step=s, occurrence=occ, planned_at=when, due_at=when, anchor_at=anchors[s.anchor])
           for s in steps for occ, when in occurrences(s, anchors, tz_name)]
    return apply_policy(raw, tz_name=tz_name, now=now, policy=policy, load=load)


def anchor_values(raw: Mapping[str, str | None], enrolled_at: datetime) -> dict[str, datetime | None]:
    """Anchors as stored on an enrollment (ISO strings) plus the built-in ``enrolled``."""
    values = {k: (datetime.fromisoformat(v) if v else None) for k, v in raw.items()}
    values[ENROLLED] = enrolled_at
    return values


def idempotency_key(enrollment_id: int, step_id: str, occurrence: str) -> str:
    return f"{enrollment_id}:{step_id}:{occurrence}"


def revision(occurrence: str) -> tuple[str, int]:
    """``"2@3"`` -> ``("2", 3)``: an anchored occurrence and how many times it was planned again after a move."""
    base, _, rev = occurrence.partition("@")
    return base, int(rev) if rev else 0


def revised(base: str, rev: int) -> str:
    """The occurrence of ``base`` planned again for the ``rev``-th time (a new idempotency key)."""
    return f"{base}@{rev}" if rev else base

