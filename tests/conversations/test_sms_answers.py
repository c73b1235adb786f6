"""On SMS an answer goes by the channel's rules: the approved template mapped to ``conversation_answer``, through
the provider's emulator; a reply to an SMS arrives through the provider's reply push over real HTTP."""

from __future__ import annotations

from sqlalchemy import select

from carepath.connectors.aliyun_sms.channel import AliyunSmsChannel
from carepath.connectors.aliyun_sms.emulator import AliyunSmsEmulator
from carepath.definition.events import PatientIn
from carepath.store.conversation_schema import ConversationTurn

from tests.live_app import LiveApp, plugin_app

TOKEN = "hook-token-0123456789abcdef"


def test_an_sms_question_is_answered_with_the_approved_answer_template(talk_engine, clock):
    with AliyunSmsEmulator("LTAI-test-key", "aliyun-secret-0001", clock=clock.now,
                           templates={"SMS_200002": "${answer}"}) as emulator:
        channel = AliyunSmsChannel.from_options("sms", {
            "endpoint": emulator.url, "sign_name": "仁济医院", "callback_token": TOKEN, "timeout": 2,
            "access_key_id": emulator.access_key_id, "access_key_secret": emulator.access_key_secret,
            "templates": {"conversation_answer": {"code": "SMS_200002", "params": {"answer": "{{ answer }}"}}}})
        engine = talk_engine({"sms": channel})
        engine.upsert_patient(PatientIn(mrn="M1", name="李四", phone="13912345678"))
        with LiveApp(plugin_app(engine)) as live:
            status = emulator.push_reply(f"{live.url}/hooks/aliyun-sms/sms/{TOKEN}/replies", "13912345678",
                                         "报告出来了吗")
        assert status == 200
        [sent] = emulator.messages
    assert sent.template == "SMS_200002" and sent.phone.endswith("13912345678")
    assert "检查报告一般在检查后 1-3 个工作日出具" in str(sent.params)
    with engine.db.connect() as conn:
        turns = conn.execute(select(ConversationTurn.direction, ConversationTurn.status, ConversationTurn.via,
                                    ConversationTurn.rule).order_by(ConversationTurn.id)).all()
    assert [tuple(t) for t in turns] == [("in", "answered", None, "faq:report"), ("out", "sent", "channel", "faq:report")]
