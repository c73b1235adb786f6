"""Issue 19.2: calendar moments (birthdays, lunar festivals, fixed days) and workday-only steps."""

from __future__ import annotations

import csv
import logging
from datetime import date, datetime, time
from pathlib import Path

import pytest

from carepath.definition.calendar_rules import moment_dates
from carepath.definition.events import PatientIn
from carepath.definition.journey_files import read_journey_text
from carepath.runtime import workdays
from carepath.runtime.horizon import extend_horizons
from tests.engine import helpers as h
from tests.programmes.conftest import DAY, SHANGHAI, at_local, local

TABLE = Path(__file__).resolve().parents[1] / "data" / "calendar" / "lunar_2026_2035.csv"


def _table() -> list[dict]:
    with TABLE.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("row", [r for r in _table() if r["kind"] == "festival"],
                         ids=lambda r: f"{r['name']}-{r['lunar_year']}")
def test_lunar_festivals_2026_2035_match_the_independent_table(row):
    expected = date.fromisoformat(row["gregorian"])
    assert moment_dates(row["name"], None, range(expected.year, expected.year + 1)) == [expected]


@pytest.mark.parametrize("row", [r for r in _table() if r["kind"] == "birthday"],
                         ids=lambda r: f"{r['name']}-{r['lunar_year']}")
def test_lunar_birthdays_2026_2035_match_the_independent_table(row):
    """Born on a 30th, in a leap month, or late in the twelfth month (kept the next Gregorian year)."""
    expected = date.fromisoformat(row["gregorian"])
    born = date.fromisoformat(row["name"])
    assert expected in moment_dates("birthday", None, range(expected.year, expected.year + 1), born=born,
                                    lunar_birthday=True)


def test_the_table_covers_every_festival_and_year():
    rows = _table()
    assert {(r["name"], r["lunar_year"]) for r in rows if r["kind"] == "festival"} == {
        (n, str(y)) for n in ("春节", "元宵", "端午", "七夕", "中秋", "重阳") for y in range(2026, 2036)}
    assert len({r["name"] for r in rows if r["kind"] == "birthday"}) == 8


GREETINGS = """
name: greetings
enroll: {events: [visit.checked_in]}
horizon: 30d
templates:
  birthday: "{{ patient.surname }}先生/女士，生日快乐！"
  festival: "中秋快乐，祝您身体健康。"
  diabetes_day: "今天是世界糖尿病日：控糖路上，我们一直在。"
steps:
  - {id: birthday, stage: post_visit, calendar: {moment: birthday, at: "10:00"}, send: {template: birthday, via: [sms]}}
  - {id: mid-autumn, stage: post_visit, calendar: 中秋, send: {template: festival, via: [sms]}}
  - {id: diabetes-day, stage: post_visit, calendar: {moment: world-diabetes-day, at: "10:30"},
     send: {template: diabetes_day, via: [sms]}}
"""


@pytest.fixture
def journeys():
    journey, problems = read_journey_text(GREETINGS, known_channels={"sms"})
    assert problems == [], problems
    return [journey]


def test_birthday_and_festival_greetings_follow_the_calendar_and_need_marketing_consent(eng, clock):
    ev = h.Events(clock)
    eng.upsert_patient(PatientIn(mrn="M1", name="张三", phone="13812341234", birth_date=date(1995, 10, 8),
                                 birthday_calendar="lunar"))
    eng.upsert_patient(PatientIn(mrn="M2", name="李四", phone="13912345678", birth_date=date(1995, 10, 8)))
    eng.ingest(ev("consent.changed", {"purpose": "marketing", "granted": True}))
    eng.ingest(ev("visit.checked_in"))
    eng.ingest(ev("visit.checked_in", mrn="M2"))
    while clock.now() < datetime(2027, 12, 31, tzinfo=SHANGHAI):
        clock.advance(2 * DAY)
        extend_horizons(eng)
        eng.dispatch_due()
    sent = {(r.patient_id, r.step, local(r.planned_at).date()) for r in h.touchpoints(eng, status="sent")}
    table = {r["lunar_year"]: date.fromisoformat(r["gregorian"]) for r in _table() if r["name"] == "1995-10-08"}
    assert sent == {(1, "birthday", table["2026"]), (1, "birthday", table["2027"]),
                    (1, "mid-autumn", date(2026, 9, 25)), (1, "mid-autumn", date(2027, 9, 15)),
                    (1, "diabetes-day", date(2026, 11, 14)), (1, "diabetes-day", date(2027, 11, 14))}
    times = {local(r.planned_at).time() for r in h.touchpoints(eng, status="sent", step="mid-autumn")}
    assert times == {time(9, 0)}  # a calendar moment's default time
    # greetings are marketing: the patient without marketing consent gets none (recorded as such)
    other = h.touchpoints(eng, patient_id=2)
    assert {r.category for r in other} == {"marketing"}
    assert {(r.status, r.reason) for r in other} == {("skipped", "skipped: no marketing consent")}
    assert sorted(local(r.planned_at).date() for r in other if r.step == "birthday") == [
        date(2026, 10, 8), date(2027, 10, 8)]  # a Gregorian birthday


