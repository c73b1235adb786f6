"""Journey messages through both SMS providers, end to end over loopback HTTP: the provider emulator
checks every signature on its own, receipts and replies come back through the web hooks app."""

from __future__ import annotations

import json
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
import requests
from rich.console import Console
from sqlalchemy import select

from carepath.store.personal_data import reveal_payload
from carepath.connectors.sms_common.segments import segment_count
from carepath.definition.expressions import render
from carepath.reporting import timeline_tables
from carepath.runtime.alerts import CONNECTOR_DOWN, pending_alerts
from carepath.store.schema import Event, OutboxMessage
from carepath.teams import TeamConfig

from tests.connectors.sms_helpers import BODY, PHONE, PROVIDERS, SIGN, Provider, build, close
from tests.engine import helpers as h


@pytest.fixture(params=sorted(PROVIDERS))
def provider(request: pytest.FixtureRequest) -> Provider:
    return PROVIDERS[request.param]


@pytest.fixture
def make(provider, database_url, settings, clock):
    made = []

    def _make(**kw):
        made.append(build(provider, database_url, settings, clock, **kw))
        return made[-1]

    yield _make
    for setup in made:
        close(setup)


def test_message_reaches_the_provider_signed_with_its_segments_as_cost(make, provider: Provider) -> None:
    s = make()
    s.enroll()
    report = s.dispatch()
    assert report.sent == 1, report.outcomes
    assert s.emulator.rejected == [], "the emulator refused a signature"
    [message] = s.emulator.messages
    tp = s.touchpoint()
    assert message.reference == f"{tp.idempotency_key}:sms"  # OutId / SessionContext
    assert message.template == provider.template_code and message.sign_name == SIGN
    assert (message.params == {"name": "张"}) if provider.type_name == "aliyun-sms" else (message.params == ["张"])
    assert message.phone.endswith(PHONE)

    text = f"【{SIGN}】" + render(BODY, {"patient": type("P", (), {"surname": "张"})()})
    assert len(text) > 70 and segment_count(text) == 2
    [delivery] = s.deliveries()
    assert (delivery.status, delivery.channel, delivery.cost) == ("sent", "sms", 2)
    assert delivery.provider_id == message.provider_id

    console = Console(record=True, width=250)
    with s.engine.db.connect() as conn:
        for table in timeline_tables(conn, s.engine.cipher, tp.patient_id):
            console.print(table)
    timeline = console.export_text()
    assert "sms:sent [2 segments, cost 2]" in timeline
    assert PHONE not in timeline


def test_timeout_after_the_provider_accepted_sends_once(make) -> None:
    s = make(options={"timeout": 0.5}, hooks=True)
    s.enroll()
    s.emulator.delay = 1.5  # the provider records the message, then answers too late
    report = s.dispatch()
    assert report.sent == 1, report.outcomes  # the lookup found it: no retry needed
    assert len(s.emulator.messages) == 1
    [delivery] = s.deliveries()
    assert delivery.status == "sent"
    # a retry of the same message (same idempotency key) never reaches the provider again
    message = s.emulator.messages[0]
    s.emulator.delay = 0
    from carepath.plugins.contracts import Message

    again = s.channel.send(Message(idempotency_key=message.reference, channel="sms", patient_id=1, address=PHONE,
                                   title="", body="x", template="sms_followup", category="clinical",
                                   context={"patient": {"surname": "张"}}))
    assert again.ok and len(s.emulator.messages) == 1
    # the receipt still finds the message found by lookup
    assert s.emulator.push_receipts(s.hook_url("receipts")) == 200
    assert s.touchpoint().status == "delivered"


def test_blacklisted_number_withdraws_sms_consent_and_the_step_falls_back(make, provider: Provider) -> None:
    s = make()
    s.emulator.block(PHONE)
    s.enroll()
    report = s.dispatch()
    assert report.sent == 1, report.outcomes
    tp = s.touchpoint()
    assert tp.channel == "outbox" and "fallback" in tp.reason
    [refused, fallback] = s.deliveries()
    assert (refused.channel, refused.status, refused.error_kind, refused.error_code) == \
        ("sms", "failed", "permanent", provider.blacklist_code)
    assert fallback.channel == "outbox" and fallback.status == "sent"
    withdrawn = {(c.purpose, c.channel, c.granted) for c in s.consents()}
    assert withdrawn == {("clinical", "sms", False), ("marketing", "sms", False)}
    assert s.emulator.messages == []


