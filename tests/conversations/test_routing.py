"""The intent step on the engine: every inbound text ends answered, routed or ignorable, and says by which rule."""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from carepath.definition.events import PatientIn
from carepath.plugins.hookspecs import hookimpl
from carepath.runtime import managers
from carepath.runtime.conversations.faq import FaqSet
from carepath.runtime.conversations.intents import Outcome, register_intent, unregister_intent
from carepath.runtime.conversations.routing import route_pending
from carepath.store.conversation_schema import ConversationTurn
from carepath.store.schema import OutboxMessage, StaffTask

from tests.conversations.conftest import said

PATIENT = PatientIn(mrn="M1", name="李四", phone="13912345678")


def _turns(engine, direction="in"):
    with engine.db.connect() as conn:
        return conn.execute(select(ConversationTurn.__table__).where(ConversationTurn.direction == direction)
                            .order_by(ConversationTurn.id)).all()


def _tasks(engine):
    with engine.db.connect() as conn:
        return conn.execute(select(StaffTask.__table__).order_by(StaffTask.id)).all()


def _outbox(engine):
    with engine.db.connect() as conn:
        return [r.body for r in conn.execute(select(OutboxMessage.__table__).order_by(OutboxMessage.id))]


def test_an_faq_question_is_answered_with_the_entry_rendered_for_the_patient(talk_engine, clock):
    engine = talk_engine()
    engine.upsert_patient(PATIENT)
    engine.ingest(said(clock, "请问怎么挂号？"))
    [turn] = _turns(engine)
    assert (turn.status, turn.intent, turn.rule) == ("answered", "faq", "faq:booking")
    [answer] = _outbox(engine)
    assert answer.startswith("李四您好，挂号请点公众号菜单")
    [reply] = _turns(engine, "out")
    assert (reply.status, reply.via, reply.reply_to) == ("sent", "channel", turn.id)
    assert _tasks(engine) == []


def test_a_red_flag_opens_an_urgent_care_team_task_with_its_sla_and_sends_the_holding_reply(talk_engine, clock):
    engine = talk_engine(emergency_advice="请立即拨打120或到急诊就诊，护士马上联系您。")
    engine.upsert_patient(PATIENT)
    engine.ingest(said(clock, "护士你好，伤口一直在渗血怎么办"))
    [turn] = _turns(engine)
    [task] = _tasks(engine)
    assert (turn.status, turn.intent, turn.task_id) == ("routed", "red_flag", task.id)
    assert turn.rule == "red_flag:渗血"
    assert (task.kind, task.team, task.priority, task.turn_id) == ("red_flag_message", "nursing", "urgent", turn.id)
    assert task.sla_due_at == clock.now() + timedelta(minutes=30)
    assert _outbox(engine) == ["请立即拨打120或到急诊就诊，护士马上联系您。"]


def test_a_red_flag_wins_over_a_courtesy_or_an_faq_word_in_the_same_message(talk_engine, clock):
    engine = talk_engine()
    engine.upsert_patient(PATIENT)
    engine.ingest(said(clock, "谢谢，另外我胸痛得厉害，想挂号"))
    [turn] = _turns(engine)
    assert (turn.intent, turn.rule) == ("red_flag", "red_flag:胸痛")


def test_an_unrecognised_message_is_a_task_for_the_patients_health_manager(talk_engine, clock):
    engine = talk_engine()
    patient_id = engine.upsert_patient(PATIENT)
    managers.assign(engine, patient_id, "wang-li", source="cli")
    engine.ingest(said(clock, "你好", n=1))
    engine.ingest(said(clock, "你好我想问下我妈妈的药", n=2))
    turns = _turns(engine)
    assert [t.status for t in turns] == ["routed", "routed"]
    task = _tasks(engine)[-1]
    assert (task.kind, task.owner, task.team, task.turn_id) == ("patient_message", "wang-li", "health_management",
                                                                turns[-1].id)
    assert task.sla_due_at == clock.now() + timedelta(days=1)
    assert f"carepath conversations show {patient_id}" in task.detail
    assert _outbox(engine) == []  # nobody guesses an answer about medicines


def test_without_an_assigned_manager_the_configured_default_owns_the_task(talk_engine, clock):
    engine = talk_engine(default_manager="wang-li")
    engine.upsert_patient(PATIENT)
    engine.ingest(said(clock, "我想问下我妈妈的药"))
    assert _tasks(engine)[0].owner == "wang-li"


def test_only_configured_staff_can_be_health_managers(talk_engine, clock):
    engine = talk_engine()
    patient_id = engine.upsert_patient(PATIENT)
    with pytest.raises(managers.ManagerError, match="'nobody' is not a configured staff member"):
        managers.assign(engine, patient_id, "nobody")
    assert managers.assign(engine, patient_id, "wang-li") is True
    assert managers.assign(engine, patient_id, "wang-li") is False
    with engine.db.connect() as conn:
        assert managers.manager_of(conn, engine, patient_id) == "wang-li"


