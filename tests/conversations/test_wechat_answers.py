"""Done-when of issue 21 on WeChat: signed Official Account callbacks through uvicorn, answers through the
emulator's customer-service API, the 48-hour window respected on both sides."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from carepath.connectors.outbox import OutboxChannel, OutboxConfig
from carepath.connectors.wechat.emulator import WechatEmulator
from carepath.connectors.wechat.pushes import text_message
from carepath.runtime import managers
from carepath.store.conversation_schema import ConversationTurn
from carepath.store.schema import StaffTask

from tests.connectors.wechat_support import (AES_KEY, APPID, OPENID, PATIENT, SECRET, TOKEN, VISIT_MAP, make_wechat,
                                           serve_hooks)
from tests.conversations.conftest import said

ANSWER_MAP = {"template_id": "TPL-answer-0001", "data": {"first": "{{ answer }}", "keyword1": "{{ patient.name }}"}}


@pytest.fixture
def wx():
    with WechatEmulator(appid=APPID, secret=SECRET, token=TOKEN, encoding_aes_key=AES_KEY) as emulator:
        yield emulator


@pytest.fixture
def wechat_talk(talk_engine, wx):
    def _make(**conversations):
        wechat = make_wechat(wx.url, templates={"visit_reminder": VISIT_MAP, "conversation_answer": ANSWER_MAP})
        engine = talk_engine({"wechat": wechat, "outbox": OutboxChannel("outbox", OutboxConfig(address="phone"))},
                             **conversations)
        engine.upsert_patient(PATIENT)
        return engine
    return _make


def _turns(engine, direction):
    with engine.db.connect() as conn:
        return conn.execute(select(ConversationTurn.__table__).where(ConversationTurn.direction == direction)
                            .order_by(ConversationTurn.id)).all()


def _tasks(engine):
    with engine.db.connect() as conn:
        return conn.execute(select(StaffTask.__table__).order_by(StaffTask.id)).all()


def test_booking_question_is_answered_through_the_customer_service_api_before_the_callback_returns(wechat_talk, wx):
    engine = wechat_talk()
    with serve_hooks(engine) as base:
        answer = wx.push(f"{base}/hooks/wechat/wechat", text_message(OPENID, "怎么挂号"))
        # no waiting: the answer went out while WeChat's callback was being handled
        custom = wx.custom_sent
    assert (answer.status_code, answer.text) == (200, "success")
    [sent] = custom
    assert sent["touser"] == OPENID and sent["msgtype"] == "text"
    assert sent["text"]["content"] == "张三您好，挂号请点公众号菜单「就医服务 → 预约挂号」，或拨打 0571-88888888。"
    [turn] = _turns(engine, "in")
    [reply] = _turns(engine, "out")
    assert (turn.status, turn.rule, turn.channel) == ("answered", "faq:booking", "wechat")
    assert (reply.status, reply.via) == ("sent", "customer_service")
    assert wx.sent == []  # no template message was needed


def test_wound_bleeding_opens_an_urgent_task_and_gets_the_holding_reply(wechat_talk, wx):
    engine = wechat_talk(emergency_advice="请按压伤口止血，护士马上联系您；出血不止请立即拨打120。")
    with serve_hooks(engine) as base:
        wx.push(f"{base}/hooks/wechat/wechat", text_message(OPENID, "伤口一直在渗血"))
    [task] = _tasks(engine)
    assert (task.kind, task.priority, task.team, task.status) == ("red_flag_message", "urgent", "nursing", "open")
    assert task.sla_due_at is not None
    assert [m["text"]["content"] for m in wx.custom_sent] == ["请按压伤口止血，护士马上联系您；出血不止请立即拨打120。"]
    assert _turns(engine, "in")[0].status == "routed"


def test_a_question_about_mothers_medicine_opens_a_task_for_the_health_manager(wechat_talk, wx):
    engine = wechat_talk()
    managers.assign(engine, 1, "wang-li", source="wecom")
    with serve_hooks(engine) as base:
        wx.push(f"{base}/hooks/wechat/wechat", text_message(OPENID, "你好我想问下我妈妈的药"))
    [task] = _tasks(engine)
    assert (task.kind, task.owner, task.team) == ("patient_message", "wang-li", "health_management")
    assert wx.custom_sent == []


def test_an_answer_outside_48_hours_is_not_attempted_as_a_customer_service_message(wechat_talk, wx, clock):
    engine = wechat_talk()
    engine.ingest(said(clock, "怎么挂号", channel="wechat", at=clock.now() - timedelta(hours=49)))
    assert wx.custom_sent == [] and wx.state.rejected_calls == []  # never tried: no 45015 from WeChat either
    [template] = wx.sent  # the channel's own rule: the mapped template message
    assert template.body["template_id"] == "TPL-answer-0001" and template.data["first"].startswith("张三您好")
    [reply] = _turns(engine, "out")
    assert (reply.status, reply.via) == ("sent", "channel")


def test_outside_the_window_without_an_answer_template_the_health_manager_answers(talk_engine, wx, clock):
    engine = talk_engine({"wechat": make_wechat(wx.url)})
    engine.upsert_patient(PATIENT)
    engine.ingest(said(clock, "怎么挂号", channel="wechat", at=clock.now() - timedelta(hours=49)))
    assert wx.custom_sent == [] and wx.sent == []
    [task] = _tasks(engine)
    assert task.kind == "answer_undelivered" and "unmapped_template" in task.detail
    assert _turns(engine, "in")[0].status == "routed"


def test_the_emulator_refuses_customer_service_messages_after_48_hours(wechat_talk, wx):
    engine = wechat_talk()
    channel = engine.channels["wechat"]
    assert channel.send_customer_service(OPENID, "您好").error_code == "45015"  # the patient never wrote
    with serve_hooks(engine) as base:
        wx.push(f"{base}/hooks/wechat/wechat", text_message(OPENID, "谢谢"))  # ignorable: nothing sent back
    assert channel.send_customer_service(OPENID, "您好").ok
    wx.age_interaction(OPENID, 48 * 3600 + 60)
    refused = channel.send_customer_service(OPENID, "您好")
    assert (refused.ok, refused.error_code) == (False, "45015") and "48-hour" in refused.error
    assert [m["text"]["content"] for m in wx.custom_sent] == ["您好"]


def test_the_emulators_customer_service_api_speaks_to_wechatpy_within_48_hours(wechat_talk, wx):
    from wechatpy import WeChatClient
    from wechatpy.exceptions import WeChatClientException

    class EmulatedClient(WeChatClient):  # the SDK hard-codes the token URL's host
        def fetch_access_token(self):  # noqa: ANN202
            return self._fetch_access_token(url=self.API_BASE_URL + "token", params={
                "grant_type": "client_credential", "appid": self.appid, "secret": self.secret})

    client = EmulatedClient(APPID, SECRET)
    client.API_BASE_URL = wx.url + "/cgi-bin/"
    with pytest.raises(WeChatClientException) as refused:
        client.message.send_text(OPENID, "您好")
    assert refused.value.errcode == 45015  # the patient has not written
    engine = wechat_talk()
    with serve_hooks(engine) as base:
        wx.push(f"{base}/hooks/wechat/wechat", text_message(OPENID, "报告出来了吗"))
    assert client.message.send_text(OPENID, "护士稍后联系您")["errcode"] == 0
    assert [m["text"]["content"] for m in wx.custom_sent] == [
        "检查报告一般在检查后 1-3 个工作日出具，可在公众号「报告查询」查看。", "护士稍后联系您"]