def test_receipt_marks_delivery_once_and_is_acknowledged_as_the_provider_expects(make, provider: Provider) -> None:
    s = make(hooks=True)
    s.enroll()
    s.dispatch()
    url = s.hook_url("receipts")
    # a wrong token changes nothing
    s.emulator.messages[0].delivered = True
    body = json.dumps(s.emulator.receipt_body(s.emulator.messages), ensure_ascii=False).encode()
    forged = requests.post(s.hook_url("receipts", token="x" * len("hook-token-0123456789abcdef")), data=body,
                           timeout=10)
    assert forged.status_code == 401
    assert s.deliveries()[0].status == "sent"
    answer = requests.post(url, data=body, timeout=10)
    assert answer.status_code == 200
    expected = {"aliyun-sms": {"code": 0, "msg": "接收成功"}, "tencent-sms": {"result": 0, "errmsg": "OK"}}
    assert answer.json() == expected[provider.type_name]
    assert requests.post(url, data=body, timeout=10).status_code == 200  # pushed again: deduplicated
    [delivery] = s.deliveries()
    assert delivery.status == "delivered" and s.touchpoint().status == "delivered"
    receipts = s.rows(Event, type="message.delivered")
    assert len(receipts) == 1 and receipts[0].patient_id == s.touchpoint().patient_id
    # a malformed push is refused, nothing applied; the body is kept (masked) for operators
    assert requests.post(url, data=b"{not json", timeout=10).status_code == 400
    assert [(e.type, e.status) for e in s.rows(Event)][2:] == [("inbound.rejected", "refused")]
    assert len([e for e in s.rows(Event) if e.type != "inbound.rejected"]) == 2  # the discharge and the receipt


def test_td_reply_unsubscribes_and_other_replies_are_events(make) -> None:
    s = make(hooks=True)
    s.enroll()
    assert s.emulator.push_reply(s.hook_url("replies"), PHONE, "好的，谢谢") == 200
    [replied] = s.rows(Event, type="message.replied")
    assert reveal_payload(replied.payload, s.engine.cipher)["text"] == "好的，谢谢"  # stored encrypted (issue 21)
    assert replied.patient_id is not None
    assert s.consents() == []
    assert s.emulator.push_reply(s.hook_url("replies"), PHONE, " td ") == 200
    assert {(c.purpose, c.channel, c.granted) for c in s.consents()} == \
        {("clinical", "sms", False), ("marketing", "sms", False)}
    # the journey's message now goes by the next channel, and SMS sends nothing
    assert s.dispatch().sent == 1
    assert s.touchpoint().channel == "outbox" and s.emulator.messages == []


def test_step_whose_channels_all_fail_opens_a_staff_task(make) -> None:
    s = make(via=["sms"], team="cardiology")
    s.emulator.block(PHONE)
    s.enroll()
    report = s.dispatch()
    assert report.outcomes["failed"] == 1
    [task] = s.tasks()
    assert (task.kind, task.team) == ("contact_patient", "cardiology")
    assert task.detail.startswith("Call the patient: message 'sms_followup'")
    assert "张先生/女士您好，您已出院" in task.detail  # the message text
    assert task.detail.splitlines()[-1] in ("Why: sms: isv.BLACK_KEY_CONTROL_LIMIT",  # the provider's own code
                                            "Why: sms: FailedOperation.PhoneNumberInBlacklist")


def test_unconfirmed_message_falls_back_then_ends_with_a_call_task(make) -> None:
    from carepath.runtime.fallback import unconfirmed_fallback

    s = make(via=["sms"], confirm_within="2h", team="cardiology")
    # a ward team that works every morning, public holidays too (1 May, the test's day, is Labour Day)
    s.engine.config.teams["cardiology"] = TeamConfig(escalation=["nurse", "head_nurse"], first_response="30m",
                                                     working_hours="08:00-13:00", calendar="none")
    s.enroll()
    assert s.dispatch().sent == 1
    s.clock.advance(timedelta(hours=1))
    assert unconfirmed_fallback(s.engine) == 0  # still within its window
    s.clock.advance(timedelta(hours=1, minutes=1))
    assert unconfirmed_fallback(s.engine) == 1
    assert unconfirmed_fallback(s.engine) == 0  # once only
    [task] = s.tasks()
    assert (task.kind, task.team, task.status) == ("call_patient", "cardiology", "open")
    # the team's queue rules apply: its first role, a time to claim, and 4 working hours to resolve
    opened = s.clock.now()
    assert opened.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%H:%M") == "12:02"
    assert (task.assigned_role, task.escalation_level) == ("nurse", 0)
    assert task.first_response_due_at == opened + timedelta(minutes=30)
    assert task.sla_due_at == opened + timedelta(hours=23), "58 min before 13:00, the rest from 08:00 the next day"
    assert "张先生/女士您好，您已出院" in task.detail  # the message text
    assert "sms attempt 1: sent" in task.detail and s.emulator.messages[0].provider_id in task.detail
    assert s.touchpoint().status == "failed"