def test_thanks_alone_is_ignorable_by_its_rule_but_not_inside_a_question(talk_engine, clock):
    engine = talk_engine()
    engine.upsert_patient(PATIENT)
    engine.ingest(said(clock, "谢谢！", n=1))
    engine.ingest(said(clock, "谢谢，我想问下复查要空腹吗", n=2))
    first, second = _turns(engine)
    assert (first.status, first.rule) == ("ignorable", "faq:thanks")
    assert second.status == "routed" and second.intent == "unrecognised"
    assert len(_tasks(engine)) == 1 and _outbox(engine) == []


def test_an_unsubscribe_reply_is_routed_to_the_one_unsubscribe_rule(talk_engine, clock):
    engine = talk_engine()
    engine.upsert_patient(PATIENT)
    engine.ingest(said(clock, "TD"))
    [turn] = _turns(engine)
    assert (turn.status, turn.intent) == ("routed", "unsubscribe")
    assert _tasks(engine) == []


def test_a_complaint_message_opens_a_case_and_is_told_it_was_received(talk_engine, clock):
    engine = talk_engine()
    engine.upsert_patient(PATIENT)
    engine.ingest(said(clock, "我要投诉挂号窗口的工作人员"))
    [turn] = _turns(engine)
    assert (turn.status, turn.intent) == ("routed", "complaint") and turn.complaint_id is not None
    assert [t.kind for t in _tasks(engine)] == ["complaint_case"]
    assert "已收到" in _outbox(engine)[0]


def test_the_text_is_encrypted_at_rest_and_masked_when_shown(talk_engine, clock):
    engine = talk_engine()
    engine.upsert_patient(PATIENT)
    engine.ingest(said(clock, "我妈妈电话13812345678，她的药吃完了"))
    with engine.db.connect() as conn:
        stored = conn.execute(text("SELECT text_enc FROM conversation_turns WHERE direction = 'in'")).scalar()
        from carepath.runtime.conversations.turns import conversation

        [turn] = conversation(conn, engine.cipher, 1)
    assert "药" not in stored and "13812345678" not in stored
    assert turn.shown() == "我妈妈电话138****5678，她的药吃完了"


def test_a_handler_registered_before_faq_takes_the_turns_it_recognises(talk_engine, clock):
    engine = talk_engine()
    engine.upsert_patient(PATIENT)
    seen = []

    def diet(ctx):  # a hospital's own handler (not the built-in checkin one, which must stay registered)
        seen.append(ctx.turn.text)
        if "饮食" in ctx.turn.text:
            return Outcome("answered", "diet", "diet:question", reply="营养师会在工作时间回复您。")
        return None

    register_intent("diet", diet, before="faq")
    try:
        engine.ingest(said(clock, "糖尿病饮食要注意什么", n=1))
        engine.ingest(said(clock, "怎么挂号", n=2))
    finally:
        unregister_intent("diet")
    first, second = _turns(engine)
    assert (first.intent, first.rule) == ("diet", "diet:question")
    assert second.rule == "faq:booking" and seen == ["糖尿病饮食要注意什么", "怎么挂号"]
    with pytest.raises(ValueError, match="no intent handler 'nothing'"):
        register_intent("x", diet, before="nothing")


def test_a_failing_handler_does_not_lose_the_message_nor_keep_what_it_wrote(talk_engine, clock):
    engine = talk_engine()
    patient_id = engine.upsert_patient(PATIENT)

    def broken(ctx):
        ctx.conn.execute(text("UPDATE patients SET language = 'xx' WHERE id = :p"), {"p": patient_id})
        raise RuntimeError("bug")

    register_intent("broken", broken, before="unsubscribe")
    try:
        engine.ingest(said(clock, "怎么挂号"))
    finally:
        unregister_intent("broken")
    assert _turns(engine)[0].status == "answered"
    with engine.db.connect() as conn:
        assert conn.execute(text("SELECT language FROM patients WHERE id = :p"), {"p": patient_id}).scalar() != "xx"


class _Classifier:
    def __init__(self, answer, delay=0.0):
        self.answer, self.delay, self.calls = answer, delay, []

    @hookimpl
    def carepath_classify_message(self, text, channel, history, faq):
        self.calls.append((text, channel, [h["text"] for h in history], [e["id"] for e in faq]))
        time.sleep(self.delay)
        return self.answer


@pytest.fixture
def classifier(talk_engine):
    registered = []

    def _plug(engine, plugin):
        engine.plugins.pm.register(plugin, name=f"test-classifier-{len(registered)}")
        registered.append((engine, plugin))
        return plugin

    yield _plug
    for engine, plugin in registered:
        engine.plugins.pm.unregister(plugin)


