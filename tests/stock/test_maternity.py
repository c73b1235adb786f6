"""Stock journey maternity: antenatal reminders and education (by gestational week once the pregnancy is dated, else
from the registration visit taken as week 12), a delivery to postnatal care, a loss ends it all."""

from __future__ import annotations

from datetime import date, timedelta

from tests.engine import helpers as h
from tests.stock.story import story

OPENID, PHONE = "o-mother-1", "13100000051"


def _pregnant(s, mrn: str, *, marketing: bool) -> None:
    s.patient(mrn, name="林晓", phone=PHONE, openid=OPENID, birth_date=date(1994, 4, 4), sex="F",
              conditions=["Z34.0"])
    if marketing:
        s.event(mrn, "consent.changed", {"purpose": "marketing", "granted": True})
    s.event(mrn, "visit.checked_in", {"department": "产科"})  # the registration visit (建档), day 0


def test_antenatal_reminders_education_and_the_community_invitation(database_url, settings, clock):
    with story(database_url, settings, clock, "maternity") as s:  # day 0: Friday 1 May 2026
        s.patient("X1", name="赵敏", phone="13100000059", conditions=["I10"])  # not pregnant: not enrolled
        s.event("X1", "visit.checked_in", {"department": "产科"})
        _pregnant(s, "M1", marketing=True)
        s.run_until(s.when(60, 12))
        assert [e.status for e in h.enrollments(s.engine)] == ["active"]
        assert s.days() == {1: [("education_first", OPENID)], 7: [("community_invite", OPENID)],
                            14: [("education_second", OPENID)], 28: [("antenatal_check", OPENID)],
                            56: [("antenatal_check", OPENID)]}
        times = {x.template: x.at for x in s.messages()}
        assert times == {"education_first": "19:00", "community_invite": "19:30", "education_second": "19:00",
                         "antenatal_check": "10:00"}
        check = next(x.body for x in s.messages() if x.template == "antenatal_check")
        assert check.startswith("林女士您好") and "请立即就医" in check
        assert s.task_log() == []


def test_a_delivery_stops_antenatal_reminders_and_starts_postnatal_care(database_url, settings, clock):
    with story(database_url, settings, clock, "maternity") as s:
        _pregnant(s, "M2", marketing=False)
        s.run_until(s.when(20, 10))
        s.event("M2", "encounter.discharged", {"encounter_id": "D1", "diagnosis": "O80", "disposition": "home"})
        s.run_until(s.when(60, 12))
        # without marketing consent no education or invitation; the care messages go out
        assert s.days() == {20: [("postnatal_care", OPENID)], 58: [("postnatal_check", OPENID)]}
        marketing = [r for r in h.touchpoints(s.engine) if r.step in (
            "education-first-trimester", "education-second-trimester-undated", "mothers-community")]
        assert len(marketing) == 3 and {r.reason for r in marketing} == {"skipped: no marketing consent"}
        assert {r.reason for r in h.touchpoints(s.engine, step="antenatal-monthly-undated")
                if r.status == "skipped"} == {"skipped: condition false"}
        # the postnatal call on day 3, Sunday 24 May: the next working day, Monday 25 May (day 24)
        [call] = s.task_log()
        assert (call["day"], call["kind"], call["team"], call["sla_hours"]) == (24, "postnatal_call", "obstetrics",
                                                                                24.0)


def test_a_pregnancy_loss_ends_the_journey_with_nothing_more_sent(database_url, settings, clock):
    with story(database_url, settings, clock, "maternity") as s:
        _pregnant(s, "M3", marketing=True)
        s.run_until(s.when(10, 10))
        s.event("M3", "encounter.discharged", {"encounter_id": "D2", "diagnosis": "O03.9"})
        s.run_until(s.when(40, 12))
        assert [e.status for e in h.enrollments(s.engine)] == ["exited"]
        assert s.days() == {1: [("education_first", OPENID)], 7: [("community_invite", OPENID)]}
        assert s.task_log() == []


def _dated(s, mrn: str, weeks_at: int, day: int) -> None:
    """``pregnancy.dated`` now: her last menstrual period ``weeks_at`` weeks before story day ``day`` (midnight)."""
    lmp = s.local(s.when(day, 0)) - timedelta(weeks=weeks_at)
    s.event(mrn, "pregnancy.dated", {"lmp": lmp.isoformat(), "method": "ultrasound"})


def test_a_dated_pregnancy_is_reminded_by_gestational_week(database_url, settings, clock):
    with story(database_url, settings, clock, "maternity") as s:  # day 0: Friday 1 May 2026
        _pregnant(s, "M4", marketing=True)  # registered in week 10 (10 weeks after her last period)
        _dated(s, "M4", weeks_at=10, day=0)
        s.run_until(s.when(130, 23))
        # week 13 (day 21): second trimester; weeks 16, 20, 24 and 28 (days 42, 70, 98, 126): antenatal check
        # reminders; week 28: third trimester too. Not the registration-as-week-12 schedule (days 14, 28, 56...)
        assert s.days() == {1: [("education_first", OPENID)], 7: [("community_invite", OPENID)],
                            21: [("education_second", OPENID)], 42: [("antenatal_check", OPENID)],
                            70: [("antenatal_check", OPENID)], 98: [("antenatal_check", OPENID)],
                            126: [("antenatal_check", OPENID), ("education_third", OPENID)]}
        undated = [r for r in h.touchpoints(s.engine) if r.step.endswith("-undated")]
        assert undated and {r.reason for r in undated if r.due_at <= s.when(130, 23)} == {"skipped: condition false"}


def test_a_dating_after_registration_takes_over_the_week_12_schedule(database_url, settings, clock):
    with story(database_url, settings, clock, "maternity") as s:
        _pregnant(s, "M5", marketing=False)
        s.run_until(s.when(20, 12))
        _dated(s, "M5", weeks_at=15, day=20)  # dated on day 20 in week 15: she registered in week 12
        s.run_until(s.when(60, 12))
        # week 16 is day 27 and week 20 day 55; the week-12 schedule's day 28 and day 56 reminders do not go
        assert s.days() == {27: [("antenatal_check", OPENID)], 55: [("antenatal_check", OPENID)]}
        assert [r.reason for r in h.touchpoints(s.engine, step="antenatal-monthly-undated")
                if r.due_at <= s.when(60, 12)] == ["skipped: condition false"] * 2


def test_a_dating_before_any_visit_enrolls_her_on_her_gestational_weeks(database_url, settings, clock):
    with story(database_url, settings, clock, "maternity") as s:
        s.patient("M6", name="何静", phone=PHONE, openid=OPENID, birth_date=date(1996, 1, 1), sex="F",
                  conditions=["Z34.0"])
        _dated(s, "M6", weeks_at=14, day=0)  # the obstetric record is dated first: she is in week 14
        s.run_until(s.when(45, 12))
        assert [e.status for e in h.enrollments(s.engine)] == ["active"]
        # week 16 (day 14) and week 20 (day 42); no marketing consent: no education
        assert s.days() == {14: [("antenatal_check", OPENID)], 42: [("antenatal_check", OPENID)]}
