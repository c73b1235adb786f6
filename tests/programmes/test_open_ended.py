"""Issue 19.1: open-ended programmes on a rolling horizon, patient-chosen times, calendar rules, pauses."""

from __future__ import annotations

from datetime import date, time, timedelta

import pytest

from carepath.definition.journey_files import read_journey_text
from carepath.runtime.horizon import SUPERSEDED, extend_horizons
from carepath.runtime.pause import PAUSED
from carepath.runtime.planner import MISSED_LATE, MISSED_SKIPPED
from tests.engine import helpers as h
from tests.programmes.conftest import DAY, at_local, local

HORIZON = timedelta(days=14)

PROGRAMME = """
name: diabetes-programme
enroll: {events: [visit.checked_in]}
pause_on: [encounter.admitted]
resume_on: [encounter.discharged]
horizon: 14d
templates:
  pill: "{{ patient.surname }}先生/女士，该服药了。"
  recheck: "本月复查提醒：请预约内分泌科复诊。"
  hba1c: "请于本周检测糖化血红蛋白（HbA1c）。"
steps:
  - id: medication
    stage: post_visit
    every: {interval: 1d, at: patient.preferences.medication_time}
    missed: skip
    send: {template: pill, via: [sms]}
  - id: monthly-recheck
    stage: post_visit
    every: {rrule: "FREQ=MONTHLY;BYDAY=1MO", at: "09:00"}
    send: {template: recheck, via: [sms]}
  - id: hba1c
    stage: post_visit
    every: {interval: 3mo, start: 3mo, at: "10:00"}
    send: {template: hba1c, via: [sms]}
"""


def _programme():
    journey, problems = read_journey_text(PROGRAMME, known_channels={"sms"})
    assert problems == [], problems
    return journey


@pytest.fixture
def journeys():
    return [_programme()]


def _ahead(eng, now):
    """How far ahead the latest touchpoint of the programme is planned (its step's own time)."""
    rows = h.touchpoints(eng)
    return max(r.planned_at for r in rows) - now if rows else timedelta(0)


def _medication(eng, **where):
    return [r for r in h.touchpoints(eng, step="medication", **where)]


def test_a_daily_reminder_at_the_chosen_time_runs_a_year_within_the_horizon(eng, clock):
    ev = h.Events(clock)
    eng.ingest(ev("patient.preferences_updated", {"medication_time": "08:30"}))
    eng.ingest(ev("visit.checked_in", {"department": "内分泌科"}))  # 2026-05-01 09:00 Shanghai
    start = local(clock.now()).date()
    assert len(_medication(eng)) == 14  # the horizon, not a year of rows
    sent_at: dict[date, time] = {}
    admitted = discharged = None
    for n in range(1, 366):
        day = start + n * DAY
        if n == 100:  # the patient moves their reminder to the evening, at noon: today's was sent at 08:30
            clock.set(at_local(day, 8, 31))
            extend_horizons(eng)
            eng.dispatch_due()
            clock.set(at_local(day, 12))
            result = eng.ingest(ev("patient.preferences_updated", {"medication_time": "20:00"}))
            assert "re-timed" in result.summary()
            waiting = _medication(eng, status="scheduled")
            assert waiting and {local(r.planned_at).time() for r in waiting} == {time(20, 0)}
            assert all(local(r.planned_at).date() > day for r in waiting)  # today's went out: not again
        if n == 200:
            clock.set(at_local(day, 10))
            admitted = clock.now()
            eng.ingest(ev("encounter.admitted", {"encounter_id": "E1"}))
        if n == 210:
            clock.set(at_local(day, 10))
            discharged = clock.now()
            eng.ingest(ev("encounter.discharged", {"encounter_id": "E1"}))
        clock.set(at_local(day, 8, 31) if n < 100 else at_local(day, 20, 1))
        extend_horizons(eng)  # the maintenance flow, once a simulated day
        assert _ahead(eng, clock.now()) <= HORIZON
        if not admitted or discharged:
            assert [r for r in _medication(eng, status="scheduled") if r.planned_at > clock.now()]  # never forgotten
        eng.dispatch_due()
        for r in _medication(eng, status="sent"):
            sent_at.setdefault(local(r.planned_at).date(), local(r.sent_at).time())
    # one reminder a day at the chosen time, 08:30 until the change and 20:00 after it, none while admitted
    days = [start + n * DAY for n in range(1, 366)]
    paused_days = [d for d in days if at_local(d, 20) >= admitted and at_local(d, 20) < discharged]
    assert len(paused_days) == 10
    assert sorted(sent_at) == [d for d in days if d not in paused_days]
    assert {t for d, t in sent_at.items() if d <= start + 100 * DAY} == {time(8, 31)}
    assert {t for d, t in sent_at.items() if d > start + 100 * DAY} == {time(20, 1)}
    skipped = _medication(eng, status="skipped")
    assert sorted(local(r.planned_at).date() for r in skipped) == paused_days
    assert {r.reason for r in skipped} == {PAUSED}
    assert len(eng.sms.keys) == len(set(eng.sms.keys))  # nothing twice
    # the monthly re-check went out on each first Monday, the HbA1c reminder every three months
    rechecks = sorted(local(r.planned_at) for r in h.touchpoints(eng, step="monthly-recheck", status="sent"))
    assert rechecks and all(d.weekday() == 0 and d.day <= 7 and d.time() == time(9) for d in rechecks)
    hba1c = [local(r.planned_at).date() for r in h.touchpoints(eng, step="hba1c", status="sent")]
    assert hba1c == [date(2026, 8, 1), date(2026, 11, 1), date(2027, 2, 1), date(2027, 5, 1)]


