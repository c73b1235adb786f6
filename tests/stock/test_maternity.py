"""Stock journey maternity: antenatal reminders and education, a delivery to postnatal care, a loss ends it all."""

from __future__ import annotations

from datetime import date

from tests.engine import helpers as h
from tests.stock.story_b import story

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
        times = {x.template: x.at for x in s.sent()}
        assert times == {"education_first": "19:00", "community_invite": "19:30", "education_second": "19:00",
                         "antenatal_check": "10:00"}
        check = next(x.body for x in s.sent() if x.template == "antenatal_check")
        assert check.startswith("林女士您好") and "请立即就医" in check
        assert s.tasks() == []


def test_a_delivery_stops_antenatal_reminders_and_starts_postnatal_care(database_url, settings, clock):
    with story(database_url, settings, clock, "maternity") as s:
        _pregnant(s, "M2", marketing=False)
        s.run_until(s.when(20, 10))
        s.event("M2", "encounter.discharged", {"encounter_id": "D1", "diagnosis": "O80", "disposition": "home"})
        s.run_until(s.when(60, 12))
        # without marketing consent no education or invitation; the care messages go out
        assert s.days() == {20: [("postnatal_care", OPENID)], 58: [("postnatal_check", OPENID)]}
        marketing = [r for r in h.touchpoints(s.engine) if r.step in (
            "education-first-trimester", "education-second-trimester", "mothers-community")]
        assert len(marketing) == 3 and {r.reason for r in marketing} == {"skipped: no marketing consent"}
        assert {r.reason for r in h.touchpoints(s.engine, step="antenatal-monthly") if r.status == "skipped"} == {
            "skipped: condition false"}
        # the postnatal call on day 3, Sunday 24 May: the next working day, Monday 25 May (day 24)
        [call] = s.tasks()
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
        assert s.tasks() == []
