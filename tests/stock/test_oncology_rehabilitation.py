"""Stock journey oncology-rehabilitation: the quarterly re-check, psychological support on request, peers."""

from __future__ import annotations

from datetime import date

from tests.engine import helpers as h
from tests.stock.story import story

PHONE = "13100000061"


def test_a_season_of_rehabilitation_by_day(database_url, settings, clock):
    with story(database_url, settings, clock, "oncology-rehabilitation") as s:  # day 0: Friday 1 May 2026
        s.patient("T1", name="郑华", phone=PHONE, birth_date=date(1962, 8, 8), conditions=["C50.9"])
        s.patient("T2", name="钱亮", phone="13100000069", conditions=["E11"])  # no neoplasm: not enrolled
        s.event("T1", "consent.changed", {"purpose": "marketing", "granted": True})
        for mrn in ("T1", "T2"):
            s.event(mrn, "visit.checked_in", {"department": "肿瘤科"})
        s.run_until(s.when(15, 10))
        s.event("T1", "message.replied", {"text": "我想要心理支持", "channel": "sms"})
        s.run_until(s.when(109, 12))

        assert len(h.enrollments(s.engine)) == 1
        assert s.days() == {14: [("psych_offer", PHONE)], 30: [("peer_invite", PHONE)],
                            92: [("marker_recheck", PHONE)]}
        assert {x.template: x.at for x in s.messages()} == {"psych_offer": "15:00", "peer_invite": "19:30",
                                                        "marker_recheck": "10:00"}
        recheck = next(x.body for x in s.messages() if x.template == "marker_recheck")
        assert recheck.startswith("郑先生/女士您好") and "及时就医" in recheck
        journey_tasks = [(t["day"], t["kind"], t["team"], t["sla_hours"]) for t in s.task_log()
                         if t["kind"] in ("psychological_support", "call_patient")]
        # the reply asking for support: the psychology team; the unanswered re-check (day 106, Saturday 15
        # August): a nurse call on the next working day, Monday 17 August
        assert journey_tasks == [(15, "psychological_support", "psychology", 48.0),
                                 (108, "call_patient", "oncology", 48.0)]


def test_an_admission_pauses_the_quarterly_recheck(database_url, settings, clock):
    with story(database_url, settings, clock, "oncology-rehabilitation") as s:
        s.patient("T3", name="冯雪", phone=PHONE, conditions=["Z85.3"])
        s.event("T3", "visit.checked_in", {"department": "肿瘤科"})
        s.run_until(s.when(90, 10))
        s.event("T3", "encounter.admitted", {"encounter_id": "E9"})
        s.run_until(s.when(95, 10))
        s.event("T3", "encounter.discharged", {"encounter_id": "E9"})
        s.run_until(s.when(96, 12))
        assert [x.template for x in s.messages()] == ["psych_offer"]  # no marketing consent: no invitation
        [recheck] = h.touchpoints(s.engine, step="marker-recheck", status="skipped")
        assert recheck.reason == "skipped: programme paused"