def test_an_exit_ends_the_programme(eng, clock):
    ev = h.Events(clock)
    eng.ingest(ev("visit.checked_in"))
    eng.ingest(ev("patient.deceased", {}))
    clock.advance(30 * DAY)
    assert extend_horizons(eng) == 0
    assert h.touchpoints(eng, status="scheduled") == []


def test_a_missed_extension_catches_up_by_the_missed_policy_not_in_a_burst(eng, clock):
    """Maintenance down for ten days: of the occurrences that fell due meanwhile, only the latest may still go
    out (within grace); the others are recorded as skipped, and the send-within-grace step never bursts."""
    ev = h.Events(clock)
    eng.ingest(ev("visit.checked_in"))  # 09:00 on 1 May; the first medication reminder is tomorrow 08:00
    start = local(clock.now()).date()
    for n in range(1, 16):  # dispatch keeps running every morning; the horizon is never extended
        clock.set(at_local(start + n * DAY, 8, 5))
        eng.dispatch_due()
    assert len(_medication(eng, status="sent")) == 14  # the planned window, then nothing more was planned
    clock.set(at_local(start + 25 * DAY, 9))  # maintenance is back ten days later, an hour after that day's 08:00
    extend_horizons(eng)
    report = eng.dispatch_due()
    late = [r for r in h.touchpoints(eng, step="medication") if 14 < (local(r.planned_at).date() - start).days <= 25]
    assert len(late) == 11 and {r.status for r in late} == {"skipped"}  # recorded, `missed: skip`: none sent late
    assert sorted(r.reason for r in late) == [MISSED_SKIPPED] + [SUPERSEDED] * 10
    assert max(late, key=lambda r: r.planned_at).reason == MISSED_SKIPPED  # the latest one met its missed policy
    assert report.sent == 0


def test_the_latest_missed_occurrence_goes_out_late_the_earlier_ones_are_recorded(database_url, settings, clock):
    journey, problems = read_journey_text("""
name: hourly-check
enroll: {events: [visit.checked_in]}
horizon: 1d
templates: {t: "请记录今天的血压。"}
steps:
  - id: hourly
    stage: post_visit
    every: {interval: 2h}
    missed: {policy: send, grace: 12h}
    send: {template: t, via: [sms]}
""", known_channels={"sms"})
    assert problems == []
    from tests.portrait.helpers import sms_engine

    with sms_engine(database_url, settings, clock, [journey]) as eng:
        eng.ingest(h.Events(clock)("visit.checked_in"))
        clock.advance(5 * DAY + timedelta(hours=1))  # maintenance was down for five days
        extend_horizons(eng)
        rows = [r for r in h.touchpoints(eng) if clock.now() - 4 * DAY < r.planned_at <= clock.now()]
        assert len(rows) == 48
        late = [r for r in rows if r.status == "scheduled"]
        assert len(late) == 1 and late[0].reason == MISSED_LATE and late[0].due_at == clock.now()
        assert late[0].planned_at == max(r.planned_at for r in rows)  # the latest of them, not a burst of 48
        assert {(r.status, r.reason) for r in rows if r is not late[0]} == {("skipped", SUPERSEDED)}


