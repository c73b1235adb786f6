"""The built-in intent handlers, registered in their order (see :mod:`carepath.runtime.conversations.intents`)."""

from __future__ import annotations

import re

from carepath.runtime.conversations.classify import COMPLAINT, FAQ, IGNORABLE
from carepath.runtime.conversations.intents import Outcome, TurnContext, register_intent
from carepath.runtime.conversations.tasks import manager_task, open_turn_task
from carepath.runtime.unsubscribe import UNSUBSCRIBE, normalized

RECEIVED_COMPLAINT = "您的意见我们已收到，工作人员会在24小时内联系您。"
THANKS_FOR_RATING = "感谢您的评价！"


def red_flag_word(text: str, words: list[str]) -> str | None:
    """The first red-flag word (or ``re:`` pattern) found in ``text``, or None."""
    said = normalized(text)
    for word in words:
        if word.startswith("re:"):
            if re.search(word[3:], said):
                return word
        elif normalized(word) and normalized(word) in said:
            return word
    return None


def unsubscribe(ctx: TurnContext) -> Outcome | None:
    """The reply withdrew consent at ingest (:mod:`carepath.runtime.unsubscribe`, the one place for it)."""
    if ctx.event_intent != UNSUBSCRIBE:
        return None
    return Outcome("routed", UNSUBSCRIBE, "unsubscribe")


def checkin(ctx: TurnContext) -> Outcome | None:
    """The reply answered a check-in prompt and was recorded at ingest (:func:`carepath.runtime.checkins.record_reply`)."""
    from carepath.runtime.checkins import CHECKIN_INTENT

    if ctx.event_intent != CHECKIN_INTENT:
        return None
    return Outcome("routed", CHECKIN_INTENT, "checkin:recorded")


def red_flag(ctx: TurnContext) -> Outcome | None:
    """Alarming words: an urgent task for the care team (with its SLA) and the hospital's emergency advice at once."""
    settings = ctx.engine.config.conversations
    word = red_flag_word(ctx.turn.text, settings.red_flag_words)
    if word is None:
        return None
    from carepath.runtime.managers import manager_of

    task_id = open_turn_task(ctx.conn, ctx.engine, patient_id=ctx.turn.patient_id, turn_id=ctx.turn.id,
                             kind="red_flag_message", team=settings.care_team, sla=settings.red_flag_sla,
                             priority="urgent", owner=manager_of(ctx.conn, ctx.engine, ctx.turn.patient_id),
                             detail=f"red-flag message (matched {word!r}, turn {ctx.turn.id}): call the patient now. "
                                    f"Conversation: carepath conversations show {ctx.turn.patient_id}", now=ctx.now)
    return Outcome("routed", "red_flag", f"red_flag:{word}", reply=settings.emergency_advice, task_id=task_id)


def satisfaction(ctx: TurnContext) -> Outcome | None:
    """A 1-5 reply while a resolved complaint waits for its satisfaction answer."""
    said = normalized(ctx.turn.text).translate(str.maketrans("１２３４５", "12345"))
    if said not in ("1", "2", "3", "4", "5"):
        return None
    from carepath.runtime.complaints import record_satisfaction

    case_id = record_satisfaction(ctx.conn, ctx.turn.patient_id, int(said), ctx.now)
    if case_id is None:
        return None
    return Outcome("answered", "satisfaction", f"complaint:{case_id}:satisfaction", reply=THANKS_FOR_RATING,
                   complaint_id=case_id)


def complaint(ctx: TurnContext) -> Outcome | None:
    """A complaint: a case with its deadlines (carepath.runtime.complaints), and word that it was received."""
    if ctx.classification.intent != COMPLAINT:
        return None
    from carepath.runtime.complaints import open_case

    case_id = open_case(ctx.conn, ctx.engine, ctx.turn.patient_id, source="message", source_ref=f"turn:{ctx.turn.id}",
                        summary=ctx.turn.text, now=ctx.now)
    return Outcome("routed", COMPLAINT, ctx.classification.rule, reply=RECEIVED_COMPLAINT, complaint_id=case_id)


def faq(ctx: TurnContext) -> Outcome | None:
    """An FAQ answer, rendered for the patient."""
    found = ctx.classification.faq
    if ctx.classification.intent != FAQ or found is None:
        return None
    answer = found.answer({"patient": {"name": ctx.patient_name or ""}})
    return Outcome("answered", FAQ, ctx.classification.rule, reply=answer)


def ignorable(ctx: TurnContext) -> Outcome | None:
    """A message a rule says needs nothing ("谢谢"): an FAQ ``ignore`` entry, or the whole message is one of
    ``[conversations] ignorable_words``; recorded with that rule."""
    if ctx.classification.intent == IGNORABLE:
        return Outcome("ignorable", IGNORABLE, ctx.classification.rule)
    said = normalized(ctx.turn.text)
    word = next((w for w in ctx.engine.config.conversations.ignorable_words if said and normalized(w) == said), None)
    return Outcome("ignorable", IGNORABLE, f"ignorable_words:{word}") if word is not None else None


def fallback(ctx: TurnContext) -> Outcome:
    """Nobody took the turn: a task for the patient's health manager with the message and the conversation."""
    why = "patient message carepath could not answer"
    if ctx.classification.note:
        why += f" ({ctx.classification.note})"
    task_id = manager_task(ctx.conn, ctx.engine, patient_id=ctx.turn.patient_id, turn_id=ctx.turn.id,
                           kind="patient_message", why=why, now=ctx.now)
    return Outcome("routed", "unrecognised", "fallback:health_manager", task_id=task_id)


for _name, _handler in (("unsubscribe", unsubscribe), ("checkin", checkin), ("red_flag", red_flag), ("satisfaction", satisfaction),
                        ("complaint", complaint), ("faq", faq), ("ignorable", ignorable)):
    register_intent(_name, _handler)
