"""Issue 24.1: the stock hypertension programme at its three levels, driven by a patient at risk, a patient
with hypertension and one after a heart attack through their first nine days (from Friday 1 May 2026)."""

from __future__ import annotations

from datetime import date, time, timedelta

from tests.stock.story import story

RISK, HTN, POST_MI, OTHER = "H-RISK", "H-HTN", "H-MI", "H-OTHER"


def _enrol(s) -> None:  # noqa: ANN001
    s.patient(RISK, name="张伟", phone="13700000001", birth_date=date(1975, 4, 2), tags=["cv-risk"])
    s.patient(HTN, name="刘芳", phone="13700000002", birth_date=date(1960, 8, 9), conditions=["I10"])
    s.patient(POST_MI, name="周建国", phone="13700000003", birth_date=date(1958, 1, 5),
              conditions=["I10", "I21.9"])
    s.patient(OTHER, name="吴敏", phone="13700000004", birth_date=date(1990, 1, 1), conditions=["J45"])
    s.grant_marketing(RISK, POST_MI)
    for mrn in (RISK, HTN, POST_MI, OTHER):
        s.engine.ingest(s.events(mrn)("visit.checked_in", {"department": "心内科"}))


def test_three_levels_and_blood_pressure_alerts(database_url, settings, clock):
    with story(database_url, settings, clock, "hypertension-programme") as s:
        _enrol(s)  # day 0: Friday 1 May 2026, 09:00 Shanghai

        def cuff(mrn, systolic, diastolic):  # noqa: ANN001, ANN202
            def measure() -> None:  # both numbers of one measurement carry the same time
                ev, now = s.events(mrn), s.clock.now()
                for kind, value in (("systolic_bp", systolic), ("diastolic_bp", diastolic)):
                    s.engine.ingest(ev("vitals.reading", {"kind": kind, "value": value, "unit": "mmHg"},
                                       occurred_at=now))
            return measure

        def reply(mrn, text):  # noqa: ANN001, ANN202
            return lambda: s.engine.ingest(s.events(mrn)("message.replied", {"text": text, "channel": "sms"}))

        script = {
            (2, time(19, 0)): cuff(HTN, 145, 92),
            (3, time(8, 0)): reply(HTN, "128/82"),  # Monday's check-in: fine
            (4, time(19, 0)): cuff(HTN, 150, 85),
            (5, time(19, 0)): cuff(HTN, 130, 80),  # below both limits: does not count
            (6, time(19, 0)): cuff(HTN, 142, 80),  # the third high one within 7 days
            (6, time(8, 0)): reply(POST_MI, "186/100"),  # Thursday's check-in, very high
            (7, time(23, 0)): cuff(POST_MI, 182, 96),  # very high at night, from his meter
        }
        s.run_days(0, 8, script)

        # not enrolled without a cardiovascular diagnosis or the cv-risk tag
        assert s.sent(OTHER) == {} and s.tasks(OTHER) == []

        # primary: weekly lifestyle lessons (Saturday evenings), the recipe on the first Saturday of May
        assert s.steps_sent(RISK, "lifestyle-education") == [1, 8]
        assert s.steps_sent(RISK, "low-salt-recipe") == [1]
        assert s.steps_sent(RISK, "home-bp") == [] and s.tasks(RISK) == []
        # the recipe is marketing: the patient without marketing consent does not get it
        assert s.steps_sent(HTN, "low-salt-recipe") == []
        assert s.steps_sent(POST_MI, "low-salt-recipe") == [1]

        # secondary: home check-ins on Monday 4 and Thursday 7 May; no lessons, no rehabilitation
        assert s.steps_sent(HTN, "home-bp") == [3, 6]
        assert s.steps_sent(HTN, "lifestyle-education") == s.steps_sent(HTN, "rehab-guidance") == []
        # three high readings within 7 days: one task for nursing, SLA 4 h, on the day of the third
        [high] = s.tasks(HTN)
        assert (s.day_of(high.created_at), high.kind, high.team, high.priority) == (
            6, "review_blood_pressure", "nursing", "high")
        assert high.sla_due_at - high.created_at == timedelta(hours=4)

        # tertiary: home check-ins, weekly rehabilitation guidance, the rehabilitation review on day 7
        assert s.steps_sent(POST_MI, "home-bp") == [3, 6]
        assert s.steps_sent(POST_MI, "rehab-guidance") == [1, 8]
        tasks = sorted((s.day_of(t.created_at), t.kind, t.team, t.priority) for t in s.tasks(POST_MI))
        assert tasks == [(6, "clinical_review", "nursing", "urgent"),  # the 186/100 check-in
                         (7, "clinical_review", "nursing", "urgent"),  # the 182/96 reading at 23:00
                         (7, "rehab_review", "rehabilitation", "normal")]
        # the night reading's message went out at once, quiet hours or not
        assert ("bp-very-high-message", None) in s.sent(POST_MI)[7]
        texts = s.texts()
        assert any("请坐下休息15分钟后再测一次" in t and "120" in t for t in texts)
        assert not any(w in t for t in texts for w in ("毫克", "mg", "加量", "减量", "诊断"))
        assert len(s.engine.sms.keys) == len(set(s.engine.sms.keys))
