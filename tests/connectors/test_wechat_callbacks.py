"""WeChat pushes to /hooks/wechat/<name> over real HTTP (uvicorn), signed and encrypted by the emulator."""

from __future__ import annotations

import json
from urllib.parse import unquote, urlencode

import requests
from sqlalchemy import func, select
from typer.testing import CliRunner

from carepath.store.personal_data import reveal_payload
from carepath.cli import _mount_optional, app
from carepath.connectors.wechat.pushes import (
    delivery_report,
    event,
    signed_callback,
    subscription,
    subscription_sent,
    text_message,
)
from carepath.definition.events import PatientIn
from carepath.store.schema import Consent, Delivery, Event, Patient, Touchpoint

from tests.connectors.wechat_support import (AES_KEY, APPID, OPENID, PATIENT, SECRET, TEMPLATE_ID, TOKEN, booked,
                                           serve_hooks)
from tests.connectors.wechat_support import emulator, wechat_engine  # noqa: F401 - fixtures
from tests.engine.helpers import snapshot


def _rows(engine, model, *where):
    with engine.db.connect() as conn:
        return list(conn.execute(select(model.__table__).where(*where).order_by(*model.__table__.primary_key)))


def _sent_once(engine, emulator, clock, n=1):
    engine.ingest(booked(clock, n=n))
    engine.dispatch_due()
    return emulator.sent[-1]


def test_server_verification_echoes_echostr_and_refuses_a_bad_signature(wechat_engine, emulator):
    with serve_hooks(wechat_engine()) as base:
        answer = emulator.verify_server(f"{base}/hooks/wechat/wechat")
        assert answer.status_code == 200 and answer.text == answer.request.url.split("echostr=")[1]
        forged = requests.get(f"{base}/hooks/wechat/wechat", timeout=5, params={
            "signature": "0" * 40, "timestamp": "1", "nonce": "n", "echostr": "abc"})
        assert forged.status_code == 401 and "abc" not in forged.text


def test_safe_mode_delivery_callback_marks_the_delivery_delivered(wechat_engine, emulator, clock):
    engine = wechat_engine()
    engine.upsert_patient(PATIENT)
    sent = _sent_once(engine, emulator, clock)
    with serve_hooks(engine) as base:
        answer = emulator.push(f"{base}/hooks/wechat/wechat", delivery_report(OPENID, sent.msgid), safe=True)
    assert (answer.status_code, answer.text) == (200, "success")
    [delivery] = _rows(engine, Delivery)
    assert (delivery.provider_id, delivery.status) == (str(sent.msgid), "delivered")
    assert _rows(engine, Touchpoint)[0].status == "delivered"


def test_failed_delivery_report_in_plaintext_mode(wechat_engine, emulator, clock):
    engine = wechat_engine(encoding_aes_key=None)
    engine.upsert_patient(PATIENT)
    sent = _sent_once(engine, emulator, clock)
    with serve_hooks(engine) as base:
        answer = emulator.push(f"{base}/hooks/wechat/wechat", delivery_report(OPENID, sent.msgid, "failed:user block"),
                               safe=False)
    assert answer.status_code == 200
    assert _rows(engine, Delivery)[0].status == "failed" and _rows(engine, Touchpoint)[0].status == "failed"


def test_rejection_withdraws_template_consent_and_later_messages_are_not_attempted(wechat_engine, emulator, clock):
    engine = wechat_engine(kind="subscribe")
    engine.upsert_patient(PATIENT)
    first = _sent_once(engine, emulator, clock)
    assert first.kind == "subscribe" and first.body["page"] == "https://hospital.example.org/visit"
    with serve_hooks(engine) as base:
        assert emulator.push(f"{base}/hooks/wechat/wechat", subscription(OPENID, TEMPLATE_ID, "reject")).ok
    [consent] = _rows(engine, Consent)
    assert (consent.purpose, consent.channel, consent.granted) == ("template:visit_reminder", "wechat", False)

    engine.ingest(booked(clock, n=2))
    engine.dispatch_due()
    assert emulator.sent == [first], "WeChat was not called for a rejected template"
    later = _rows(engine, Touchpoint)[-1]
    assert later.status == "sent" and later.channel == "outbox"
    assert "wechat: template visit_reminder refused on this channel" in later.reason
    assert [d.channel for d in _rows(engine, Delivery, Delivery.touchpoint_id == later.id)] == ["outbox"]

    with serve_hooks(engine) as base:  # accepting again lets the template through
        assert emulator.push(f"{base}/hooks/wechat/wechat", subscription(OPENID, TEMPLATE_ID, "accept")).ok
    engine.ingest(booked(clock, n=3))
    engine.dispatch_due()
    assert len(emulator.sent) == 2 and _rows(engine, Touchpoint)[-1].channel == "wechat"


