"""Property: whatever patients write, on whichever channel (working, refusing, unknown or none), every message is
stored once and ends answered (a reply was sent), routed (a task, a case or the unsubscribe rule has it) or
ignorable by a named rule. Nothing is left pending, nothing silently dropped."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st
from sqlalchemy import select

from carepath.connectors.outbox import OutboxChannel, OutboxConfig
from carepath.connectors.wechat.emulator import WechatEmulator
from carepath.definition.events import PatientIn
from carepath.store.conversation_schema import ConversationTurn
from carepath.store.schema import StaffTask

from tests.connectors.wechat_support import AES_KEY, APPID, SECRET, TOKEN, make_wechat
from tests.conversations.conftest import said
from tests.engine.helpers import RecordingChannel

FRAGMENTS = ["怎么挂号", "报告出来了吗", "谢谢", "好的", "伤口一直在渗血", "胸痛", "我要投诉", "TD", "退订", "你好",
             "我妈妈的药", "5", "１", "，", "。", "？", " ", "\n", "ok", "re:挂号", "13812345678"]
TEXTS = st.one_of(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40),
                  st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=4).map("".join))
CHANNELS = st.sampled_from(["outbox", "sms", "wechat", "unknown", None])
MESSAGES = st.lists(st.tuples(TEXTS, CHANNELS), min_size=1, max_size=6)
_patients = itertools.count(1)


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(messages=MESSAGES, recently_wrote=st.booleans())
def test_every_message_ends_answered_routed_or_ignorable(world, clock, messages, recently_wrote):
    engine, wx = world
    n = next(_patients)
    openid = f"oProperty{n:06d}"
    patient_id = engine.upsert_patient(PatientIn(mrn=f"P{n}", name="赵六", phone=f"139{n:08d}", openid=openid))
    if recently_wrote:  # the WeChat window is open for some patients, closed (45015) for others
        with wx.state.lock:
            wx.state.interactions[openid] = time.time()
    for i, (text, channel) in enumerate(messages):
        engine.ingest(said(clock, text, mrn=f"P{n}", channel=channel, n=i))
    with engine.db.connect() as conn:
        turns = conn.execute(select(ConversationTurn.__table__).where(ConversationTurn.patient_id == patient_id)
                             .order_by(ConversationTurn.id)).all()
        tasks = {t.id: t for t in conn.execute(select(StaffTask.__table__).where(StaffTask.patient_id == patient_id))}
    inbound = [t for t in turns if t.direction == "in"]
    replies = {t.reply_to: t for t in turns if t.direction == "out" and t.reply_to is not None}
    assert len(inbound) == len(messages)
    for turn in inbound:
        assert turn.status in ("answered", "routed", "ignorable"), turn
        event(f"{turn.status}: {turn.intent}")  # --hypothesis-show-statistics shows the mix covered
        assert turn.rule, turn
        if turn.status == "answered":
            assert replies[turn.id].status == "sent"
        elif turn.status == "routed":
            assert turn.task_id in tasks or turn.complaint_id is not None or turn.intent == "unsubscribe", turn
        else:
            assert turn.rule.startswith(("faq:", "ignorable_words:")) and turn.task_id is None


@pytest.fixture
def world(talk_engine):
    """One engine (and WeChat emulator) for all examples (fixtures are set up once per test): each example is a
    new patient. ``sms`` refuses some messages for good."""
    with WechatEmulator(appid=APPID, secret=SECRET, token=TOKEN, encoding_aes_key=AES_KEY) as wx:
        refusing = RecordingChannel("sms", permanent=lambda m: len(m.body) % 3 == 0)
        engine = talk_engine({"outbox": OutboxChannel("outbox", OutboxConfig(address="phone")), "sms": refusing,
                              "wechat": make_wechat(wx.url)})
        yield engine, wx
