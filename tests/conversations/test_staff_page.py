"""The staff page (real uvicorn): the complaints team's cases with acknowledge and resolve, and the masked
conversation beside a task a patient's message opened."""

from __future__ import annotations

import requests

from carepath.definition.events import PatientIn
from carepath.runtime import complaints, managers

from tests.conversations.conftest import said
from tests.live_app import LiveApp, plugin_app


def _login(base: str, name: str, token: str) -> requests.Session:
    session = requests.Session()
    assert session.post(f"{base}/staff/login", data={"name": name, "token": token}, timeout=10).status_code == 200
    return session


def test_the_complaints_team_acknowledges_and_resolves_cases_on_the_staff_page(talk_engine, clock):
    engine = talk_engine()
    engine.upsert_patient(PatientIn(mrn="M1", name="李四", phone="13912345678"))
    engine.ingest(said(clock, "我要投诉，打电话13912345678一直没人接"))
    [case] = complaints.list_cases(engine)
    with LiveApp(plugin_app(engine)) as live:
        officer = _login(live.url, "zhao-min", "token-zhao-min-000001")
        page = officer.get(f"{live.url}/staff", timeout=10).text
        assert f'id="complaint-{case.id}"' in page and "139****5678" in page and "13912345678" not in page
        assert officer.post(f"{live.url}/staff/complaints/{case.id}/acknowledge", timeout=10).status_code == 200
        assert complaints.show_case(engine, case.id).status == "acknowledged"
        manager = _login(live.url, "wang-li", "token-wang-li-0000001")
        assert 'id="complaints"' not in manager.get(f"{live.url}/staff", timeout=10).text
        refused = manager.post(f"{live.url}/staff/complaints/{case.id}/resolve", data={"resolution": "x"}, timeout=10)
        assert refused.status_code == 403
        officer.post(f"{live.url}/staff/complaints/{case.id}/resolve", data={"resolution": "已电话致歉"}, timeout=10)
    assert complaints.show_case(engine, case.id).status == "resolved"


def test_a_health_manager_sees_the_conversation_beside_the_task(talk_engine, clock):
    engine = talk_engine()
    patient_id = engine.upsert_patient(PatientIn(mrn="M1", name="李四", phone="13912345678"))
    managers.assign(engine, patient_id, "wang-li")
    engine.ingest(said(clock, "怎么挂号", n=1))
    engine.ingest(said(clock, "我妈妈的降压药吃完了，电话13912345678", n=2))
    with LiveApp(plugin_app(engine)) as live:
        page = _login(live.url, "wang-li", "token-wang-li-0000001").get(f"{live.url}/staff/tasks/1", timeout=10).text
    assert 'id="conversation"' in page
    assert "患者：怎么挂号" in page and "回复：李四您好，挂号请点" in page
    assert "我妈妈的降压药吃完了，电话139****5678" in page and "13912345678" not in page.split('id="conversation"')[1]