def test_subscription_message_outcome_updates_its_delivery(wechat_engine, emulator, clock):
    engine = wechat_engine(kind="subscribe")
    engine.upsert_patient(PATIENT)
    sent = _sent_once(engine, emulator, clock)
    with serve_hooks(engine) as base:
        refused = subscription_sent(OPENID, TEMPLATE_ID, sent.msgid, error_code=43101, error_status="failed:user refused")
        assert emulator.push(f"{base}/hooks/wechat/wechat", refused).ok
    [delivery] = _rows(engine, Delivery)
    assert (delivery.provider_id, delivery.status) == (str(sent.msgid), "failed")
    [failed] = _rows(engine, Event, Event.type == "message.failed")
    assert failed.payload["error"] == "failed:user refused"


def test_forged_callbacks_get_401_and_change_nothing(wechat_engine, emulator, clock):
    engine = wechat_engine()
    engine.upsert_patient(PATIENT)
    sent = _sent_once(engine, emulator, clock)
    before = snapshot(engine)
    with serve_hooks(engine) as base:
        url = f"{base}/hooks/wechat/wechat"
        fields = delivery_report(OPENID, sent.msgid)
        forgeries = [signed_callback(fields, token="guessedtoken", appid=APPID, encoding_aes_key="A" * 43),
                     signed_callback(fields, token=TOKEN, appid="wxsomeoneelse0001", encoding_aes_key="A" * 43),
                     signed_callback(subscription(OPENID, TEMPLATE_ID, "reject"), token="guessedtoken", appid=APPID,
                                     safe=False)]
        answers = [requests.post(f"{url}?{urlencode(q)}", data=body, timeout=5) for q, body in forgeries]
        unsigned = requests.post(url, data=b"<xml><MsgType>text</MsgType></xml>", timeout=5)
    assert [a.status_code for a in answers] == [401, 401, 401] and unsigned.status_code == 401
    assert snapshot(engine) == before


def test_the_same_callback_delivered_three_times_is_applied_once(wechat_engine, emulator, clock):
    engine = wechat_engine()
    engine.upsert_patient(PATIENT)
    sent = _sent_once(engine, emulator, clock)
    pushes = [delivery_report(OPENID, sent.msgid), subscription(OPENID, TEMPLATE_ID, "reject"),
              text_message(OPENID, "1", msg_id=6543210)]
    with serve_hooks(engine) as base:
        for fields in pushes:
            query, body = emulator.signed_request(fields)
            for _ in range(3):  # WeChat retries the identical request when carepath is slow
                answer = requests.post(f"{base}/hooks/wechat/wechat?{urlencode(query)}", data=body, timeout=5)
                assert (answer.status_code, answer.text) == (200, "success")
    with engine.db.connect() as conn:
        counts = dict(conn.execute(select(Event.type, func.count()).where(Event.source == "wechat:wechat")
                                   .group_by(Event.type)).all())
    assert counts == {"message.delivered": 1, "consent.changed": 1, "message.replied": 1}
    assert len(_rows(engine, Consent)) == 1
    [reply] = _rows(engine, Event, Event.type == "message.replied")
    assert reveal_payload(reply.payload, engine.cipher)["text"] == "1"  # stored encrypted (issue 21)
    assert reply.source_id == "msg:6543210" and reply.patient_id is not None


def test_scanning_a_binding_qr_code_links_the_openid_to_the_patient(wechat_engine, emulator, clock):
    engine = wechat_engine()
    patient_id = engine.upsert_patient(PatientIn(mrn="M1", name="张三"))
    qr = engine.channels["wechat"].binding_qrcode(patient_id)
    assert len(qr.token) <= 64 and qr.image.startswith("https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket=")
    with serve_hooks(engine) as base:
        url = f"{base}/hooks/wechat/wechat"
        assert emulator.scan(url, qr.ticket, "oNewFollower0001").ok  # follows through the QR code
        # the same code scanned later by someone else binds nothing, nor does a forged token
        assert emulator.scan(url, qr.ticket, "oSomeoneElse0001", following=True).ok
        forged = qr.token[:-4] + ("0000" if not qr.token.endswith("0000") else "1111")
        assert emulator.push(url, event("oSomeoneElse0001", "SCAN", EventKey=forged)).ok
    with engine.db.connect() as conn:
        stored = conn.execute(select(Patient.openid_enc, Patient.openid_hash)).one()
    assert engine.cipher.decrypt(stored.openid_enc) == "oNewFollower0001"
    assert "oNewFollower0001" not in stored.openid_enc + stored.openid_hash
    [consent] = _rows(engine, Consent)
    assert (consent.purpose, consent.channel, consent.granted) == ("clinical", "wechat", True)

    engine.ingest(booked(clock))
    engine.dispatch_due()
    assert [s.body["touser"] for s in emulator.sent] == ["oNewFollower0001"]


