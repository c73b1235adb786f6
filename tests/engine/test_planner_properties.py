"""Properties of the pure planner (no database): quiet hours, caps, local wall times, missed policy."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from carepath.definition.dsl import after, before, every, send, step
from carepath.definition.model import Category
from carepath.runtime.planner import (
    CAP_DROPPED,
    DAILY_CAP,
    MARKETING_WINDOW,
    MISSED_LATE,
    MISSED_SKIPPED,
    QUIET_HOURS,
    DayLoad,
    Planned,
    apply_policy,
    occurrences,
    plan_anchored,
)
from carepath.runtime.policy import Policy, local_wall

UTC = timezone.utc
ZONES = ["Asia/Shanghai", "America/New_York", "Europe/London"]
# 2026 daylight-saving switches: New York 8 Mar / 1 Nov, London 29 Mar / 25 Oct (Shanghai has none)
DST_DATES = [date(2026, 3, 8), date(2026, 11, 1), date(2026, 3, 29), date(2026, 10, 25)]
CATEGORIES = list(Category)
FAST = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])


def wall_exists(d: date, t: time, tz: ZoneInfo) -> bool:
    """False for a wall time skipped by a spring-forward jump."""
    naive = datetime.combine(d, t)
    return naive.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) == naive


# ------------------------------------------------------------------ strategies

zones = st.sampled_from(ZONES)
wall_times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45, 59]))


@st.composite
def instants_near_dst(draw) -> datetime:
    """An instant within a few days of a DST switch (or on an ordinary 2026 day)."""
    day = draw(st.one_of(st.sampled_from(DST_DATES), st.dates(date(2026, 1, 1), date(2026, 12, 31))))
    minutes = draw(st.integers(-3 * 24 * 60, 3 * 24 * 60))
    return datetime.combine(day, time(0), tzinfo=UTC) + timedelta(minutes=minutes)


@st.composite
def anchored_steps(draw, *, max_steps: int = 5, categories=CATEGORIES, allow_every: bool = True):
    """A few anchor-based steps (before/after with optional ``at``, sometimes ``every``)."""
    n = draw(st.integers(1, max_steps))
    steps = []
    for i in range(n):
        category = draw(st.sampled_from(categories)).value
        at = draw(st.none() | wall_times)
        at_s = at.strftime("%H:%M") if at else None
        kind = draw(st.sampled_from(["before", "after", "every"] if allow_every else ["before", "after"]))
        if kind == "every":
            trigger = every(draw(st.sampled_from(["1d", "2d", "6h", "90m"])), anchor="appointment",
                            start=f"{draw(st.integers(0, 48))}h", at=at_s, count=draw(st.integers(1, 8)))
        else:
            offset = timedelta(minutes=draw(st.integers(0, 10 * 24 * 60)))
            trigger = (before if kind == "before" else after)("appointment", offset, at=at_s)
        steps.append(step(f"s{i}", "post_visit", trigger, send("t", ["sms"]), category=category,
                          missed=draw(st.sampled_from(["send", "skip"])),
                          grace=timedelta(hours=draw(st.integers(0, 48))),
                          over_cap=draw(st.sampled_from(["defer", "drop"]))))
    return steps


policies = st.one_of(st.just(Policy()), st.builds(
    lambda ms, me: Policy(marketing_start=time(ms), marketing_end=time(me)),
    st.integers(8, 12), st.integers(14, 21)))


# ---------------------------------------------------- quiet hours and windows


@FAST
@given(tz=zones, anchor=instants_near_dst(), steps=anchored_steps(), now_shift=st.integers(-14 * 24, 2 * 24),
       policy=policies)
def test_scheduled_touchpoints_respect_quiet_hours_and_marketing_window(tz, anchor, steps, now_shift, policy):
    now = anchor + timedelta(hours=now_shift)
    zi = ZoneInfo(tz)
    planned = plan_anchored(steps, {"appointment": anchor}, tz_name=tz, now=now, policy=policy,
                            load=DayLoad(tz))
    assert len(planned) == sum(len(occurrences(s, {"appointment": anchor}, tz)) for s in steps)
    for p in planned:
        if p.status != "scheduled":
            assert p.reason in (MISSED_SKIPPED, CAP_DROPPED)
            continue
        assert p.due_at >= now, "never scheduled in the past"
        wall = p.due_at.astimezone(zi).time()
        category = p.step.category
        if category is Category.urgent:
            # urgent bypasses quiet hours and caps: only the missed policy may move it (to now)
            assert p.due_at == max(p.planned_at, now)
            continue
        assert time(8, 0) <= wall < time(21, 0), f"{category.value} at {wall} local is in quiet hours"
        if category is Category.marketing:
            assert policy.marketing_start <= wall < policy.marketing_end
        if p.planned_at >= now:
            assert p.due_at >= p.planned_at, "policy only defers, never advances"
            if p.due_at != p.planned_at:
                assert p.reason in (QUIET_HOURS, MARKETING_WINDOW, DAILY_CAP)


@pytest.mark.parametrize("tz", ZONES)
def test_quiet_hours_defer_to_next_morning_and_urgent_stays(tz):
    zi = ZoneInfo(tz)
    anchor = local_wall(date(2026, 6, 10), time(23, 30), zi)  # 23:30 local
    now = anchor - timedelta(days=2)
    steps = [step("c", "post_visit", after("appointment"), send("t", ["sms"])),
             step("m", "post_visit", after("appointment", "1h"), send("t", ["sms"]), category="marketing"),
             step("u", "post_visit", after("appointment"), send("t", ["sms"]), category="urgent")]
    policy = Policy(marketing_start=time(10, 0))
    out = {p.step.id: p for p in plan_anchored(steps, {"appointment": anchor}, tz_name=tz, now=now,
                                                 policy=policy, load=DayLoad(tz))}
    assert out["c"].due_at == local_wall(date(2026, 6, 11), time(8, 0), zi)
    assert out["c"].reason == QUIET_HOURS
    assert out["m"].due_at == local_wall(date(2026, 6, 11), time(10, 0), zi)
    assert out["u"].due_at == anchor and out["u"].reason is None


# ----------------------------------------------------------------- daily cap


@FAST
@given(tz=zones, anchor=instants_near_dst(), steps=anchored_steps(max_steps=6),
       existing=st.lists(st.integers(-24 * 60, 6 * 24 * 60), max_size=8),
       now_shift=st.integers(-10 * 24, 0), cap=st.integers(1, 4))
def test_daily_cap_never_exceeded_per_local_day(tz, anchor, steps, existing, now_shift, cap):
    now = anchor + timedelta(hours=now_shift)
    policy = Policy(daily_cap=cap)
    existing_times = [now + timedelta(minutes=m) for m in existing]
    load = DayLoad(tz, existing_times)
    before_counts = Counter(load.counts)
    planned = plan_anchored(steps, {"appointment": anchor}, tz_name=tz, now=now, policy=policy, load=load)
    zi = ZoneInfo(tz)
    new = Counter(p.due_at.astimezone(zi).date() for p in planned
                  if p.status == "scheduled" and p.step.category is not Category.urgent)
    for day, n in new.items():
        if before_counts[day] >= cap:
            assert n == 0, f"{n} new on {day}, already {before_counts[day]} (cap {cap})"
        else:
            assert before_counts[day] + n <= cap, f"{day}: {before_counts[day]} existing + {n} new > {cap}"
    # the load is updated with what was scheduled (so the next enrollment sees it)
    assert load.counts == before_counts + new
    for p in planned:
        if p.reason == CAP_DROPPED:
            assert p.step.over_cap == "drop", "a deferring step is never dropped within 60 days"
            assert p.step.category is not Category.urgent
            day = p.due_at.astimezone(zi).date()
            assert before_counts[day] + new[day] >= cap
        if p.reason == DAILY_CAP:
            assert p.status == "scheduled" and p.due_at.astimezone(zi).date() > p.planned_at.astimezone(zi).date()


def test_cap_counts_existing_load_and_urgent_is_exempt():
    tz = "Asia/Shanghai"
    zi = ZoneInfo(tz)
    day = date(2026, 5, 4)
    anchor = local_wall(day, time(9, 0), zi)
    now = anchor - timedelta(days=1)
    load = DayLoad(tz, [local_wall(day, time(8, 30), zi), local_wall(day, time(8, 45), zi)])  # 2 already
    steps = [step(f"c{i}", "post_visit", after("appointment", f"{i}h"), send("t", ["sms"])) for i in range(3)]
    steps += [step("drop", "post_visit", after("appointment", "4h"), send("t", ["sms"]), over_cap="drop"),
              step("urgent", "post_visit", after("appointment", "5h"), send("t", ["sms"]), category="urgent")]
    out = {p.step.id: p for p in plan_anchored(steps, {"appointment": anchor}, tz_name=tz, now=now,
                                                 policy=Policy(), load=load)}
    assert out["c0"].due_at == anchor and out["c0"].reason is None  # the third of the day
    for sid, hours in (("c1", 1), ("c2", 2)):  # over the cap: same time next day(s)
        assert out[sid].reason == DAILY_CAP and out[sid].status == "scheduled"
    assert out["c1"].due_at == anchor + timedelta(days=1, hours=1)
    assert out["c2"].due_at == anchor + timedelta(days=1, hours=2)
    assert out["drop"].status == "skipped" and out["drop"].reason == CAP_DROPPED
    assert out["urgent"].due_at == anchor + timedelta(hours=5) and out["urgent"].status == "scheduled"


# ------------------------------------------------------ at="HH:MM" local time


@FAST
@given(tz=zones, anchor=instants_near_dst(), at=wall_times, kind=st.sampled_from(["before", "after"]),
       offset_h=st.integers(0, 72))
@example(tz="America/New_York", anchor=datetime(2026, 3, 9, 14, 0, tzinfo=UTC), at=time(9, 0), kind="before",
         offset_h=24)
@example(tz="Europe/London", anchor=datetime(2026, 10, 26, 10, 0, tzinfo=UTC), at=time(1, 30), kind="before",
         offset_h=24)
def test_at_holds_in_patient_zone(tz, anchor, at, kind, offset_h):
    zi = ZoneInfo(tz)
    s = step("s", "pre_visit", (before if kind == "before" else after)("appointment", f"{offset_h}h",
                                                                       at=at.strftime("%H:%M")),
             send("t", ["sms"]), category="urgent")
    base = anchor - timedelta(hours=offset_h) if kind == "before" else anchor + timedelta(hours=offset_h)
    local_day = base.astimezone(zi).date()
    assume(wall_exists(local_day, at, zi))  # the gap rule has its own test below
    [(occ, when)] = occurrences(s, {"appointment": anchor}, tz)
    assert occ == "0"
    assert when.tzinfo is not None and when.utcoffset() == timedelta(0)
    lw = when.astimezone(zi)
    assert (lw.date(), lw.time()) == (local_day, at)


@FAST
@given(tz=zones, anchor=instants_near_dst(), at=wall_times, interval_days=st.integers(1, 3),
       count=st.integers(1, 10), start_h=st.integers(0, 30))
def test_every_at_repeats_at_the_same_local_wall_time_across_dst(tz, anchor, at, interval_days, count, start_h):
    zi = ZoneInfo(tz)
    s = step("s", "post_visit", every(f"{interval_days}d", anchor="appointment", start=f"{start_h}h",
                                      at=at.strftime("%H:%M"), count=count), send("t", ["sms"]))
    out = occurrences(s, {"appointment": anchor}, tz)
    assert [o for o, _ in out] == [str(i) for i in range(count)]
    first = anchor + timedelta(hours=start_h)
    days = [w.astimezone(zi).date() for _, w in out]
    assert all((b - a).days == interval_days for a, b in zip(days, days[1:]))
    assert out[0][1] >= first - timedelta(hours=1)  # never before the series starts (gap tolerance)
    for (_, when), day in zip(out, days):
        if wall_exists(day, at, zi):
            assert when.astimezone(zi).time() == at


@FAST
@given(tz=zones, anchor=instants_near_dst(), interval=st.sampled_from(["90m", "6h", "12h", "1d", "36h", "2d"]),
       at=st.none() | wall_times, count=st.integers(1, 12))
def test_every_occurrences_are_distinct_and_increasing(tz, anchor, interval, at, count):
    """No two occurrences at one instant (one message each); with ``at`` the series starts at that wall time."""
    zi = ZoneInfo(tz)
    s = step("s", "post_visit", every(interval, anchor="appointment", at=at.strftime("%H:%M") if at else None,
                                      count=count), send("t", ["sms"]))
    instants = [w for _, w in occurrences(s, {"appointment": anchor}, tz)]
    assert len(instants) == count
    assert all(a < b for a, b in zip(instants, instants[1:])), instants
    assert instants[0] >= anchor - timedelta(hours=1)  # not before the series starts (DST gap tolerance)
    if at is None:
        assert instants[0] == anchor
    else:
        first = instants[0].astimezone(zi)
        if wall_exists(first.date(), at, zi):
            assert first.time() == at


def test_every_sub_day_interval_with_at_never_repeats_an_instant():
    s = step("s", "post_visit", every("12h", at="09:00", count=4), send("t", ["sms"]))
    instants = [w for _, w in occurrences(s, {"enrolled": datetime(2026, 5, 1, 1, 0, tzinfo=UTC)}, "Asia/Shanghai")]
    assert len(set(instants)) == len(instants), instants


GAPS = [  # (zone, spring-forward date, wall time inside the gap, expected local wall time)
    ("America/New_York", date(2026, 3, 8), time(2, 30), time(3, 30)),
    ("America/New_York", date(2026, 3, 8), time(2, 0), time(3, 0)),
    ("Europe/London", date(2026, 3, 29), time(1, 15), time(2, 15)),
]


@pytest.mark.parametrize("tz,day,at,expected", GAPS)
def test_wall_time_in_spring_forward_gap_moves_forward_by_the_gap(tz, day, at, expected):
    zi = ZoneInfo(tz)
    assert not wall_exists(day, at, zi)
    lw = local_wall(day, at, zi).astimezone(zi)
    assert (lw.date(), lw.time()) == (day, expected)
    # and so does a step planned at that wall time (an urgent one is not moved by policy)
    anchor = local_wall(day, time(12, 0), zi)
    s = step("s", "pre_visit", before("appointment", "0s", at=at.strftime("%H:%M")), send("t", ["sms"]),
             category="urgent")
    [(_, when)] = occurrences(s, {"appointment": anchor}, tz)
    assert when.astimezone(zi).time() == expected


@pytest.mark.parametrize("tz,day", [("America/New_York", date(2026, 11, 1)), ("Europe/London", date(2026, 10, 25))])
def test_ambiguous_fall_back_wall_time_is_kept(tz, day):
    zi = ZoneInfo(tz)
    lw = local_wall(day, time(1, 30), zi).astimezone(zi)
    assert (lw.date(), lw.time()) == (day, time(1, 30))


# -------------------------------------------------------------- missed policy


@FAST
@given(tz=zones, planned_ago_min=st.integers(1, 72 * 60), grace_h=st.integers(0, 48),
       policy_name=st.sampled_from(["send", "skip"]), category=st.sampled_from(CATEGORIES),
       now=instants_near_dst())
def test_missed_touchpoint_sent_now_within_grace_or_skipped(tz, planned_ago_min, grace_h, policy_name, category,
                                                             now):
    zi = ZoneInfo(tz)
    s = step("s", "post_visit", after("appointment"), send("t", ["sms"]), category=category.value,
             missed=policy_name, grace=f"{grace_h}h")
    planned_at = now - timedelta(minutes=planned_ago_min)
    item = Planned(step=s, occurrence="0", planned_at=planned_at, due_at=planned_at)
    [p] = apply_policy([item], tz_name=tz, now=now, policy=Policy(), load=DayLoad(tz))
    within = policy_name == "send" and timedelta(minutes=planned_ago_min) <= timedelta(hours=grace_h)
    if not within:
        assert (p.status, p.reason) == ("skipped", MISSED_SKIPPED)
        return
    assert p.status == "scheduled"
    assert p.due_at >= now, "never scheduled in the past"
    if category is Category.urgent:  # sent at once, as urgent work always is: not labelled a late send
        assert (p.due_at, p.reason) == (now, None)
    elif Policy().allowed(now, category, zi):
        assert (p.due_at, p.reason) == (now, MISSED_LATE)
    else:
        assert p.due_at == Policy().next_allowed(now, category, zi)
        assert time(8) <= p.due_at.astimezone(zi).time() < time(21)


def test_missed_policy_through_plan_anchored():
    tz = "Asia/Shanghai"
    zi = ZoneInfo(tz)
    now = local_wall(date(2026, 5, 10), time(10, 0), zi)
    anchor = now - timedelta(hours=3)
    steps = [step("late_ok", "post_visit", after("appointment", "1h"), send("t", ["sms"]), grace="6h"),
             step("too_late", "post_visit", after("appointment", "1h"), send("t", ["sms"]), grace="1h"),
             step("skip", "post_visit", after("appointment", "1h"), send("t", ["sms"]), missed="skip"),
             step("future", "post_visit", after("appointment", "5h"), send("t", ["sms"]), missed="skip")]
    out = {p.step.id: p for p in plan_anchored(steps, {"appointment": anchor}, tz_name=tz, now=now,
                                                 policy=Policy(daily_cap=10), load=DayLoad(tz))}
    assert (out["late_ok"].status, out["late_ok"].due_at, out["late_ok"].reason) == ("scheduled", now, MISSED_LATE)
    assert (out["too_late"].status, out["too_late"].reason) == ("skipped", MISSED_SKIPPED)
    assert (out["skip"].status, out["skip"].reason) == ("skipped", MISSED_SKIPPED)
    assert (out["future"].status, out["future"].due_at) == ("scheduled", anchor + timedelta(hours=5))