def test_unconfirmed_message_falls_back_to_the_next_channel(make) -> None:
    from carepath.runtime.fallback import unconfirmed_fallback

    s = make(via=["sms", "outbox"], confirm_within="30m")
    s.enroll()
    assert s.dispatch().sent == 1
    s.clock.advance(timedelta(minutes=31))
    assert unconfirmed_fallback(s.engine) == 1
    assert s.engine.dispatch_due().sent == 1
    tp = s.touchpoint()
    assert tp.channel == "outbox" and tp.status == "sent"
    with s.engine.db.connect() as conn:
        assert conn.execute(select(OutboxMessage.body)).scalar().startswith("张先生/女士")
    assert len(s.emulator.messages) == 1 and s.tasks() == []


def test_delivered_message_does_not_fall_back(make) -> None:
    from carepath.runtime.fallback import unconfirmed_fallback

    s = make(via=["sms", "outbox"], confirm_within="30m", hooks=True)
    s.enroll()
    s.dispatch()
    assert s.emulator.push_receipts(s.hook_url("receipts")) == 200
    s.clock.advance(timedelta(hours=2))
    assert unconfirmed_fallback(s.engine) == 0
    assert s.touchpoint().status == "delivered"


def test_account_problem_raises_one_alert_and_holds_messages(make, provider: Provider) -> None:
    s = make(via=["sms"])
    s.emulator.account_error = provider.account_code
    for mrn, phone in (("M1", PHONE), ("M2", "13900000002")):
        s.enroll(mrn, phone)
    report = s.dispatch()
    assert report.outcomes["retry"] == 2 and report.outcomes["failed"] == 0
    calls = s.emulator.calls["SendSms"]
    assert calls == 1, "the second message was held, not sent into a dead account"
    [alert] = pending_alerts(s.engine)
    assert (alert.kind, alert.source, alert.code) == (CONNECTOR_DOWN, f"{provider.type_name}:sms",
                                                      provider.account_code)
    assert s.tasks() == []
    for _ in range(8):  # a long outage: past max_attempts, the messages wait; nobody is failed one by one
        s.clock.advance(timedelta(hours=1))
        s.dispatch()
    assert [t.status for t in h.touchpoints(s.engine)] == ["scheduled", "scheduled"]
    alerts = pending_alerts(s.engine)
    assert s.tasks() == [] and len(alerts) <= 9  # at most one a hold period (30 min), not one a patient
    assert {(a.source, a.code) for a in alerts} == {(f"{provider.type_name}:sms", provider.account_code)}
    s.emulator.account_error = None  # the hospital tops up the account
    s.clock.advance(timedelta(hours=2))  # past the last back-off (at most an hour and a fifth) …
    s.dispatch()
    s.clock.advance(timedelta(hours=4))  # and past the night's quiet hours
    s.dispatch()
    assert sorted(t.status for t in h.touchpoints(s.engine)) == ["sent", "sent"]


def test_rate_limited_number_rests_before_the_next_try(make, provider: Provider) -> None:
    s = make(via=["sms"], emulator_options={"daily_limit": 0})
    s.enroll()
    report = s.dispatch()
    assert report.outcomes["retry"] == 1
    [delivery] = s.deliveries()
    assert (delivery.error_kind, delivery.error_code) == ("retryable", provider.rate_limit_code)
    calls, rows = s.emulator.calls["SendSms"], len(s.deliveries())
    assert s.touchpoint().due_at >= s.clock.now() + timedelta(minutes=9)  # the dispatcher waits the number's rest
    s.clock.advance(timedelta(minutes=5))  # the usual back-off is over, the number's rest is not
    s.engine.dispatch_due()
    assert s.emulator.calls["SendSms"] == calls and len(s.deliveries()) == rows


def test_wrong_secret_is_refused_by_the_emulator_with_the_providers_error(make, provider: Provider) -> None:
    secret = "access_key_secret" if provider.type_name == "aliyun-sms" else "secret_key"
    s = make(via=["sms"], options={secret: "not-the-right-secret"})
    s.enroll()
    s.dispatch()
    assert s.emulator.rejected == [provider.bad_signature_code]
    assert s.emulator.messages == []
    assert s.deliveries()[0].error_code == provider.bad_signature_code


def test_failure_receipt_falls_back_without_waiting_for_the_window(make) -> None:
    from carepath.runtime.fallback import unconfirmed_fallback

    s = make(via=["sms", "outbox"], confirm_within="6h", hooks=True)
    s.enroll()
    s.dispatch()
    assert s.emulator.push_receipts(s.hook_url("receipts"), delivered=False) == 200
    assert s.touchpoint().status == "failed"
    assert unconfirmed_fallback(s.engine) == 1
    assert s.engine.dispatch_due().sent == 1
    tp = s.touchpoint()
    assert (tp.channel, tp.status) == ("outbox", "sent") and "a failure receipt" in tp.reason
