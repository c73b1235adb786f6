"""Stock journey outpatient-visit: booking to survey, by day, with the detractor's complaint and the nurse's call."""

from __future__ import annotations

from datetime import date

from tests.stock.story_b import story

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
        s.run_until(s.when(10, 12))
        s.event("O1", "survey.completed", {"survey": "outpatient-satisfaction", "nps": 3,
                                           "nps_category": "detractor", "satisfaction": 2.0, "red_flags": [],
                                           "episode_key": "A1"})

        days = s.days()
        assert days[0] == [("booking_confirmation", PHONE)]
        assert days[1] == [("visit_guide", PHONE)]
        assert days[2] == [("visit_reminder", PHONE), ("queue_info", PHONE), ("queue_called", PHONE),
                           ("report_ready", PHONE)]
        assert days[5] == [("followup", PHONE)]
        assert days[9] == [("satisfaction_survey", PHONE)]  # day 7 after the visit, 19:00
        assert set(days) == {0, 1, 2, 5, 9}  # health tips: day 14 after the visit, after the story
        sent = {x.template: x for x in s.sent()}
        assert (sent["visit_guide"].at, sent["visit_reminder"].at, sent["followup"].at) == ("18:00", "08:00", "10:00")
        confirmation = sent["booking_confirmation"].body
        assert "门诊楼3楼" in confirmation and "王明" in confirmation and "既往病历" in confirmation
        assert "空腹8小时" in confirmation
        assert sent["queue_called"].body == "17号，轮到您就诊了，请到3诊室。"
        assert "咨询开单医生" in sent["report_ready"].body
        # the day-3 follow-up got no answer from a patient over 65: a nurse's call two days later; the detractor's
        # survey answer: a complaint task for patient service within 24 hours
        tasks = [(t["day"], t["kind"], t["team"], t["sla_hours"]) for t in s.tasks()]
        assert tasks == [(7, "call_patient", "nursing", 24.0), (10, "complaint", "patient_service", 24.0)]
