"""Issue 24.1: the stock diabetes programme, driven by an elderly patient, a young working adult and a mother
with gestational diabetes through their first nine days (Friday 1 May 2026, the Labour Day holiday, onwards)."""

from __future__ import annotations

from datetime import date, time

from carepath.runtime import workdays
from tests.stock.story import DAY, story

ELDER, YOUNG, MOTHER, OTHER = "D-ELDER", "D-YOUNG", "D-MOTHER", "D-OTHER"


def _enrol(s) -> None:  # noqa: ANN001
    s.patient(ELDER, name="王秀英", phone="13800000001", birth_date=date(1950, 3, 2), sex="F",
              conditions=["E11.9"])
    s.patient(YOUNG, name="李明", phone="13800000002", birth_date=date(1995, 6, 1), sex="M",
              conditions=["E11"])
    s.patient(MOTHER, name="陈静", phone="13800000003", birth_date=date(1994, 2, 1), sex="F",
              conditions=["O24.4"])
    s.patient(OTHER, name="赵强", phone="13800000004", birth_date=date(1980, 1, 1),
              conditions=["I10"])
    s.engine.ingest(s.events(ELDER)("patient.related_person_added", {
        "ref": "nk1-1", "relationship": "daughter", "contact": {"name": "王丽", "phone": "13900000001"}}))
    s.grant_marketing(ELDER, MOTHER)
    for mrn in (ELDER, YOUNG, MOTHER, OTHER):
        s.engine.ingest(s.events(mrn)("visit.checked_in", {"department": "内分泌科"}))


def test_three_segments_reminders_and_out_of_range_glucose(database_url, settings, clock):
    with story(database_url, settings, clock, "diabetes-programme") as s:
        _enrol(s)  # day 0: Friday 1 May 2026, 09:00 Shanghai
        young, elder = s.events(YOUNG), s.events(ELDER)

        def reply(text):  # noqa: ANN001, ANN202
            return lambda: s.engine.ingest(young("message.replied", {"text": text, "channel": "sms"}))

        def reading(ev, value):  # noqa: ANN001, ANN202
            return lambda: s.engine.ingest(ev("vitals.reading", {"kind": "glucose", "value": value, "unit": "mmol/L"}))

        script = {(d, time(8, 30)): reply("6.2") for d in range(1, 9) if d not in (2, 6)}
        script[(6, time(8, 30))] = reply("15.2")  # a check-in out of range
        script[(4, time(22, 0))] = reading(elder, 3.2)  # a low at night, from the elder's meter
        script[(5, time(12, 0))] = reading(young, 17.5)
        script[(7, time(12, 0))] = reading(young, 18.1)  # the second high within 3 days
        s.run_days(0, 8, script)
        days = list(range(1, 9))  # day 0's reminders were due before the visit: skipped, not sent late

        # everyone enrolled with diabetes gets the daily medication reminder; the other patient nothing
        assert s.sent(OTHER) == {} and s.tasks(OTHER) == []
        for mrn in (ELDER, YOUNG, MOTHER):
            assert s.steps_sent(mrn, "medication") == days
            # the first Monday of May (day 3) brings the monthly re-check; the HbA1c is three months away
            assert s.steps_sent(mrn, "monthly-recheck") == [3]
            assert s.steps_sent(mrn, "hba1c") == []

        # elderly: simple wording, the reminder to her daughter too (only hers: the others' family is not
        # asked), the family group on the day of the visit, a nurse call on day 7
        elder_days = s.sent(ELDER)
        for d in days:
            assert sorted(r or "" for st, r in elder_days[d] if st == "medication")[1].startswith("rp:")
        assert s.steps_sent(ELDER, "family-group") == [0]
        texts = s.texts()
        assert "王丽" not in " ".join(texts)
        assert sum(t.startswith("您好：请提醒家里的王先生/女士按医生说的吃药了") for t in texts) == len(days)
        assert sum(t.startswith("王先生/女士，该吃药了，按医生说的吃") for t in texts) == len(days)
        assert sum(t.startswith("李先生/女士，到了您设定的服药时间") for t in texts) == len(days)
        calls = [t for t in s.tasks(ELDER) if t.kind == "call_patient"]
        assert [s.day_of(t.created_at) for t in calls] == [7] and calls[0].team == "nursing"
        # her low reading at 22:00 went out at once, quiet hours or not, and opened an urgent task (SLA 1 h)
        assert ("glucose-low-message", None) in elder_days[4]
        [low] = [t for t in s.tasks(ELDER) if t.kind == "clinical_review"]
        assert low.priority == "urgent" and low.team == "nursing" and s.day_of(low.created_at) == 4
        assert (low.sla_due_at - low.created_at).total_seconds() == 3600

        # young adult: the check-in camp every morning, the 15:00 activity nudge on working days only (none in
        # the 1-5 May holiday); a check-in and two meter readings out of range each reach nursing
        assert s.steps_sent(YOUNG, "glucose-camp") == days
        workdays_in_story = [d for d in days if workdays.is_workday(s.start + d * DAY)]
        assert 3 not in workdays_in_story and 5 in workdays_in_story and 8 in workdays_in_story  # 9 May: 调休
        # day 8 (the adjusted working Saturday) too: the gestational Saturday class, whose condition is false for
        # him, takes none of his three messages that day
        assert s.steps_sent(YOUNG, "activity-nudge") == workdays_in_story
        assert s.steps_sent(ELDER, "activity-nudge") == s.steps_sent(MOTHER, "activity-nudge") == []
        assert s.steps_sent(ELDER, "glucose-camp") == s.steps_sent(MOTHER, "glucose-camp") == []
        young_tasks = sorted((s.day_of(t.created_at), t.kind, t.priority, t.team) for t in s.tasks(YOUNG))
        assert young_tasks == [(6, "clinical_review", "high", "nursing"), (7, "clinical_review", "high", "nursing")]

        # gestational: three teams follow up from day 1, the Saturday class, the mothers' community
        joint = sorted((s.day_of(t.created_at), t.team, t.kind) for t in s.tasks(MOTHER))
        assert joint == [(1, "endocrinology", "joint_followup"), (1, "nutrition", "joint_followup"),
                         (1, "obstetrics", "joint_followup")]
        assert s.steps_sent(MOTHER, "weekly-class") == [1, 8]  # Saturdays 2 and 9 May
        assert s.steps_sent(MOTHER, "mothers-community") == [0]
        assert s.steps_sent(YOUNG, "weekly-class") == s.steps_sent(ELDER, "mothers-community") == []

        # nothing sent twice; no message names a dose
        assert len(s.engine.sms.keys) == len(set(s.engine.sms.keys))
        assert not any(w in t for t in texts for w in ("毫克", "mg", "单位", "加量", "减量", "诊断"))
