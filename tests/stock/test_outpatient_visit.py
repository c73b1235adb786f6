"""Stock journey outpatient-visit: booking to survey, by day, with the detractor's complaint case and the nurse's call."""

from __future__ import annotations

from datetime import date, timedelta

from carepath.runtime.complaints import list_cases
from tests.stock.story import story

PHONE = "13100000071"


def test_one_visit_from_booking_to_the_survey(database_url, settings, clock):
    with story(database_url, settings, clock, "outpatient-visit") as s:  # day 0: Friday 1 May 2026, 09:00
        s.patient("O1", name="韩立", phone=PHONE, birth_date=date(1955, 3, 3))
        s.event("O1", "appointment.booked", {"appointment_id": "A1", "start": s.when(2, 10).isoformat(),
                                             "department": "心内科", "doctor": "王明", "location": "门诊楼3楼",
                                             "fasting": True})
        s.run_until(s.when(2, 9, 50))
        s.event("O1", "visit.checked_in", {"appointment_id": "A1", "queue_no": "17"})
        s.run_until(s.when(2, 10, 5))
        s.event("O1", "queue.called", {"appointment_id": "A1", "queue_no": 17, "room": "3诊室"})
        s.run_until(s.when(2, 11))
        s.event("O1", "encounter.discharged", {"appointment_id": "A1"})
        s.run_until(s.when(2, 15))
        s.event("O1", "report.ready", {"appointment_id": "A1", "report_id": "R1", "report": "心电图"})
        s.run_until(s.when(3, 12))  # the survey went out at 11:00, 24 hours after the visit; answered at noon
        s.event("O1", "survey.completed", {"survey": "outpatient-satisfaction", "nps": 3,
                                           "nps_category": "detractor", "satisfaction": 2.0, "red_flags": [],
                                           "journey": "outpatient-visit", "step": "survey-day1",
                                           "episode_key": "A1"})
        s.run_until(s.when(10, 12))

        days = s.days()
        assert days[0] == [("booking_confirmation", PHONE)]
        assert days[1] == [("visit_guide", PHONE)]
        assert days[2] == [("visit_reminder", PHONE), ("queue_info", PHONE), ("queue_called", PHONE),
                           ("report_ready", PHONE)]
        assert days[3] == [("satisfaction_survey", PHONE)]  # 24 hours after the visit
        assert days[5] == [("followup", PHONE)]
        assert set(days) == {0, 1, 2, 3, 5}  # health tips: day 14 after the visit, after the story
        sent = {x.template: x for x in s.messages()}
        assert (sent["visit_guide"].at, sent["visit_reminder"].at, sent["satisfaction_survey"].at,
                sent["followup"].at) == ("18:00", "08:00", "11:00", "10:00")
        confirmation = sent["booking_confirmation"].body
        assert "门诊楼3楼" in confirmation and "王明" in confirmation and "既往病历" in confirmation
        assert "空腹8小时" in confirmation
        assert sent["queue_called"].body == "17号，轮到您就诊了，请到3诊室。"
        assert "咨询开单医生" in sent["report_ready"].body
        # the detractor's answer on day 3: a complaint case for patient service, answered within 24 hours and
        # resolved within 7 working days; the day-3 follow-up got no answer from a patient over 65: a nurse's
        # call two days later
        tasks = [(t["day"], t["kind"], t["team"], t["priority"]) for t in s.task_log()]
        assert tasks == [(3, "complaint_case", "patient_service", "high"), (7, "call_patient", "nursing", "normal")]
        [case] = list_cases(s.engine)
        assert (case.source, case.status, case.summary) == ("survey", "open", "survey outpatient-satisfaction: NPS 3/10")
        opened = s.local(case.opened_at)
        assert (opened.date() - s.start).days == 3
        assert case.first_response_due_at - case.opened_at == timedelta(hours=24)
        # 7 working days after Monday 4 May: the Labour Day holiday runs to 5 May, Saturday 9 May is a working day
        assert s.local(case.resolution_due_at).date() == date(2026, 5, 13)
        assert s.task_log()[0]["sla_hours"] == (case.resolution_due_at - case.opened_at).total_seconds() / 3600


def test_a_red_flag_answer_reaches_a_nurse_and_a_passive_opens_no_case(database_url, settings, clock):
    with story(database_url, settings, clock, "outpatient-visit") as s:
        s.patient("O2", name="韩梅", phone="13100000072", birth_date=date(1980, 3, 3))
        s.event("O2", "appointment.booked", {"appointment_id": "A2", "start": s.when(1, 10).isoformat()})
        s.run_until(s.when(1, 11))
        s.event("O2", "encounter.discharged", {"appointment_id": "A2"})
        s.run_until(s.when(2, 12))
        s.event("O2", "survey.completed", {"survey": "outpatient-satisfaction", "nps": 7, "nps_category": "passive",
                                           "satisfaction": 3.0, "red_flags": ["chest_pain"],
                                           "journey": "outpatient-visit", "step": "survey-day1",
                                           "episode_key": "A2"})
        assert s.days()[2] == [("satisfaction_survey", "13100000072")]
        tasks = [(t["day"], t["kind"], t["team"], t["priority"], t["sla_hours"]) for t in s.task_log()]
        assert tasks == [(2, "clinical_review", "nursing", "urgent", 2.0)]
        assert list_cases(s.engine) == []
