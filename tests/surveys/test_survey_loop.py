"""The feedback loop over real HTTP: link, page, answers, scores, a complaint task, its SLA and escalation."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import requests

from carepath.definition.dsl import after, enroll_on, journey, step, survey, template
from carepath.runtime.fallback import unconfirmed_fallback
from carepath.runtime.survey_links import read_token, survey_token
from carepath.runtime.task_survey import survey_behind_task
from carepath.runtime.work_queue import check_slas, claim, close
from carepath.runtime.working_hours import add_working_time
from carepath.store.personal_data import reveal_payload
from carepath.store.schema import Event, StaffTask, SurveyResponse
from carepath.teams import TeamConfig
from tests.engine import helpers as h
from tests.surveys.conftest import SH, config


def answer(live, token: str, **fields: str) -> requests.Response:
    return requests.post(f"{live.url}/s/{token}", data=fields, timeout=10)


def tasks(engine) -> list:
    return h._rows(engine, StaffTask)


def test_a_detractor_gets_a_complaint_case_answered_within_24h(visit, live):
    token = visit.invite()
    assert read_token(visit.engine.cipher, token) is not None and "MRN" not in token
    page = requests.get(f"{live.url}/s/{token}", timeout=10)
    assert page.status_code == 200 and "您有多大可能向亲友推荐本院" in page.text
    done = answer(live, token, nps="3", satisfaction="2", wait="too-long", comment="等了两个小时")
    assert done.status_code == 200 and "感谢您的反馈" in done.text
    event = next(e for e in h._rows(visit.engine, Event) if e.type == "survey.completed")
    assert event.payload["nps"] == 3 and event.payload["nps_category"] == "detractor"
    assert event.payload["satisfaction"] == 2
    response = h._rows(visit.engine, SurveyResponse)[0]
    assert response.response["resourceType"] == "QuestionnaireResponse"
    assert {i["linkId"] for i in response.response["item"]} == {"nps", "satisfaction", "wait", "comment"}
    assert "等了两个小时" not in json.dumps(response.response, ensure_ascii=False)  # answers encrypted at rest
    revealed = reveal_payload(response.response, visit.engine.cipher)
    assert next(i for i in revealed["item"] if i["linkId"] == "comment")["answer"] == [{"valueString": "等了两个小时"}]
    visit.engine.dispatch_due()
    complaint = next(t for t in tasks(visit.engine) if t.kind == "complaint_case")  # the survey step's case
    assert complaint.team == "patient_service" and complaint.priority == "high"
    assert complaint.first_response_due_at - complaint.created_at == timedelta(hours=24)
    assert complaint.assigned_role == "service_desk"
    said = survey_behind_task(visit.engine, complaint.id)  # what the one who calls back reads first
    assert (said.survey, said.nps, said.satisfaction) == ("outpatient-satisfaction", 3, 2)
    assert ("您有多大可能向亲友推荐本院？", "3") in said.answers or any(a == "3" for _, a in said.answers)
    assert any(a == "等了两个小时" for _, a in said.answers)
    others = [t.id for t in tasks(visit.engine) if t.kind != "complaint_case"]
    assert all(survey_behind_task(visit.engine, task_id) is None for task_id in others)


def test_reused_forged_and_expired_links_store_nothing(visit, live):
    token = visit.invite()
    assert answer(live, token, nps="9", satisfaction="5").status_code == 200
    again = answer(live, token, nps="0", satisfaction="1")
    assert again.status_code == 409 and "您已提交过" in again.text
    tp = int(token.split(".")[0])
    forged = requests.get(f"{live.url}/s/{tp}.{'0' * 24}", timeout=10)
    assert forged.status_code == 404 and "链接无效" in forged.text
    assert answer(live, f"{tp + 1}.abc", nps="1", satisfaction="1").status_code == 404
    assert len(h._rows(visit.engine, SurveyResponse)) == 1
    assert [e.payload["nps"] for e in h._rows(visit.engine, Event) if e.type == "survey.completed"] == [9]


def test_an_expired_link_says_so(visit, live):
    token = visit.invite()
    visit.clock.advance(timedelta(days=15))
    expired = answer(live, token, nps="5", satisfaction="3")
    assert expired.status_code == 410 and "链接已过期" in expired.text
    assert h._rows(visit.engine, SurveyResponse) == []


def test_missing_answers_are_shown_and_nothing_is_stored(visit, live):
    token = visit.invite()
    page = answer(live, token, nps="11")
    assert page.status_code == 422 and "请选择 0–10" in page.text and "请回答此题" in page.text
    assert h._rows(visit.engine, SurveyResponse) == []


def test_unanswered_past_the_sla_escalates_and_emits_an_event(visit, live):
    token = visit.invite()
    answer(live, token, nps="2", satisfaction="1")
    visit.engine.dispatch_due()
    complaint = next(t for t in tasks(visit.engine) if t.kind == "complaint_case")  # the detractor's case
    visit.clock.advance(timedelta(hours=23))
    assert check_slas(visit.engine) == []
    visit.clock.advance(timedelta(hours=1, minutes=5))  # first response (24 h) missed
    first = check_slas(visit.engine)
    assert [(b.task_id, b.deadline, b.role) for b in first] == [(complaint.id, "first_response", "service_manager")]
    breach = [e for e in h._rows(visit.engine, Event) if e.type == "task.sla_breached"]
    assert breach and breach[0].payload["task_id"] == complaint.id
    claim(visit.engine, complaint.id, "zhao-min")
    visit.clock.set(complaint.sla_due_at + timedelta(minutes=5))  # past the resolution deadline (7 working days)
    second = [b for b in check_slas(visit.engine) if b.task_id == complaint.id]
    assert [(b.deadline, b.level) for b in second] == [("resolution", 2)]
    close(visit.engine, complaint.id, "zhao-min", "回电致歉，已安排复诊")
    visit.clock.advance(timedelta(days=2))
    assert [b for b in check_slas(visit.engine) if b.task_id == complaint.id] == []
    assert next(t for t in tasks(visit.engine) if t.id == complaint.id).status == "done"


def test_working_hours_stretch_a_deadline_over_the_night_and_weekend():
    team = TeamConfig(working_hours="08:00-17:30", workdays=[1, 2, 3, 4, 5])
    friday_4pm = datetime(2026, 5, 15, 16, 0, tzinfo=SH)  # (not the Friday before 9 May, a worked Saturday)
    due = add_working_time(friday_4pm, timedelta(hours=4), team)
    assert due.astimezone(SH) == datetime(2026, 5, 18, 10, 30, tzinfo=SH)  # 1.5 h Friday, 2.5 h Monday
    assert add_working_time(friday_4pm, timedelta(hours=4), TeamConfig()) == friday_4pm + timedelta(hours=4)


def test_the_same_token_on_every_retry_and_none_for_another_key(visit):
    cipher = visit.engine.cipher
    assert survey_token(cipher, 41) == survey_token(cipher, 41)
    assert read_token(cipher, survey_token(cipher, 41)) == 41
    assert read_token(cipher, "41.") is None and read_token(cipher, "x.y") is None


def test_working_hours_that_are_not_times_are_refused_when_the_config_loads():
    import pytest
    from pydantic import ValidationError

    for bad in ("08:75-17:30", "17:30-08:00", "8-17"):
        with pytest.raises(ValidationError, match="08:00-17:30"):
            TeamConfig(working_hours=bad)


def test_an_unconfirmed_survey_invitation_ends_with_a_call_task_that_quotes_the_link(database_url, settings, clock):
    invite = template("invite", "请评价本次就诊：{{ survey.link }}")
    j = journey("follow", enroll=enroll_on("program.joined"), templates=[invite], steps=[
        step("ask", "post_visit", after("enrolled", "0s"), survey("outpatient-satisfaction", ["wechat"],
                                                                  template="invite"), confirm_within="2h")])
    wechat = h.RecordingChannel("wechat", address_kind="none")
    with h.running_engine(database_url, settings, clock, [j], {"wechat": wechat}, config=config(),
                          connectors={}) as engine:
        engine.enroll_many("follow", [(1, {})])
        assert engine.dispatch_due().sent == 1
        [sent] = wechat.messages
        clock.advance(timedelta(hours=3))
        assert unconfirmed_fallback(engine) == 1
        [task] = tasks(engine)
    # the nurse reads the message the patient was sent, link included, not a rendering error
    assert task.kind == "call_patient" and f"Message: {sent.body}" in task.detail
    assert "http://survey.example/s/" in task.detail