def test_preferences_are_encrypted_and_unknown_ones_refused(eng, clock):
    from sqlalchemy import select

    from carepath.store.schema import Event, Patient

    ev = h.Events(clock)
    result = eng.ingest(ev("patient.preferences_updated", {"medication_time": "21:15"}))
    assert result.state == "applied", result.summary()
    with eng.db.connect() as conn:
        stored = conn.execute(select(Patient.preferences_enc)).scalar_one()
    assert "21:15" not in stored and "medication_time" not in stored
    bad = eng.ingest(ev("patient.preferences_updated", {"medicine_time": "08:00", "checkin_time": "25:00"}))
    assert bad.state == "refused"
    text = bad.summary()
    assert "unknown preference 'medicine_time'; did you mean 'medication_time'?" in text
    assert "checkin_time: '25:00' is not a time of day" in text
    with eng.db.connect() as conn:
        assert conn.execute(select(Event.status).where(Event.id == bad.event_id)).scalar_one() == "refused"
    from carepath.runtime.preferences import stored_preferences

    with eng.db.connect() as conn:
        assert stored_preferences(eng.cipher, conn.execute(select(Patient.preferences_enc)).scalar_one()) == {
            "medication_time": "21:15"}


def test_migrating_to_a_version_with_a_changed_reminder_replans_it_on_the_horizon(database_url, settings, clock):
    from carepath.runtime.migrate import migrate_enrollments
    from tests.portrait.helpers import sms_engine

    old = _programme()
    new, problems = read_journey_text(PROGRAMME.replace("at: patient.preferences.medication_time", 'at: "07:45"'),
                                      known_channels={"sms"})
    assert problems == []
    with sms_engine(database_url, settings, clock, [old]) as eng:
        eng.ingest(h.Events(clock)("visit.checked_in"))
    with sms_engine(database_url, settings, clock, [new]) as eng:
        report = migrate_enrollments(eng.db, "diabetes-programme", new.version, now=clock.now(), current=new)
        assert report.totals["retimed"] == 14 and h.touchpoints(eng, step="medication") == []
        kept = h.touchpoints(eng, step="monthly-recheck")  # unchanged: kept as planned
        assert kept and {r.status for r in kept} == {"scheduled"}
        extend_horizons(eng)
        rows = h.touchpoints(eng, step="medication")
        assert len(rows) == 14 and {local(r.planned_at).time() for r in rows} == {time(7, 45)}


def test_a_patient_record_carries_preferences_merged_into_the_stored_ones(eng, clock):
    from sqlalchemy import select

    from carepath.definition.events import PatientIn
    from carepath.runtime.preferences import stored_preferences
    from carepath.store.schema import Patient

    eng.ingest(h.Events(clock)("patient.preferences_updated", {"medication_time": "21:15"}))
    eng.upsert_patient(PatientIn(mrn="M1", preferences={"checkin_time": "19:00"}))
    result = eng.ingest(h.Events(clock)("patient.updated", {"patient": {"preferences": {"checkin_time": "9pm"}}}))
    assert "patient record preferences not applied (checkin_time: '9pm' is not a time of day" in result.summary()
    with eng.db.connect() as conn:
        stored = stored_preferences(eng.cipher, conn.execute(select(Patient.preferences_enc)).scalar_one())
    assert stored == {"medication_time": "21:15", "checkin_time": "19:00"}


def test_a_moved_anchor_replans_the_series_but_keeps_a_message_waiting_for_a_retry(database_url, settings, clock):
    journey, problems = read_journey_text("""
name: after-discharge
enroll: {events: [encounter.discharged]}
anchors: {discharge: {set_by: [encounter.discharged]}}
templates: {t: "出院后每日提醒：按时服药，注意休息。"}
steps:
  - id: daily
    stage: post_visit
    every: {interval: 1d, anchor: discharge, at: "09:30"}
    send: {template: t, via: [sms]}
""", known_channels={"sms"})
    assert problems == []
    busy = h.RecordingChannel("sms", retryable=lambda m: True)
    with h.running_engine(database_url, settings, clock, [journey], {"sms": busy}) as eng:
        ev = h.Events(clock)
        eng.ingest(ev("encounter.discharged", {"encounter_id": "E1"}))  # 09:00: today's 09:30 is the first
        clock.advance(timedelta(minutes=31))
        assert eng.dispatch_due().outcomes["retry"] == 1  # the provider is busy: it waits for a retry
        waiting = h.one_touchpoint(eng, step="daily", status="scheduled", attempts=1)
        later = at_local(local(clock.now()).date() + 2 * DAY, 11)
        result = eng.ingest(ev("encounter.discharged", {"encounter_id": "E1"}, occurred_at=later))
        assert result.state == "applied", result.summary()
        rows = h.touchpoints(eng, step="daily")
        assert waiting.id in {r.id for r in rows}  # not given back: a provider was asked about it
        moved = sorted(local(r.planned_at).date() for r in rows if r.id != waiting.id)
        assert moved[0] == local(later).date() + DAY  # the series restarts after the new discharge (11:00)
