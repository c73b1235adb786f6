"""Dates and deadlines (issue 16): calendar months and years, staff tasks and tags outside the patient's quiet
hours, and working-hours SLAs on the official Chinese calendar."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pydantic
import pytest

from carepath.definition.dsl import after, anchor, enroll_on, every, journey, on, send, step, tag, task, template
from carepath.definition.durations import CalendarDuration
from carepath.definition.journey_files import read_journey_text
from carepath.definition.model import Journey
from carepath.runtime import workdays
from carepath.runtime.planner import occurrences
from carepath.runtime.working_hours import add_working_time
from carepath.teams import TeamConfig

from tests.engine import helpers as h

SH = ZoneInfo("Asia/Shanghai")


def _due(step_, anchor_at: datetime) -> list[datetime]:
    return [when.astimezone(SH) for _, when in occurrences(step_, {"visit": anchor_at}, "Asia/Shanghai")]


def test_months_and_years_are_calendar_months_and_years() -> None:
    end_of_january = datetime(2026, 1, 31, 10, 0, tzinfo=SH)
    month = step("m", "post_visit", after("visit", "1mo", at="10:00"), send("t", ["sms"]))
    assert _due(month, end_of_january) == [datetime(2026, 2, 28, 10, 0, tzinfo=SH)]  # not 30 days: March 2
    year = step("y", "post_visit", after("visit", "P1Y"), send("t", ["sms"]))
    assert _due(year, datetime(2024, 2, 29, 9, 0, tzinfo=SH)) == [datetime(2025, 2, 28, 9, 0, tzinfo=SH)]
    assert _due(year, datetime(2025, 3, 1, 9, 0, tzinfo=SH)) == [datetime(2026, 3, 1, 9, 0, tzinfo=SH)]  # not 365d
    monthly = step("e", "post_visit", every("1mo", anchor="visit", at="09:00", count=4), send("t", ["sms"]))
    assert [d.date() for d in _due(monthly, datetime(2026, 1, 31, 8, 0, tzinfo=SH))] == [
        date(2026, 1, 31), date(2026, 2, 28), date(2026, 3, 31), date(2026, 4, 30)]
    # the patient's calendar: 00:30 on 1 February in Shanghai is still January in UTC
    early = step("x", "post_visit", after("visit", "1mo"), send("t", ["sms"]))
    assert _due(early, datetime(2026, 2, 1, 0, 30, tzinfo=SH)) == [datetime(2026, 3, 1, 0, 30, tzinfo=SH)]


def test_month_syntax_round_trips_and_fixed_durations_refuse_months() -> None:
    text = """\
name: yearly
enroll: {events: [appointment.booked]}
anchors:
  visit: {set_by: [appointment.booked], field: start}
templates:
  t: {body: "hi"}
steps:
  - id: recheck
    stage: post_visit
    after: {anchor: visit, offset: P1Y2D}
    send: {template: t, via: [sms]}
  - id: monthly
    stage: post_visit
    every: {interval: 1mo, anchor: visit, until: 1y}
    send: {template: t, via: [sms]}