NUDGE = """
name: office-workers
enroll: {events: [visit.checked_in]}
horizon: 40d
templates:
  standup: "久坐提醒：起来活动五分钟吧。"
  followup: "您好，请问复诊后感觉如何？"
steps:
  - id: standup
    stage: post_visit
    every: {interval: 1d, at: "15:00"}
    workdays_only: true
    send: {template: standup, via: [sms]}
  - id: follow-up-call
    stage: post_visit
    after: {anchor: enrolled, offset: 1d, at: "15:00"}
    workdays_only: true
    task: {task: call_patient}
"""


def _nudge_engine(database_url, settings, clock):
    from tests.portrait.helpers import sms_engine

    journey, problems = read_journey_text(NUDGE, known_channels={"sms"})
    assert problems == [], problems
    return sms_engine(database_url, settings, clock, [journey])


def test_a_workday_nudge_skips_the_national_day_holiday_and_lands_on_the_adjusted_weekend_day(
        database_url, settings, clock):
    clock.set(datetime(2026, 9, 30, 9, 0, tzinfo=SHANGHAI))
    with _nudge_engine(database_url, settings, clock) as eng:
        eng.ingest(h.Events(clock)("visit.checked_in"))
        days = [local(r.planned_at).date() for r in h.touchpoints(eng, step="standup")]
        assert days[:6] == [date(2026, 9, 30), date(2026, 10, 8), date(2026, 10, 9), date(2026, 10, 10),
                            date(2026, 10, 12), date(2026, 10, 13)]  # 1-7 October off; Saturday 10 October works
        assert date(2026, 10, 11) not in days and date(2026, 10, 17) not in days  # ordinary weekend days
        assert {local(r.planned_at).time() for r in h.touchpoints(eng, step="standup")} == {time(15, 0)}
        call = h.one_touchpoint(eng, step="follow-up-call")  # one day after, 1 October, is a holiday
        assert local(call.due_at) == datetime(2026, 10, 8, 15, 0, tzinfo=SHANGHAI)


def test_a_year_the_working_day_calendar_does_not_cover_falls_back_to_weekdays_with_a_warning(
        database_url, settings, clock, caplog):
    assert not workdays.covered(2027)  # chinesecalendar 1.11 knows 2004-2026
    workdays.covered.cache_clear()
    clock.set(datetime(2027, 3, 1, 9, 0, tzinfo=SHANGHAI))  # a Monday
    with caplog.at_level(logging.WARNING, logger="carepath.runtime.workdays"), \
            _nudge_engine(database_url, settings, clock) as eng:
        result = eng.ingest(h.Events(clock)("visit.checked_in"))
        assert result.state == "applied"
        days = [local(r.planned_at).date() for r in h.touchpoints(eng, step="standup")]
    assert days and all(d.isoweekday() <= 5 for d in days)
    window = [date(2027, 3, 1) + n * DAY for n in range(41)]
    assert days == [d for d in window if d.isoweekday() <= 5 and at_local(d, 15) <= clock.now() + 40 * DAY]
    assert any("no data for 2027" in r.getMessage() and "Monday to Friday" in r.getMessage() for r in caplog.records)