def test_unfollow_withdraws_consent_on_this_channel_only(wechat_engine, emulator, clock):
    engine = wechat_engine()
    engine.upsert_patient(PATIENT)
    with serve_hooks(engine) as base:
        assert emulator.push(f"{base}/hooks/wechat/wechat", event(OPENID, "unsubscribe")).ok
    assert {(c.purpose, c.channel, c.granted) for c in _rows(engine, Consent)} == {
        ("clinical", "wechat", False), ("marketing", "wechat", False)}
    engine.ingest(booked(clock))
    engine.dispatch_due()
    assert emulator.sent == [] and _rows(engine, Touchpoint)[0].channel == "outbox"


def test_a_tuiding_reply_on_wechat_withdraws_wechat_consent_and_says_so(wechat_engine, emulator, clock):
    """"退订" typed into the Official Account stops WeChat messages, as the SMS "TD" stops SMS."""
    engine = wechat_engine()
    engine.upsert_patient(PATIENT)
    with serve_hooks(engine) as base:
        assert emulator.push(f"{base}/hooks/wechat/wechat", text_message(OPENID, "退订", msg_id=81)).ok
    assert {(c.purpose, c.channel, c.granted) for c in _rows(engine, Consent)} == {
        ("clinical", "wechat", False), ("marketing", "wechat", False)}
    [reply] = _rows(engine, Event, Event.type == "message.replied")
    assert reply.intent == "unsubscribe" and "unsubscribe reply '退订': withdrew clinical and marketing on wechat" \
        in reply.outcome
    engine.ingest(booked(clock))
    engine.dispatch_due()
    assert emulator.sent == [] and _rows(engine, Touchpoint)[0].channel == "outbox"


def test_a_guardian_bound_to_two_patients_replies_for_both(wechat_engine, emulator):
    engine = wechat_engine()
    ids = engine.upsert_patients([PatientIn(mrn="C1", name="小明", openid="oParent00000001"),
                                  PatientIn(mrn="C2", name="小红", openid="oParent00000001")])
    with serve_hooks(engine) as base:
        assert emulator.push(f"{base}/hooks/wechat/wechat", text_message("oParent00000001", "2", msg_id=77)).ok
    replies = _rows(engine, Event, Event.type == "message.replied")
    assert sorted(r.patient_id for r in replies) == sorted(ids)
    assert {r.source_id for r in replies} == {"msg:77", "msg:77:1"}


def test_carepath_wechat_bind_prints_a_code_that_binds_the_patient_its_mrn_names(
        wechat_engine, emulator, database_url, tmp_path, monkeypatch):
    engine = wechat_engine()
    patient_id = engine.upsert_patient(PatientIn(mrn="M1", name="张三"))
    for name, value in {"WX_SECRET": SECRET, "WX_TOKEN": TOKEN, "WX_AES_KEY": AES_KEY,
                        "CAREPATH_HOME": str(tmp_path / "home")}.items():  # the engine's key home
        monkeypatch.setenv(name, value)
    for name in ("CAREPATH_SECRET_KEY", "CAREPATH_KEY_FILE", "CAREPATH_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "carepath.toml"
    config.write_text(f'[connectors.wechat]\ntype = "wechat"\nappid = "{APPID}"\nsecret = {{env = "WX_SECRET"}}\n'
                      f'token = {{env = "WX_TOKEN"}}\nencoding_aes_key = {{env = "WX_AES_KEY"}}\n'
                      f'api_base = "{emulator.url}"\n', encoding="utf-8")
    _mount_optional()

    def bind(*args: str):
        return CliRunner().invoke(app, ["wechat", "bind", *args, "--config", str(config), "--db", database_url])

    made = bind("M1", "--json")
    assert made.exit_code == 0, made.output
    code = json.loads(made.stdout)
    assert code["patient_id"] == patient_id and len(code["token"]) <= 64
    ticket = unquote(code["image"].split("ticket=", 1)[1])
    with serve_hooks(engine) as base:
        assert emulator.scan(f"{base}/hooks/wechat/wechat", ticket, "oScannedSlip0001").ok
    with engine.db.connect() as conn:
        assert engine.cipher.decrypt(conn.execute(select(Patient.openid_enc)).scalar_one()) == "oScannedSlip0001"

    assert "image" not in json.loads(bind("M1", "--token-only", "--json").stdout)
    unknown = bind("M9")
    assert unknown.exit_code == 3 and "no patient with MRN M9" in unknown.output
    elsewhere = bind("M1", "--channel", "sms")
    assert elsewhere.exit_code == 3 and "no WeChat connector named 'sms' in the configuration (WeChat connectors: wechat)" \
        in elsewhere.output
    assert "journey" not in unknown.output  # binding needs no journey; no note about them