def test_a_classifier_plugin_decides_with_the_conversation_so_far(talk_engine, clock, classifier):
    engine = talk_engine()
    engine.upsert_patient(PATIENT)
    plugin = classifier(engine, _Classifier({"intent": "faq", "faq": "report"}))
    engine.ingest(said(clock, "早上好", n=1))
    engine.ingest(said(clock, "我那个片子的结果啥时候能拿", n=2))
    turn = _turns(engine)[-1]
    assert (turn.status, turn.rule) == ("answered", "plugin:faq:report")
    # the plugin sees the conversation so far: the first message and the answer it got
    assert plugin.calls[-1][0] == "我那个片子的结果啥时候能拿"
    assert plugin.calls[-1][2] == ["早上好", "检查报告一般在检查后 1-3 个工作日出具，可在公众号「报告查询」查看。"]
    assert "booking" in plugin.calls[-1][3]


def test_a_slow_or_unusable_classifier_falls_back_to_the_faq_matcher(talk_engine, clock, classifier):
    engine = talk_engine(classifier_timeout=0.2)
    engine.upsert_patient(PATIENT)
    classifier(engine, _Classifier({"intent": "unrecognised"}, delay=2.0))
    engine.ingest(said(clock, "怎么挂号", n=1))
    assert _turns(engine)[-1].rule == "faq:booking"


def test_a_classifier_naming_no_faq_entry_falls_back_and_the_task_says_why(talk_engine, clock, classifier):
    engine = talk_engine()
    engine.upsert_patient(PATIENT)
    classifier(engine, _Classifier({"intent": "faq", "faq": "made-up"}))
    engine.ingest(said(clock, "我妈妈的药"))
    [task] = _tasks(engine)
    assert "named FAQ entry 'made-up'" in task.detail


def test_turns_left_pending_by_a_crash_are_routed_by_the_maintenance_sweep(talk_engine, clock):
    engine = talk_engine()
    engine.upsert_patient(PATIENT)
    from carepath.definition.events import check_event

    engine.ingestor.ingest(check_event(said(clock, "怎么挂号"), engine.settings.event_limits()), None)
    assert _turns(engine)[0].status == "pending"  # ingest committed, the worker died before routing
    assert route_pending(engine) == 1
    assert _turns(engine)[0].status == "answered"
    assert route_pending(engine) == 0 and len(_outbox(engine)) == 1  # answered once


def test_a_message_on_an_unknown_channel_is_answered_where_the_patient_can_be_reached(talk_engine, clock):
    engine = talk_engine()
    engine.upsert_patient(PATIENT)
    engine.ingest(said(clock, "怎么挂号", channel=None, n=1))  # POST /events naming no channel
    engine.ingest(said(clock, "报告出来了吗", channel="retired-sms", n=2))
    assert [t.status for t in _turns(engine)] == ["answered", "answered"]
    assert [(r.channel, r.status) for r in _turns(engine, "out")] == [("outbox", "sent"), ("outbox", "sent")]


def test_an_answer_that_cannot_be_sent_goes_to_the_health_manager(talk_engine, clock):
    engine = talk_engine()
    engine.upsert_patient(PatientIn(mrn="M1", name="李四"))  # no phone: the outbox (phone) cannot reach them
    engine.ingest(said(clock, "怎么挂号", channel="gone"))
    [turn] = _turns(engine)
    [reply] = _turns(engine, "out")
    [task] = _tasks(engine)
    assert (reply.status, reply.error.split(":")[0]) == ("failed", "no_channel")
    assert (turn.status, turn.task_id, task.kind) == ("routed", task.id, "answer_undelivered")


def test_the_replied_event_keeps_the_text_encrypted_too(talk_engine, clock):
    engine = talk_engine()
    engine.upsert_patient(PATIENT)
    engine.ingest(said(clock, "我妈妈的药吃完了"))
    with engine.db.connect() as conn:
        stored = conn.execute(text("SELECT payload FROM events WHERE type = 'message.replied'")).scalar()
    assert "药" not in str(stored) and "outbox" in str(stored)


def test_a_message_that_waited_for_its_patient_is_routed_when_the_patient_is_registered(talk_engine, clock):
    engine = talk_engine()
    engine.ingest(said(clock, "怎么挂号"))  # from POST /events, before the HIS registered the patient
    assert _turns(engine) == []
    engine.upsert_patient(PATIENT)
    [turn] = _turns(engine)
    assert (turn.status, turn.rule) == ("answered", "faq:booking") and len(_outbox(engine)) == 1


def test_without_any_faq_a_plain_acknowledgement_is_ignorable_by_the_built_in_words(talk_engine, clock):
    engine = talk_engine(ignorable_words=["好的", "收到"])
    engine.config = dataclasses.replace(engine.config, faq=FaqSet())  # a hospital that wrote no FAQ yet
    engine.upsert_patient(PATIENT)
    engine.ingest(said(clock, "好的。", n=1))
    engine.ingest(said(clock, "谢谢", n=2))  # not in this hospital's list, and no FAQ: a person reads it
    first, second = _turns(engine)
    assert (first.status, first.rule) == ("ignorable", "ignorable_words:好的")
    assert second.status == "routed" and len(_tasks(engine)) == 1
