"""Issue 24.1: the stock orthopaedic rehabilitation journey, driven by two patients discharged from the
orthopaedic ward on Friday 1 May 2026: daily exercise guidance in week 1, follow-ups on day 3, 7 and 30, red
flags routed to staff with deadlines, a readmission ending the journey."""

from __future__ import annotations

from datetime import date, time, timedelta

from tests.stock.story import story

KNEE, HIP, CARDIO = "O-KNEE", "O-HIP", "O-CARDIO"
TICKS = (time(8, 31), time(10, 1), time(11, 1), time(15, 1), time(20, 1))


def _answered(s, mrn, *red_flags):  # noqa: ANN001, ANN202
    return lambda: s.engine.ingest(s.events(mrn)("survey.completed", {
        "survey": "orthopaedic-followup", "nps": None, "nps_category": None, "satisfaction": 3.0,
        "red_flags": list(red_flags)}))


def test_week_one_guidance_follow_ups_and_red_flags(database_url, settings, clock):
    with story(database_url, settings, clock, "orthopaedic-rehabilitation") as s:
        s.patient(KNEE, name="马丽", phone="13500000001", birth_date=date(1962, 3, 3))
        s.patient(HIP, name="高建", phone="13500000002", birth_date=date(1955, 7, 7),
                            conditions=["Z96.6"])
        s.patient(CARDIO, name="林涛", phone="13500000003", birth_date=date(1970, 1, 1))
        s.grant_marketing(KNEE)
        s.engine.ingest(s.events(KNEE)("encounter.discharged", {"encounter_id": "IP-1", "department": "骨科"}))
        s.engine.ingest(s.events(HIP)("encounter.discharged", {"encounter_id": "IP-2", "department": "关节外科"}))
        s.engine.ingest(s.events(CARDIO)("encounter.discharged", {"encounter_id": "IP-3", "department": "心内科"}))

        script = {
            (3, time(14, 0)): _answered(s, KNEE, "wound"),  # day 3: her wound is red and weeping
            (7, time(16, 0)): _answered(s, HIP, "calf", "fever"),  # day 7: his calf is swollen, a fever
            (7, time(17, 0)): _answered(s, KNEE),  # day 7: all fine
            (9, time(9, 0)): lambda: s.engine.ingest(s.events(KNEE)("encounter.admitted", {"encounter_id": "IP-4"})),
        }
        s.run_days(0, 31, script, ticks=TICKS)

        # a cardiology discharge without orthopaedic codes is not enrolled
        assert s.sent(CARDIO) == {} and s.tasks(CARDIO) == []
        # week 1: exercise guidance every morning, days 1-7, to both
        for mrn in (KNEE, HIP):
            assert s.steps_sent(mrn, "exercise-guidance") == [1, 2, 3, 4, 5, 6, 7]
            assert s.steps_sent(mrn, "followup-day3") == [3] and s.steps_sent(mrn, "followup-day7") == [7]
        # the community invitation is marketing: only with consent
        assert s.steps_sent(KNEE, "rehab-community") == [2] and s.steps_sent(HIP, "rehab-community") == []
        # day 30: he gets his last follow-up; her readmission on day 9 ended her journey
        assert s.steps_sent(HIP, "followup-day30") == [30] and s.steps_sent(KNEE, "followup-day30") == []

        knee = sorted((s.day_of(t.created_at), t.kind, t.team, t.priority, t.sla_due_at - t.created_at)
                      for t in s.tasks(KNEE))
        hip = sorted((s.day_of(t.created_at), t.kind, t.team, t.priority, t.sla_due_at - t.created_at)
                     for t in s.tasks(HIP))
        # her wound warning sign: an urgent task for orthopaedics within 2 h, and a message saying a nurse calls
        assert (3, "wound_review", "orthopaedics", "urgent", timedelta(hours=2)) in knee
        assert not [t for t in knee if t[1] in ("clinical_review", "call_patient")]  # she answered on day 3
        assert ("red-flag-message", None) in s.sent(KNEE)[3]
        # he did not answer on day 3: a nurse call on day 4; his calf and fever on day 7: urgent nursing, 1 h
        assert (4, "call_patient", "nursing", "normal", timedelta(days=1)) in hip
        assert (7, "clinical_review", "nursing", "urgent", timedelta(hours=1)) in hip
        assert not [t for t in hip if t[1] == "wound_review"]
        assert ("red-flag-message", None) in s.sent(HIP)[7]
        assert s.steps_sent(KNEE, "red-flag-message") == [3]  # her fine day-7 answer raised nothing
        texts = s.texts()
        assert any("护士会尽快联系您" in t and "120" in t for t in texts)
        assert len(s.engine.sms.keys) == len(set(s.engine.sms.keys))