"""
    j, problems = read_journey_text(text, file="yearly.yaml", known_channels={"sms"})
    assert problems == [] and j is not None
    assert j.steps[0].trigger.offset == CalendarDuration(12, timedelta(days=2))
    assert j.to_json()["steps"][0]["trigger"]["offset"] == "1y2d"
    assert Journey.model_validate(j.to_json()).version == j.version
    with pytest.raises(pydantic.ValidationError, match="months and years have no fixed length"):
        task("call", sla="1mo")
    too_far = text.replace("offset: P1Y2D", "offset: 13mo")
    _, problems = read_journey_text(too_far, file="yearly.yaml", known_channels={"sms"})
    assert [p.field for p in problems] == ["steps[0].after.offset"] and "1y1mo is out of range" in problems[0].message


def test_stored_versions_written_with_day_offsets_load_with_their_version() -> None:
    j = journey("v", enroll=enroll_on("appointment.booked"), anchors={"visit": anchor(["appointment.booked"])},
                templates=[template("t", "hi")],
                steps=[step("a", "post_visit", after("visit", "365d", at="10:00"), send("t", ["sms"])),
                       step("b", "post_visit", every("30d", anchor="visit", count=3), send("t", ["sms"]))])
    stored = j.to_json()
    assert stored["steps"][0]["trigger"]["offset"] == "365d" and stored["steps"][1]["trigger"]["interval"] == "30d"
    again = Journey.model_validate(stored)
    assert again.version == j.version and again.steps[0].trigger.offset == timedelta(days=365)


def _night_journey() -> Journey:
    return journey("complaints", enroll=enroll_on("appointment.booked"), templates=[template("t", "您好")],
                   steps=[step("complaint", "post_visit", on("appointment.booked"),
                               task("complaint", team="patient_service", sla="4h")),
                          step("flag", "post_visit", on("appointment.booked"), tag("complained")),
                          step("sorry", "post_visit", on("appointment.booked"), send("t", ["sms"]))])


def test_staff_tasks_and_tags_do_not_wait_for_the_patients_quiet_hours(database_url, settings, clock) -> None:
    clock.set(datetime(2026, 5, 6, 23, 0, tzinfo=SH))  # a Wednesday night, patient-local
    with h.running_engine(database_url, settings, clock, [_night_journey()], {"sms": h.RecordingChannel()}) as eng:
        eng.ingest(h.Events(clock)("appointment.booked", {"appointment_id": "A1", "start": "2026-05-20T10:00:00+08:00"}))
        due = {t.step: t for t in h.touchpoints(eng)}
        assert due["complaint"].due_at == clock.now() and due["complaint"].reason is None
        assert due["flag"].due_at == clock.now()
        assert due["sorry"].due_at == datetime(2026, 5, 7, 8, 0, tzinfo=SH)  # the message still waits
        eng.dispatch_due()
        [opened] = h.staff_tasks(eng)
        assert opened.created_at == clock.now()
        assert opened.sla_due_at == clock.now() + timedelta(hours=4)  # round the clock team: 03:00, not 12:00
        statuses = {t.step: t.status for t in h.touchpoints(eng)}
        assert statuses == {"complaint": "sent", "flag": "sent", "sorry": "scheduled"}


def test_a_task_past_its_time_at_night_is_opened_then_not_deferred(database_url, settings, clock) -> None:
    """The dispatcher's send-time re-check: a task touchpoint due at night is opened, not moved to 08:00."""
    later = journey("later", enroll=enroll_on("appointment.booked"),
                    steps=[step("call", "post_visit", after("enrolled", "30m"), task("call_patient", sla="1h"))])
    clock.set(datetime(2026, 5, 6, 20, 0, tzinfo=SH))  # due at 20:30, outside quiet hours; the worker is late
    with h.running_engine(database_url, settings, clock, [later], {}) as eng:
        eng.ingest(h.Events(clock)("appointment.booked", {"appointment_id": "A1", "start": "2026-05-20T10:00:00+08:00"}))
        clock.set(datetime(2026, 5, 6, 22, 5, tzinfo=SH))
        eng.dispatch_due()
        assert [t.status for t in h.touchpoints(eng)] == ["sent"] and len(h.staff_tasks(eng)) == 1


OFFICE = TeamConfig(working_hours="08:30-17:30", workdays=[1, 2, 3, 4, 5])


def test_working_hours_follow_the_official_chinese_calendar() -> None:
    # National Day 2026: 1-7 October off; Saturday 10 October is an adjusted working day
    before_holiday = datetime(2026, 9, 30, 16, 30, tzinfo=SH)
    assert add_working_time(before_holiday, timedelta(hours=2), OFFICE) == datetime(2026, 10, 8, 9, 30, tzinfo=SH)
    friday = datetime(2026, 10, 9, 17, 0, tzinfo=SH)
    assert add_working_time(friday, timedelta(hours=1), OFFICE) == datetime(2026, 10, 10, 9, 0, tzinfo=SH)
    weekdays_only = OFFICE.model_copy(update={"calendar": "none"})
    assert add_working_time(before_holiday, timedelta(hours=2), weekdays_only) == datetime(2026, 10, 1, 9, 30,
                                                                                           tzinfo=SH)
    round_the_clock = TeamConfig()
    assert add_working_time(before_holiday, timedelta(hours=2), round_the_clock) == before_holiday + timedelta(hours=2)


def test_is_workday_knows_holidays_and_adjusted_days_and_falls_back_to_weekdays(caplog) -> None:
    assert not workdays.is_workday(date(2026, 10, 1))  # National Day, a Thursday
    assert workdays.is_workday(date(2026, 2, 14))  # a Saturday worked before the Spring Festival
    assert workdays.is_workday(date(2026, 11, 20)) and not workdays.is_workday(date(2026, 11, 21))
    assert workdays.official_day(date(2026, 10, 1)) == "holiday"
    assert workdays.official_day(date(2026, 10, 10)) == "adjusted_workday"
    far = 2099
    workdays.covered.cache_clear()
    with caplog.at_level(logging.WARNING, logger="carepath.runtime.workdays"):
        assert workdays.is_workday(date(far, 1, 1)) is (date(far, 1, 1).isoweekday() <= 5)
        assert not workdays.is_workday(date(far, 1, 3))  # a Saturday
        workdays.is_workday(date(far, 1, 5))
    assert [r.getMessage() for r in caplog.records].count(
        f"the Chinese working-day calendar (package chinesecalendar) has no data for {far}: counting Monday to "
        "Friday as working days; upgrade chinesecalendar once that year's holiday notice is published") == 1
