"""The web hooks app over real HTTP on loopback: POST /events, /healthz, /metrics, plugin routes."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select

from carepath.connectors.outbox import OutboxChannel
from carepath.definition.dsl import anchor, before, enroll_on, journey, on, send, step, template
from carepath.engine import Engine
from carepath.definition.events import PatientIn
from carepath.prefect_server import free_port
from carepath.serve import WebServer
from carepath.store.schema import Event, OutboxMessage
from carepath.web.app import create_app

TOKEN = "events-token-for-tests-0001"


def _journey():
    return journey(
        "web-check", enroll=enroll_on("appointment.booked"),
        anchors={"appointment": anchor(["appointment.booked"], field="start")},
        templates=[template("hello", "您好 {{ patient.surname }}"), template("queue", "请到3号诊室")],
        steps=[step("guide", "pre_visit", before("appointment", "1d", at="10:00"), send("hello", ["outbox"])),
               step("queue", "in_visit", on("visit.checked_in"), send("queue", ["outbox"]), category="urgent")])


@pytest.fixture
def engine(database_url, settings, clock):
    engine = Engine(database_url, journeys=[_journey()], channels={"outbox": OutboxChannel("outbox")}, templates={},
                    clock=clock, settings=settings)
    engine.upsert_patient(PatientIn(mrn="W1", name="王五", phone="13900001111"))
    yield engine
    engine.close()


def _served(engine, **options):
    web = WebServer(create_app(engine, routers=options.pop("routers", []), **options), "127.0.0.1", 0)
    host, port = web.start()
    return web, f"http://{host}:{port}"


@pytest.fixture
def app_url(engine):
    web, url = _served(engine, events_token=TOKEN)
    yield url
    web.stop()


def _event(clock, source_id: str, type_: str = "appointment.booked", **payload) -> dict:
    payload = payload or {"start": (clock.now() + timedelta(days=3)).isoformat()}
    return {"type": type_, "source": "his", "source_id": source_id, "patient_mrn": "W1",
            "occurred_at": clock.now().isoformat(), "payload": payload}


def _post(url: str, body: str, token: str | None = TOKEN) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(f"{url}/events", data=body.encode(), headers=headers, timeout=30)


def _count(engine, model) -> int:
    with engine.db.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar()


def test_json_lines_each_event_has_its_outcome_and_a_refused_one_stops_nothing(engine, app_url, clock):
    lines = [json.dumps(_event(clock, "e1")), "{not json", json.dumps({**_event(clock, "e2"), "occurred_at": "2026-05-01T09:00:00"}),
             "", json.dumps(_event(clock, "e3", "visit.checked_in", room="3"))]
    answer = _post(app_url, "\n".join(lines))
    assert answer.status_code == 422  # something was refused: the answer says what, the rest was applied
    body = answer.json()
    assert (body["stored"], body["duplicate"], body["refused"]) == (2, 0, 2)
    results = {r["at"]: r for r in body["results"]}
    assert results["line 1"]["status"] == "stored" and "enrolled web-check" in results["line 1"]["detail"]
    assert results["line 2"]["status"] == "refused" and results["line 2"]["detail"].startswith("not JSON")
    assert results["line 3"]["detail"] == "occurred_at: Value error, must carry a time zone offset " \
                                          "(e.g. 2026-05-01T09:00:00+08:00)"
    assert results["line 5"]["status"] == "stored"
    assert _count(engine, Event) == 2


def test_the_same_batch_again_is_all_duplicates_and_changes_nothing(engine, app_url, clock):
    batch = json.dumps([_event(clock, "a1"), _event(clock, "a2", "visit.checked_in")])
    first = _post(app_url, batch)
    assert first.status_code == 200 and first.json()["stored"] == 2
    sent = _count(engine, OutboxMessage)
    again = _post(app_url, batch)
    assert again.status_code == 200
    assert [r["status"] for r in again.json()["results"]] == ["duplicate", "duplicate"]
    assert _count(engine, Event) == 2 and _count(engine, OutboxMessage) == sent


def test_an_urgent_step_is_sent_before_the_answer(engine, app_url, clock):
    _post(app_url, json.dumps(_event(clock, "b1")))
    answer = _post(app_url, json.dumps(_event(clock, "c1", "visit.checked_in", room="3")))  # a single JSON object
    assert answer.status_code == 200 and answer.json()["results"][0]["status"] == "stored"
    with engine.db.connect() as conn:
        bodies = conn.execute(select(OutboxMessage.body)).scalars().all()
    assert bodies == ["请到3号诊室"]  # the urgent queue notice; the guide is due later


def test_events_need_the_bearer_token(engine, app_url, clock):
    body = json.dumps(_event(clock, "t1"))
    assert _post(app_url, body, token=None).status_code == 401
    assert _post(app_url, body, token="wrong-token").status_code == 401
    assert _count(engine, Event) == 0


def test_without_a_token_configured_events_are_off_and_say_how_to_turn_them_on(engine, clock):
    web, url = _served(engine, events_token=None, events_token_env="HOSPITAL_EVENTS_TOKEN")
    try:
        answer = _post(url, json.dumps(_event(clock, "t2")))
    finally:
        web.stop()
    assert answer.status_code == 503 and "HOSPITAL_EVENTS_TOKEN" in answer.json()["detail"]
    assert _count(engine, Event) == 0


def test_healthz_checks_the_database_and_prefect(engine):
    web, url = _served(engine, prefect_api_url=f"http://127.0.0.1:{free_port()}/api")  # nothing listens there
    try:
        down = requests.get(f"{url}/healthz", timeout=10)
    finally:
        web.stop()
    assert down.status_code == 503
    assert down.json()["database"] == "ok" and "unreachable" in down.json()["prefect"]
    web, url = _served(engine, prefect_api_url=None)
    try:
        assert requests.get(f"{url}/healthz", timeout=10).json()["status"] == "ok"
    finally:
        web.stop()


def test_metrics_in_prometheus_text(engine, app_url, clock):
    _post(app_url, json.dumps([_event(clock, "m1"), _event(clock, "m2", "visit.checked_in")]))
    clock.advance(timedelta(days=3))  # the guide is now overdue
    text = requests.get(f"{app_url}/metrics", timeout=10).text
    assert 'carepath_touchpoints{journey="web-check",status="sent"} 1.0' in text
    assert 'carepath_touchpoints{journey="web-check",status="scheduled"} 1.0' in text
    assert 'carepath_sends{channel="outbox",outcome="sent"} 1.0' in text
    assert "carepath_due_backlog 1.0" in text
    lag = next(float(line.split()[1]) for line in text.splitlines() if line.startswith("carepath_dispatch_lag_seconds"))
    assert lag > 3600
    assert 'carepath_events_received_total{status="stored"} 2.0' in text


def test_plugin_callback_routes_are_mounted_and_verify_signatures(engine):
    pytest.importorskip("carepath_plugin_example", reason="example plugin not installed")
    from carepath_plugin_example import WebhookChannel, WebhookConfig

    channel = WebhookChannel("hook", WebhookConfig(url="http://127.0.0.1:9/x", secret="s" * 20))
    web, url = _served(engine, routers=None, connectors={"hook": channel})
    try:
        forged = requests.post(f"{url}/hooks/webhook/hook", data=b'{"events": []}',
                               headers={"X-Carepath-Signature": "sha256=00"}, timeout=10)
        unknown = requests.post(f"{url}/hooks/webhook/nope", data=b"{}", timeout=10)
    finally:
        web.stop()
    assert forged.status_code == 401 and unknown.status_code == 404


def test_a_statement_the_schema_cannot_run_is_an_incident_not_a_send_it_again(engine, app_url, clock):
    """A store whose schema does not fit the code (a hand-made change, a migration not run) is an incident for
    the operators: asking the sender to retry would only repeat the same failure."""
    from sqlalchemy import text

    with engine.db.begin() as conn:
        conn.execute(text("ALTER TABLE events RENAME COLUMN outcome TO outcome_renamed"))
    try:
        answer = _post(app_url, json.dumps(_event(clock, "s1")))
    finally:  # on PostgreSQL the suite shares one database: the next tests need the column back
        with engine.db.begin() as conn:
            conn.execute(text("ALTER TABLE events RENAME COLUMN outcome_renamed TO outcome"))
    assert answer.status_code == 422 and "Retry-After" not in answer.headers
    [result] = answer.json()["results"]
    assert result["status"] == "refused" and "internal error (incident" in result["detail"]
