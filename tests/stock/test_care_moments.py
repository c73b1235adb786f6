"""Issue 24.1: the stock care-moments journey: greetings by the calendar (Mid-Autumn, birthdays, the Double
Ninth for patients 60 and over) with marketing consent, and reactivation after 30 silent days, over 40 days
from Sunday 20 September 2026."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from tests.portrait.helpers import view
from tests.stock.story import story

ELDER, YOUNG, QUIET, OTHER = "C-ELDER", "C-YOUNG", "C-QUIET", "C-OTHER"
TICKS = (time(8, 1), time(10, 1), time(12, 1), time(20, 1))


def test_greetings_by_the_calendar_and_reactivation_after_30_silent_days(database_url, settings, clock):
    clock.set(datetime(2026, 9, 20, 1, 0, tzinfo=timezone.utc))  # 09:00 Shanghai; 中秋 is 25 Sep, 重阳 18 Oct
    with story(database_url, settings, clock, "care-moments") as s:
        s.patient(ELDER, name="孙桂兰", phone="13600000001", birth_date=date(1948, 10, 5))
        s.patient(YOUNG, name="郑浩", phone="13600000002", birth_date=date(1990, 9, 28))
        s.patient(QUIET, name="何平", phone="13600000003", birth_date=date(1950, 10, 1))
        s.patient(OTHER, name="冯雪", phone="13600000004", birth_date=date(1985, 10, 2))
        s.grant_marketing(ELDER, YOUNG)
        for mrn in (ELDER, YOUNG, QUIET):  # OTHER never visits: not enrolled
            s.engine.ingest(s.events(mrn)("visit.checked_in", {"department": "全科"}))

        def reply(mrn):  # noqa: ANN001, ANN202
            return lambda: s.engine.ingest(s.events(mrn)("message.replied", {"text": "谢谢，挺好的", "channel": "sms"}))

        script = {(d, time(19, 0)): reply(ELDER) for d in (12, 25)}  # she answers now and then
        script[(31, time(9, 0))] = reply(QUIET)  # he answers the check-in message the next morning
        s.run_days(0, 40, script, ticks=TICKS)
        tags = {mrn: view(s.engine, s.patient_id(mrn)).tags for mrn in (ELDER, YOUNG, QUIET)}

    assert s.sent(OTHER) == {} and s.tasks(OTHER) == []
    # greetings: Mid-Autumn (25 Sep, day 5) and the birthday to those with marketing consent; the Double
    # Ninth (18 Oct, day 28) only to the patient of 60 and over; nothing marketing without consent
    assert s.steps_sent(ELDER, "mid-autumn") == s.steps_sent(YOUNG, "mid-autumn") == [5]
    assert s.steps_sent(ELDER, "birthday") == [15] and s.steps_sent(YOUNG, "birthday") == [8]
    assert s.steps_sent(ELDER, "double-ninth") == [28] and s.steps_sent(YOUNG, "double-ninth") == []
    quiet_steps = {st for items in s.sent(QUIET).values() for st, _ in items}
    assert quiet_steps == {"reactivation"}  # a care message: no marketing consent needed

    # reactivation: 30 days after the visit (day 30) for the two silent ones, once; the elder replied
    assert s.steps_sent(YOUNG, "reactivation") == s.steps_sent(QUIET, "reactivation") == [30]
    assert s.steps_sent(ELDER, "reactivation") == []
    # no reply within 3 days: patient services call him (SLA 2 days); the one who answered gets no call
    [call] = s.tasks(YOUNG)
    assert (s.day_of(call.created_at), call.kind, call.team) == (33, "call_patient", "patient_service")
    assert call.sla_due_at - call.created_at == timedelta(days=2)
    # (their replies are conversation turns for a person to read, not calls)
    assert {t.kind for t in s.tasks(QUIET) + s.tasks(ELDER)} == {"patient_message"}
    # low activity: the silent patients are tagged for reactivation; the one who answered is untagged again
    assert "reactivation" in tags[YOUNG] and "reactivation" not in tags[QUIET] and "reactivation" not in tags[ELDER]
    texts = s.texts()
    assert any(t.startswith("孙先生/女士，重阳节快乐") for t in texts)
    assert all("TD" in t for t in texts if "快乐" in t)
