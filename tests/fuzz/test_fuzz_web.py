"""Every web hook body and query string, over real HTTP (uvicorn): no 500, no trace, and a refused request
applies nothing. Forged requests change nothing at all; authentic ones (right token, signature or secret) are
fuzzed deeper: SMS receipts and replies, WeChat messages inside a valid safe-mode envelope, signed wjx pushes,
Tencent Wenjuan pushes, FHIR resources and bundles, and events on ``POST /events``."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
import requests
from hypothesis import example, given
from hypothesis import strategies as st

from carepath.connectors.his.fhir_emulator import appointment_resource, patient_resource
from carepath.connectors.wechat.crypto import to_xml
from carepath.definition.events import PatientIn
from carepath.serve import WebServer
from carepath.web.app import create_app
from carepath.web.limits import InboundLimits

from tests.engine import helpers as h
from tests.fuzz.budget import FUZZ
from tests.serve.hostile import (DEFAULT_TOKEN, SECRETS, applied_state, hostile_engine, routes, wechat_envelope,
                                 wechat_query, wjx_body)

SMS = f"/hooks/aliyun-sms/sms/{SECRETS['T_SMS_HOOK']}"
TSMS = f"/hooks/tencent-sms/tsms/{SECRETS['T_SMS_HOOK']}"
HIS_EAST = {"Authorization": f"Bearer {SECRETS['T_HIS_EAST_TOKEN']}"}
UNLIMITED = InboundLimits(classes={k: type(v)(v.max_bytes, rate=0, burst=1) for k, v in InboundLimits().classes.items()},
                          auth_failures=0)

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                         st.text(max_size=20), st.sampled_from(["13912345678", "2026-05-01 10:00:00", "1^0", "退订",
                                                                "TD", "SUCCESS", "answer.create", "svy-77", "1001"]))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=5)), max_leaves=20)


def _mutate(base: dict, draw: st.DrawFn) -> dict:
    """``base`` with some fields replaced, removed or added (the shape stays recognisable)."""
    out = dict(base)
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.sampled_from(sorted(out) + ["extra"])) if out else "extra"
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "remove":
            out.pop(key, None)
        else:
            out[key if action == "replace" else draw(st.text(max_size=8))] = draw(json_values)
    return out


@st.composite
def sms_pushes(draw: st.DrawFn) -> tuple[str, bytes]:
    receipt = {"phone_number": "13912345678", "send_time": "2026-05-01 10:00:00", "report_time": "2026-05-01 10:00:05",
               "success": True, "err_code": "DELIVERED", "biz_id": "1^0", "out_id": "k"}
    reply = {"phone_number": "13912345678", "send_time": "2026-05-01 10:00:00", "content": "TD", "sequence_id": 7}
    treply = {"mobile": "13912345678", "nationcode": "86", "text": "退订", "time": 1777600000}
    path, base = draw(st.sampled_from([(f"{SMS}/receipts", receipt), (f"{SMS}/replies", reply),
                                       (f"{TSMS}/replies", treply)]))
    body = [_mutate(base, draw) for _ in range(draw(st.integers(1, 3)))]
    whole = draw(st.sampled_from(["list", "object", "raw"]))
    if whole == "raw":
        return path, draw(st.binary(max_size=200))
    return path, json.dumps(body if whole == "list" else body[0], ensure_ascii=False).encode()


@st.composite
def fhir_bodies(draw: st.DrawFn) -> bytes:
    from datetime import datetime, timezone

    patient = patient_resource("p1", "MRN-F1", "王五", "13812345678", "1950-01-01", "male")
    appointment = appointment_resource("a1", "p1", datetime(2026, 5, 3, 9, 30, tzinfo=timezone.utc), "booked", "心内科")
    resource = _mutate(draw(st.sampled_from([patient, appointment])), draw)
    if draw(st.booleans()):
        resource = {"resourceType": "Bundle", "type": "history",
                    "entry": [{"resource": resource}, draw(json_values)]}
    return json.dumps(resource, ensure_ascii=False).encode()


@st.composite
def events_bodies(draw: st.DrawFn) -> bytes:
    event = {"type": "appointment.booked", "source": "his-east", "source_id": "F1", "patient_mrn": "M1",
             "occurred_at": "2026-05-01T09:00:00+08:00",
             "payload": {"appointment_id": "A1", "start": "2026-05-03T09:30:00+08:00", "patient": {"name": "张三"}}}
    event["payload"] = _mutate(event["payload"], draw)
    event = _mutate(event, draw)
    return json.dumps(draw(st.sampled_from([event, [event, event]])), ensure_ascii=False, default=str).encode()


@st.composite
def wechat_messages(draw: st.DrawFn) -> dict:
    base = draw(st.sampled_from([
        {"MsgType": "text", "Content": "退订", "MsgId": "9001"},
        {"MsgType": "event", "Event": "TEMPLATESENDJOBFINISH", "MsgID": "1", "Status": "success"},
        {"MsgType": "event", "Event": "subscribe_msg_popup_event",
         "SubscribeMsgPopupEvent": {"List": [{"TemplateId": "T", "SubscribeStatusString": "reject"}]}},
        {"MsgType": "event", "Event": "subscribe_msg_sent_event",
         "SubscribeMsgSentEvent": {"List": [{"TemplateId": "T", "MsgID": "2", "ErrorCode": "0"}]}},
        {"MsgType": "event", "Event": "SCAN", "EventKey": "qrscene_bind-xyz"},
        {"MsgType": "event", "Event": "unsubscribe"},
    ]))
    fields = {"ToUserName": "gh_1", "FromUserName": "oFuzzOpenid01", "CreateTime": "1777600000", **base}
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(sorted(fields) + ["List", "X"]))
        fields[key] = draw(st.one_of(st.text(max_size=20).map(lambda t: t.replace("]]>", "")),
                                     st.lists(st.dictionaries(st.sampled_from(["MsgID", "TemplateId", "ErrorCode",
                                                                               "SubscribeStatusString"]),
                                                              st.text(max_size=8).map(lambda t: t.replace("]]>", "")),
                                                              max_size=3), max_size=2)))
    return fields


@pytest.fixture
def app(tmp_path, monkeypatch, database_url, settings):
    engine = hostile_engine(tmp_path, monkeypatch, database_url, settings)
    engine.upsert_patient(PatientIn(mrn="M1", name="张三", phone="13912345678", openid="oFuzzOpenid01"))
    web = WebServer(create_app(engine, events_token=DEFAULT_TOKEN, limits=UNLIMITED), "127.0.0.1", 0)
    host, port = web.start()
    yield engine, f"http://{host}:{port}"
    web.stop()
    engine.close()


def _sane(answer: requests.Response, what: str) -> None:
    # the one 5xx allowed: an empty FHIR notification asks for a poll, and this test's FHIR server is not there
    unreachable_his = answer.status_code == 503 and "not polled (FHIR server unreachable" in answer.text
    assert answer.status_code < 500 or unreachable_his, (what, answer.status_code, answer.text[:300])
    assert "Traceback" not in answer.text and 'File "' not in answer.text, what
    assert "incident" not in answer.text, (what, answer.text[:300])  # the last-resort answer: an unforeseen bug


@FUZZ
@given(route=st.sampled_from(routes()), body=st.one_of(st.binary(max_size=300), json_values.map(
    lambda v: json.dumps(v).encode()), st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))),
       query=st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=4),
       method=st.sampled_from(["GET", "POST", "PUT"]))
@example(route=routes()[0], body=b'{"type": "a.b", "source": "\\ud800"}', query={}, method="POST")
def test_any_body_and_query_on_any_route(app, route, body, query, method):
    engine, base = app
    before = h.snapshot(engine) if not route.authentic else None
    extra = "&".join(f"{quote(k)}={quote(v)}" for k, v in query.items())
    url = route.url(base) + (("&" if "?" in route.path else "?") + extra if extra else "")
    answer = requests.request(method if route.method != "GET" else "GET", url, data=body,
                              headers=dict(route.headers), timeout=30)
    _sane(answer, route.name)
    if before is not None:  # forged: nothing at all, not even a record of it
        assert h.snapshot(engine) == before


@FUZZ
@given(push=sms_pushes())
@example(push=(f"{TSMS}/replies", b'{"mobile": "139", "time": 99999999999999999, "text": "x"}'))
@example(push=(f"{SMS}/receipts", b'[{"phone_number": 1, "send_time": "2026-05-01 10:00:00", "biz_id": {}, '
                                   b'"success": []}]'))
def test_authentic_sms_pushes(app, push):
    engine, base = app
    path, body = push
    before = applied_state(engine)
    answer = requests.post(base + path, data=body, timeout=30)
    _sane(answer, path)
    assert answer.status_code in (200, 400), answer.text
    if answer.status_code == 400:
        assert applied_state(engine) == before


@FUZZ
@given(fields=wechat_messages())
@example(fields={"ToUserName": "gh_1", "FromUserName": "oFuzzOpenid01", "CreateTime": [{}], "MsgType": "event",
                 "Event": "subscribe_msg_popup_event",  # <List> as text, then as items: AttributeError before
                 "SubscribeMsgPopupEvent": {"List": [{"TemplateId": "T", "SubscribeStatusString": "reject"}]}})
@example(fields={"ToUserName": "gh_1", "FromUserName": "oStranger0000001", "CreateTime": "1", "MsgType": "text",
                 "Content": "你好", "MsgId": "1"})  # a follower bound to no patient: acknowledged (was a 500)
def test_authentic_wechat_messages(app, fields):
    engine, base = app
    envelope = wechat_envelope(to_xml(fields))
    before = applied_state(engine)
    answer = requests.post(f"{base}/hooks/wechat/wechat?{wechat_query(envelope)}", data=envelope, timeout=30)
    _sane(answer, "wechat")
    if answer.status_code >= 400:
        assert applied_state(engine) == before


@FUZZ
@given(data=st.fixed_dictionaries({"activity": st.sampled_from(["1001", "9"]), "joinid": st.text(max_size=8)},
                                  optional={"index": json_values, "q1": json_values, "sojumpparm": json_values,
                                            "submittime": json_values, "totalvalue": json_values}))
def test_authentic_wjx_pushes(app, data):
    engine, base = app
    before = applied_state(engine)
    answer = requests.post(f"{base}/hooks/wjx/wjx", data=wjx_body(data), timeout=30)
    _sane(answer, "wjx")
    if answer.status_code >= 400:
        assert applied_state(engine) == before


@FUZZ
@given(push=json_values, answer_list=st.lists(json_values, max_size=3))
@example(push={"action": "answer.create", "payload": {"survey_id": "svy-77", "answer_id": "a", "answer": []}},
         answer_list=[])
def test_authentic_tencent_wenjuan_pushes(app, push, answer_list):
    engine, base = app
    if isinstance(push, dict) and isinstance(push.get("payload"), dict):
        push["payload"].setdefault("answer", answer_list)
    before = applied_state(engine)
    answer = requests.post(f"{base}/hooks/tencent-wenjuan/wenjuan/{SECRETS['T_WENJUAN_PATH']}",
                           data=json.dumps(push), timeout=30)
    _sane(answer, "tencent wenjuan")
    if answer.status_code >= 400:
        assert applied_state(engine) == before


@FUZZ
@given(body=fhir_bodies(), put=st.booleans())
def test_authentic_fhir_notifications(app, body, put):
    engine, base = app
    before = applied_state(engine)
    answer = requests.request("PUT" if put else "POST", f"{base}/webhooks/fhir/fhir" + ("/Patient/p1" if put else ""),
                              data=body, headers={"X-Carepath-Token": SECRETS["T_FHIR_SECRET"]}, timeout=30)
    _sane(answer, "fhir")
    if answer.status_code >= 400:
        assert applied_state(engine) == before


@FUZZ
@given(body=events_bodies(), query=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3))
def test_authentic_events(app, body, query):
    engine, base = app
    before = applied_state(engine)
    answer = requests.post(f"{base}/events", data=body, params=query, headers=HIS_EAST, timeout=30)
    _sane(answer, "events")
    if answer.status_code >= 400:
        assert applied_state(engine) == before
