"""Unsubscribe in one place: "TD", "退订" or a configured word in a ``message.replied`` event, from any source,
withdraws what the channel's rule says; the timeline says which reply did it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from carepath.connectors.aliyun_sms.channel import AliyunSmsChannel
from carepath.definition.dsl import after, after_step, enroll_on, journey, send, step, task, template
from carepath.reporting import timeline_data
from carepath.settings import Settings
from carepath.store.schema import Consent, Event

from tests.engine import helpers as h

CARE = journey("care", enroll=enroll_on("encounter.discharged"),
               templates=[template("followup", "出院后感觉如何？")],
               steps=[step("followup", "post_visit", after("enrolled", "1d"), send("followup", ["sms", "wechat"])),
                      step("call", "post_visit", after_step("followup", "2d", unless="replied"),
                           task("call_patient"))])


def _sms(name: str) -> AliyunSmsChannel:
    return AliyunSmsChannel.from_options(name, {"endpoint": "http://127.0.0.1:9", "sign_name": "医院",
                                                "access_key_id": "id", "access_key_secret": "secret-0001"})


@pytest.fixture
def channels():
    return {"sms": _sms("sms"), "sms-backup": _sms("sms-backup"), "wechat": h.RecordingChannel("wechat")}


@pytest.fixture
def eng(database_url, settings, clock, channels):
    with h.running_engine(database_url, settings, clock, [CARE], channels) as engine:
        yield engine


def _consents(eng) -> set[tuple[str, str, bool]]:
    with eng.db.connect() as conn:
        return {(r.purpose, r.channel, r.granted) for r in conn.execute(select(Consent.purpose, Consent.channel,
                                                                               Consent.granted))}


def _reply(clock, text: str, source: str = "hospital-app", **payload):
    return h.Events(clock, source=source)("message.replied", {"text": text, **payload})


@pytest.mark.parametrize("channel, withdrawn", [
    ("sms", {(p, c, False) for p in ("clinical", "marketing") for c in ("sms", "sms-backup")}),  # SMS: every account
    ("wechat", {("clinical", "wechat", False), ("marketing", "wechat", False)}),  # by default: that channel
    (None, {("clinical", "*", False), ("marketing", "*", False)}),  # no channel named: every channel
    ("the-hospital-app", {("clinical", "*", False), ("marketing", "*", False)}),  # not a configured channel
])
def test_an_unsubscribe_reply_from_any_integration_withdraws_what_its_channel_rule_says(eng, clock, channel,
                                                                                        withdrawn):
    payload = {"channel": channel} if channel else {}
    result = eng.ingest(_reply(clock, " 退订。", **payload))
    assert _consents(eng) == withdrawn
    assert "unsubscribe reply '退订': withdrew" in result.summary()


def test_other_replies_change_no_consent_and_td_in_a_sentence_is_not_a_request(eng, clock):
    for text in ("好的，谢谢", "TD是什么意思？", "R 收到"):
        eng.ingest(_reply(clock, text, channel="sms"))
    assert _consents(eng) == set()


def test_configured_words_replace_the_defaults(database_url, tmp_path, clock, channels):
    settings = Settings(home=tmp_path / "home", unsubscribe_words=["STOP", "不要再发了"])
    with h.running_engine(database_url, settings, clock, [CARE], channels) as eng:
        eng.ingest(_reply(clock, "TD", channel="wechat"))
        assert _consents(eng) == set()
        eng.ingest(_reply(clock, "stop", channel="wechat"))
        assert _consents(eng) == {("clinical", "wechat", False), ("marketing", "wechat", False)}


def test_the_timeline_names_the_reply_and_the_nurse_still_calls(eng, clock):
    eng.ingest(h.Events(clock)("encounter.discharged"))
    clock.advance(timedelta(days=1))
    eng.dispatch_due()  # the follow-up goes by WeChat (the SMS accounts are unreachable here)
    eng.ingest(_reply(clock, "TD", channel="wechat"))
    with eng.db.connect() as conn:
        [reply] = conn.execute(select(Event.intent, Event.outcome, Event.patient_id).where(
            Event.type == "message.replied")).all()
        timeline = timeline_data(conn, eng.cipher, reply.patient_id)
    assert reply.intent == "unsubscribe"
    [shown] = [e for e in timeline["events"] if e["type"] == "message.replied"]
    assert shown["outcome"] == "unsubscribe reply 'TD': withdrew clinical and marketing on wechat"
    clock.advance(timedelta(days=2, hours=1))
    eng.dispatch_due()
    assert [t.kind for t in h.staff_tasks(eng)] == ["call_patient"]  # "TD" is no answer to how the patient feels
