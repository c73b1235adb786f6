"""Stock journey health-check (体检): the guide the evening before, report notices, an abnormal report to a person."""

from __future__ import annotations

from datetime import date

from tests.engine import helpers as h
from tests.stock.story import story

PHONE = "13100000011"


def test_guide_reports_and_an_abnormal_result_to_a_booking_reminder_and_a_task(database_url, settings, clock):
    with story(database_url, settings, clock, "health-check") as s:  # day 0: Friday 1 May 2026, 09:00
        s.patient("H1", name="陈静", phone=PHONE, birth_date=date(1980, 6, 1))
        s.event("H1", "appointment.booked", {"appointment_id": "A1", "start": s.when(3, 8).isoformat(),
                                             "department": "体检中心", "location": "门诊楼5楼"})
        s.event("H1", "appointment.booked", {"appointment_id": "A2", "start": s.when(4, 9).isoformat(),
                                             "department": "口腔科"})  # not a health check: not enrolled
        s.run_until(s.when(3, 8))
        s.event("H1", "visit.checked_in", {"appointment_id": "A1"})
        s.run_until(s.when(5, 10))
        s.event("H1", "report.ready", {"appointment_id": "A1", "report_id": "R1", "report": "血常规",
                                       "abnormal": False})
        s.run_until(s.when(6, 10))
        abnormal = {"appointment_id": "A1", "report_id": "R2", "report": "腹部超声", "abnormal": True}
        s.event("H1", "report.ready", abnormal)
        s.run_until(s.when(6, 11))
        s.event("H1", "report.ready", abnormal)  # the lab system sends it again: nothing twice
        s.run_until(s.when(14, 12))

        assert [e.key for e in h.enrollments(s.engine)] == ["A1"]
        assert s.days() == {
            2: [("preparation_guide", PHONE)],
            5: [("report_ready", PHONE)],
            6: [("abnormal_followup", PHONE), ("report_ready", PHONE)],
            13: [("abnormal_second_reminder", PHONE)],
        }
        sent = {x.template: x for x in s.messages()}
        assert sent["preparation_guide"].at == "18:00"
        assert "20:00后请不要进食" in sent["preparation_guide"].body and "门诊楼5楼" in sent["preparation_guide"].body
        assert "腹部超声" in sent["abnormal_followup"].body
        # one task per abnormal report, for the health-check team, high priority, two days to act
        [task] = s.task_log()
        assert (task["day"], task["kind"], task["team"], task["priority"], task["sla_hours"]) == (
            6, "abnormal_result_followup", "health_check", "high", 48.0)


def test_a_reply_to_the_abnormal_notice_spares_the_second_reminder(database_url, settings, clock):
    with story(database_url, settings, clock, "health-check") as s:
        s.patient("H2", name="周明", phone=PHONE, birth_date=date(1975, 2, 1))
        s.event("H2", "appointment.booked", {"appointment_id": "B1", "start": s.when(1, 8).isoformat(),
                                             "department": "健康体检科"})
        s.run_until(s.when(2, 10))
        s.event("H2", "report.ready", {"appointment_id": "B1", "report_id": "R9", "abnormal": True})
        s.run_until(s.when(3, 9))
        s.event("H2", "message.replied", {"text": "好的，请帮我预约", "channel": "sms"})
        s.run_until(s.when(10, 12))
        templates = [x.template for x in s.messages()]
        assert templates == ["preparation_guide", "abnormal_followup", "report_ready"]
        assert "您的体检报告" in next(x.body for x in s.messages() if x.template == "report_ready")  # no name: the default
        assert [t["kind"] for t in s.task_log() if t["team"] == "health_check"] == ["abnormal_result_followup"]
