"""The wechat channel against its emulator over loopback HTTP, through the engine and dispatcher."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import requests
from sqlalchemy import select

from carepath.connectors.wechat.emulator import WechatEmulator
from carepath.definition.events import EventIn, PatientIn
from carepath.plugins.contracts import Message
from carepath.store.schema import Delivery, OutboxMessage, Touchpoint

from tests.connectors.wechat_support import APPID, OPENID, PATIENT, SECRET, TEMPLATE_ID, booked, make_wechat
from tests.connectors.wechat_support import emulator, wechat_engine  # noqa: F401 - fixtures


def _touchpoints(engine):
    with engine.db.connect() as conn:
        return list(conn.execute(select(Touchpoint.__table__).order_by(Touchpoint.id)))


def _deliveries(engine):
    with engine.db.connect() as conn:
        return list(conn.execute(select(Delivery.__table__).order_by(Delivery.id)))


def test_journey_message_reaches_wechat_with_rendered_fitted_template_data(wechat_engine, emulator, clock):
    engine = wechat_engine()
    engine.upsert_patient(PATIENT)
    engine.ingest(booked(clock, department="心血管内科门诊（东院区门诊楼三楼）专家号特需"))
    report = engine.dispatch_due()

    assert report.sent == 1
    [sent] = emulator.sent
    assert sent.kind == "template" and sent.body["touser"] == OPENID and sent.body["template_id"] == TEMPLATE_ID
    assert sent.body["url"] == "https://hospital.example.org/visit"
    tp = _touchpoints(engine)[0]
    assert sent.body["client_msg_id"] == f"{tp.idempotency_key}:wechat"
    # 22 characters: cut to 20 with an ellipsis instead of being refused with 47003
    assert sent.data["thing1"] == "心血管内科门诊（东院区门诊楼三楼）专家…" and len(sent.data["thing1"]) == 20
    assert sent.data["time2"] == "2026年5月2日 08:30" and sent.data["thing3"] == "张三"
    assert tp.status == "sent" and tp.channel == "wechat"
    assert _deliveries(engine)[0].provider_id == str(sent.msgid)


def test_refused_openid_falls_back_to_next_channel_in_the_same_dispatch(wechat_engine, emulator, clock):
    engine = wechat_engine()
    engine.upsert_patient(PATIENT)
    emulator.refuse(OPENID, 43101)
    engine.ingest(booked(clock))
    engine.dispatch_due()

    tp = _touchpoints(engine)[0]
    assert tp.status == "sent" and tp.channel == "outbox" and "wechat: 43101" in tp.reason
    wechat, outbox = _deliveries(engine)
    assert (wechat.channel, wechat.status, wechat.error_kind, wechat.error_code) == ("wechat", "failed", "permanent",
                                                                                    "43101")
    assert "errcode 43101" in wechat.error and OPENID not in wechat.error
    assert (outbox.channel, outbox.status) == ("outbox", "sent")
    with engine.db.connect() as conn:
        assert conn.execute(select(OutboxMessage.idempotency_key)).scalars().all() == [
            f"{tp.idempotency_key}:outbox"]
    assert emulator.sent == []


def test_bad_openid_is_permanent_and_rate_limit_is_retried_later(wechat_engine, emulator, clock):
    channel = wechat_engine().channels["wechat"]
    emulator.fail_next(45009)
    emulator.fail_next(-1)
    message = _message()
    limited, busy, ok = channel.send(message), channel.send(message), channel.send(message)
    assert (limited.error_kind.value, limited.error_code) == ("retryable", "45009") and "45009" in limited.error
    assert (busy.error_kind.value, busy.error_code) == ("retryable", "-1")
    assert ok.ok and ok.provider_id == str(emulator.sent[0].msgid)
    emulator.refuse("oUnknown", 40003)
    bad = channel.send(_message(address="oUnknown"))
    assert (bad.error_kind.value, bad.error_code) == ("permanent", "40003") and "invalid openid" in bad.error


def test_expired_token_is_refreshed_once_for_all_workers(wechat_engine, emulator, clock):
    first, second = wechat_engine(worker_id="w1"), wechat_engine(worker_id="w2")
    patients = [PatientIn(mrn=f"M{i}", name="李四", openid=f"oOpenid{i:04d}") for i in range(8)]
    first.upsert_patients(patients)
    first.ingest(booked(clock, mrn="M0"))
    first.dispatch_due()
    assert emulator.token_requests == 1
    emulator.expire_tokens()
    for i in range(1, 8):
        first.ingest(booked(clock, mrn=f"M{i}"))

    start = threading.Barrier(2)

    def work(engine):
        start.wait()
        engine.dispatch_due(batch=1)

    threads = [threading.Thread(target=work, args=(e,)) for e in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert emulator.token_requests == 2, "one refresh shared by both workers"
    assert sorted(s.body["touser"] for s in emulator.sent) == sorted(p.openid for p in patients)
    assert {tp.status for tp in _touchpoints(first)} == {"sent"}
    assert all(d.channel == "wechat" and d.status == "sent" for d in _deliveries(first))


def test_token_refresh_waits_for_the_worker_holding_the_lease(wechat_engine, emulator):
    channels = [wechat_engine(worker_id=f"w{i}").channels["wechat"] for i in range(3)]
    stale = channels[0].tokens.get()
    emulator.expire_tokens()
    start = threading.Barrier(6)
    got: list[str] = []

    def replace(channel):
        start.wait()
        got.append(channel.tokens.replace(stale))

    threads = [threading.Thread(target=replace, args=(c,)) for c in channels * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == 6 and len(set(got)) == 1 and stale not in got
    assert emulator.token_requests == 2


def _message(address: str = OPENID):
    return Message(idempotency_key="tp-9:wechat", channel="wechat", patient_id=1, address=address, title="t",
                   body="b", template="visit_reminder", category="clinical",
                   context={"event": {"department": "眼科", "start": "2026-05-02T09:00:00+08:00"},
                            "patient": PATIENT_VIEW})


class _View:
    name = "王五"
    tz = "Asia/Shanghai"


PATIENT_VIEW = _View()


def test_token_is_renewed_before_it_expires_and_the_old_one_works_during_the_overlap():
    with WechatEmulator(appid=APPID, secret=SECRET, token_lifetime=3, overlap=2.5) as wx:
        tokens = make_wechat(wx.url, token_refresh_margin=2).tokens
        first = tokens.get()
        assert tokens.get() == first and wx.token_requests == 1
        time.sleep(1.2)  # 1.8 s left: inside the 2 s margin
        renewed = tokens.get()
        assert renewed != first and wx.token_requests == 2
        old = requests.post(f"{wx.url}/cgi-bin/message/template/send", params={"access_token": first}, timeout=5,
                            json={"touser": OPENID, "template_id": "T", "data": {"thing1": {"value": "x"}}}).json()
        assert old["errcode"] == 0, "the previous token stays valid for the overlap"


def test_a_token_handed_out_again_is_not_fetched_on_every_send():
    # the platform keeps giving the current token while more than the overlap is left
    with WechatEmulator(appid=APPID, secret=SECRET, token_lifetime=3, overlap=0.5) as wx:
        tokens = make_wechat(wx.url, token_refresh_margin=2).tokens
        first = tokens.get()
        time.sleep(1.2)
        assert [tokens.get() for _ in range(20)] == [first] * 20
        assert wx.token_requests == 2, "asked once inside the margin, then not again for a while"


def test_the_channel_itself_does_not_send_a_template_the_patient_rejected(wechat_engine, emulator, clock):
    engine = wechat_engine()
    patient_id = engine.upsert_patient(PATIENT)
    engine.ingest(EventIn(type="consent.changed", source="test", source_id="c1", patient_mrn="M1",
                          occurred_at=clock.now(), payload={"purpose": "template:visit_reminder", "granted": False,
                                                            "channel": "wechat"}))
    result = engine.channels["wechat"].send(replace(_message(), patient_id=patient_id))
    assert (result.error_kind.value, result.error_code) == ("permanent", "template_rejected")
    assert emulator.sent == [] and emulator.token_requests == 0
