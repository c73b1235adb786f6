"""The web hooks app against hostile input, over real HTTP: nested and oversized bodies, forged and weak tokens,
authentic bodies that cannot be used, a route that crashes. Every answer is a 4xx (or a logged 500 naming an
incident, never a trace), nothing is applied from a refused request, and the server's memory stays flat."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import pytest
import requests
from sqlalchemy import func, select

from carepath.config import load_config
from carepath.serve import WebServer
from carepath.store.schema import Event, OperatorAlert
from carepath.web.app import create_app
from carepath.web.clients import WeakToken
from carepath.web.limits import CALLBACK, EVENTS, FORM, READ, ClassLimits, InboundLimits


from tests.serve.hostile import (DEFAULT_TOKEN, SECRETS, GuardedApp, applied_state, hostile_engine, nested_json, routes,
                                 stream_post, wechat_envelope, wechat_query, wjx_body, write_hospital)

HIS_EAST = {"Authorization": f"Bearer {SECRETS['T_HIS_EAST_TOKEN']}"}
BRIDGE = {"Authorization": f"Bearer {SECRETS['T_BRIDGE_TOKEN']}"}
SMS_HOOK = f"/hooks/aliyun-sms/sms/{SECRETS['T_SMS_HOOK']}"


@pytest.fixture
def hospital(tmp_path, monkeypatch, database_url, settings):
    engine = hostile_engine(tmp_path, monkeypatch, database_url, settings)
    yield engine
    engine.close()


def _serve(engine, **options):
    web = WebServer(create_app(engine, events_token=DEFAULT_TOKEN, **options), "127.0.0.1", 0)
    host, port = web.start()
    return web, f"http://{host}:{port}"


@pytest.fixture
def app_url(hospital):
    web, url = _serve(hospital)
    yield url
    web.stop()


def _event(source_id: str, source: str = "his-east", **payload) -> dict:
    now = datetime.now(timezone.utc)
    return {"type": "appointment.booked", "source": source, "source_id": source_id, "patient_mrn": "M1",
            "occurred_at": now.isoformat(),
            "payload": payload or {"appointment_id": source_id, "start": (now + timedelta(days=3)).isoformat()}}


def _count(engine, *where) -> int:
    with engine.db.connect() as conn:
        return conn.execute(select(func.count()).select_from(Event).where(*where)).scalar_one()


_applied = applied_state


def test_ten_thousand_deep_json_gets_a_4xx_on_every_route(hospital, app_url):
    body = nested_json(10_000)
    before = _applied(hospital)
    for route in routes():
        answer = requests.request(route.method, route.url(app_url), data=body, headers=dict(route.headers),
                                  timeout=30)
        assert 400 <= answer.status_code < 500, (route.name, answer.status_code, answer.text[:200])
        assert "Traceback" not in answer.text and "RecursionError" not in answer.text, route.name
    assert _applied(hospital) == before


def test_events_deep_json_is_refused_with_its_reason(hospital, app_url):
    answer = requests.post(f"{app_url}/events", data=nested_json(), headers=HIS_EAST, timeout=30)
    assert answer.status_code == 422
    assert answer.json()["results"] == [{"at": "body", "status": "refused",
                                         "detail": "not JSON an event can be: nested too deeply"}]
    lone = json.dumps(_event("S1", note="x")).replace('"x"', '"\\ud800"')  # a lone surrogate, as JSON spells it
    answer = requests.post(f"{app_url}/events", data=lone, headers=HIS_EAST, timeout=30)
    assert answer.status_code == 422 and "payload.note: contains a lone surrogate (U+D800" in answer.text
    mrn = json.dumps(_event("S2")).replace('"M1"', '"M\\udfff"')
    answer = requests.post(f"{app_url}/events", data=mrn, headers=HIS_EAST, timeout=30)
    assert answer.status_code == 422 and answer.json()["results"][0]["detail"].startswith("patient_mrn: ")
    assert _count(hospital) == 0


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_its_limit_is_cut_off_with_413(hospital, app_url, chunked):
    limits = hospital.settings.inbound_limits()
    form = "application/x-www-form-urlencoded"
    for path, headers, kind, ctype in [("/events", HIS_EAST, EVENTS, "application/json"),
                                       (f"{SMS_HOOK}/receipts", {}, CALLBACK, "application/json"),
                                       ("/staff/login", {}, FORM, form)]:
        total = max(8 * limits.classes[kind].max_bytes, 48 * 1024 * 1024) + 12345  # more than socket buffers hold
        status, sent = stream_post(app_url, path, total, chunked=chunked, headers=tuple(headers.items()),
                                   content_type=ctype)
        assert status == 413, (path, status)
        # answered while the body was still coming (with a length, before a byte of it was read)
        assert sent < total, (path, sent)
    assert _count(hospital) == 0


def test_the_server_survives_a_flood_with_flat_memory(tmp_path, database_url):
    """A real server process: 64 MiB to each kind of route, with a length and chunked, and 10,000-deep JSON.
    (The 1 GiB figures of docs/security.md come from benchmarks/inbound_flood.py, the same client.)"""
    with GuardedApp(tmp_path, database_url) as app:
        for _ in range(3):  # warm up: imports, first requests, database connections
            requests.post(f"{app.url}/events", data=b"[]", headers=HIS_EAST, timeout=30)
            requests.get(f"{app.url}/healthz", timeout=30)
        before = app.rss()
        for path, headers in [("/events", HIS_EAST), (f"{SMS_HOOK}/receipts", {}), ("/hooks/wjx/wjx", {}),
                              ("/webhooks/fhir/fhir", {"X-Carepath-Token": SECRETS["T_FHIR_SECRET"]}),
                              ("/s/some-token", {}), ("/staff/login", {})]:
            for chunked in (False, True):
                status, _ = stream_post(app.url, path, 64 * 1024 * 1024, chunked=chunked,
                                        headers=tuple(headers.items()))
                # with a length: 413 before the route runs; streamed: 413 once read past the limit, or the
                # route's own 4xx when it refuses without reading (an unknown survey link, a form that is not one)
                assert status == 413 if not chunked else 400 <= (status or 0) < 500, (path, chunked, status)
            deep = requests.post(app.url + path, data=nested_json(), headers=headers, timeout=30)
            assert 400 <= deep.status_code < 500, (path, deep.status_code)
        grown = app.rss() - before
    assert grown < 24 * 1024 * 1024, f"the server grew by {grown / 2**20:.1f} MiB"


def test_a_content_type_that_is_not_json_and_too_many_events_are_refused_whole(hospital, app_url):
    form = requests.post(f"{app_url}/events", data={"type": "x"}, headers=HIS_EAST, timeout=30)
    assert form.status_code == 415 and "application/json" in form.json()["detail"]
    many = [_event(f"S{i}") for i in range(hospital.settings.inbound_events_max_count + 1)]
    answer = requests.post(f"{app_url}/events", data=json.dumps(many), headers=HIS_EAST, timeout=60)
    assert answer.status_code == 413 and "split the batch; none was applied" in answer.json()["detail"]
    assert _count(hospital) == 0


def test_each_system_has_its_own_token_and_its_name_is_kept_on_its_events(hospital, app_url):
    answer = requests.post(f"{app_url}/events", data=json.dumps(_event("E1")), headers=HIS_EAST, timeout=30)
    assert answer.status_code == 200 and answer.json()["system"] == "his-east"
    # his-east may only send its own source; the bridge (no sources listed) may send any
    other = requests.post(f"{app_url}/events", data=json.dumps(_event("E2", source="lab")), headers=HIS_EAST,
                          timeout=30)
    assert other.status_code == 422 and "is not one this system may send" in other.text
    assert requests.post(f"{app_url}/events", data=json.dumps(_event("E3", source="lab")), headers=BRIDGE,
                         timeout=30).status_code == 200
    # CAREPATH_EVENTS_TOKEN still works, as the system "default"
    legacy = requests.post(f"{app_url}/events", data=json.dumps(_event("E4", source="his")),
                           headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"}, timeout=30)
    assert legacy.status_code == 200 and legacy.json()["system"] == "default"
    with hospital.db.connect() as conn:
        via = dict(conn.execute(select(Event.source_id, Event.received_via)).all())
    assert via == {"E1": "events-api:his-east", "E3": "events-api:bridge", "E4": "events-api:default"}


def test_weak_tokens_stop_the_app_at_start_up(hospital, monkeypatch, tmp_path):
    with pytest.raises(WeakToken, match="CAREPATH_EVENTS_TOKEN is too weak: it is 1 characters long"):
        create_app(hospital, events_token="x")
    with pytest.raises(WeakToken, match="uses only 1 different characters"):
        create_app(hospital, events_token="a" * 40)
    monkeypatch.setenv("T_HIS_EAST_TOKEN", "short")
    with pytest.raises(Exception) as refused:
        load_config(write_hospital(tmp_path))
    assert "events_api.his-east.token: too weak: the token is 5 characters long" in str(refused.value)
    assert "short" not in str(refused.value).replace("shorter", "")


def test_wrong_tokens_are_rate_limited_per_source(hospital):
    limits = InboundLimits(auth_failures=5, lockout=60)
    web, url = _serve(hospital, limits=limits)
    try:
        wrong = {"Authorization": "Bearer not-the-token-at-all-000000"}
        codes = [requests.post(f"{url}/events", data=b"[]", headers=wrong, timeout=10).status_code for _ in range(7)]
        assert codes == [401] * 5 + [429] * 2
        locked = requests.post(f"{url}/events", data=json.dumps(_event("L1")), headers=HIS_EAST, timeout=10)
        assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0  # the right token waits too
        # other kinds of route are their own budget: the address can still reach the callbacks
        assert requests.get(f"{url}/healthz", timeout=10).status_code in (200, 503)
    finally:
        web.stop()
    assert _count(hospital) == 0


def test_requests_over_a_sources_budget_get_429(hospital):
    limits = InboundLimits(classes={**InboundLimits().classes, READ: ClassLimits(0, rate=1, burst=3)})
    web, url = _serve(hospital, limits=limits)
    try:
        codes = [requests.get(f"{url}/metrics", timeout=10).status_code for _ in range(5)]
    finally:
        web.stop()
    assert codes[:3] == [200, 200, 200] and codes[-1] == 429


def test_a_signed_but_malformed_callback_is_400_and_kept_masked_for_operators(hospital, app_url):
    broken = b'[{"phone_number": "13912345678", "send_time": "yesterday", "biz_id": 7'
    before = _applied(hospital)
    answer = requests.post(f"{app_url}{SMS_HOOK}/receipts", data=broken, timeout=30)
    assert answer.status_code == 400 and answer.json()["detail"].startswith("malformed callback: ")
    envelope = wechat_envelope("<xml><MsgType>te")  # correctly encrypted and signed, broken inside
    wechat = requests.post(f"{app_url}/hooks/wechat/wechat?{wechat_query(envelope)}", data=envelope, timeout=30)
    assert wechat.status_code == 400, wechat.text
    wjx = requests.post(f"{app_url}/hooks/wjx/wjx", data=wjx_body({"activity": "9999", "index": "1"}), timeout=30)
    assert wjx.status_code == 400 and "not mapped" in wjx.text
    assert _applied(hospital) == before  # nothing applied
    with hospital.db.connect() as conn:
        kept = conn.execute(select(Event.source, Event.status, Event.outcome, Event.payload, Event.received_via)
                            .where(Event.type == "inbound.rejected").order_by(Event.id)).all()
        alerts = conn.execute(select(OperatorAlert.kind)).scalars().all()
    assert [(k.source, k.status, k.received_via) for k in kept] == [
        ("aliyun-sms:sms", "refused", "hook:sms"), ("wechat:wechat", "refused", "hook:wechat"),
        ("wjx:wjx", "refused", "hook:wjx")]
    sms = kept[0]
    assert "139****5678" in sms.outcome and "13912345678" not in json.dumps(sms.payload, ensure_ascii=False)
    assert sms.payload["body"] != broken.decode() and set(sms.payload["body"]) == {"$encrypted"}
    assert alerts == ["carepath.callback.rejected"] * 3
    again = requests.post(f"{app_url}{SMS_HOOK}/receipts", data=broken, timeout=30)  # the provider retries
    assert again.status_code == 400 and _count(hospital, Event.type == "inbound.rejected") == 3


@pytest.mark.parametrize("push", [
    [1, 2, 3],
    {"action": "answer.created", "payload": {}},
    {"action": "answer.create"},
    {"action": "answer.create", "payload": {"survey_id": "svy-77", "answer_id": "a1", "answer": "9"}},
    {"action": "answer.create", "payload": {"survey_id": "svy-77", "answer_id": "a1", "answer": [7]}},
    {"action": "answer.create", "payload": {"survey_id": "svy-99", "answer_id": "a1", "answer": []}},
], ids=["a list", "unknown action", "no payload", "answer not a list", "answer item not an object", "unmapped"])
def test_a_tencent_wenjuan_push_of_an_unusable_shape_is_400_not_dropped(hospital, app_url, push):
    url = f"{app_url}/hooks/tencent-wenjuan/wenjuan/{SECRETS['T_WENJUAN_PATH']}"
    answer = requests.post(url, data=json.dumps(push), timeout=30)
    assert answer.status_code == 400, answer.text
    assert _count(hospital, Event.type == "inbound.rejected", Event.source == "tencent-wenjuan:wenjuan") == 1


def test_a_route_that_crashes_answers_500_with_an_incident_id_and_no_trace(hospital, caplog):
    from fastapi import APIRouter

    router = APIRouter()

    @router.post("/hooks/buggy/{name}")
    async def _buggy(name: str) -> None:
        raise RuntimeError("secret-internal-detail")

    web, url = _serve(hospital, routers=[router])
    try:
        with caplog.at_level(logging.ERROR, logger="carepath.web"):
            answer = requests.post(f"{url}/hooks/buggy/x", data=b"{}", timeout=10)
    finally:
        web.stop()
    assert answer.status_code == 500
    detail = answer.json()["detail"]
    assert detail.startswith("internal error (incident ") and "secret-internal-detail" not in answer.text
    incident = detail.split("incident ")[1].split(",")[0]
    assert any(incident in r.getMessage() for r in caplog.records)  # the operator finds it in the log
