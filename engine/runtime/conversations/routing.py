"""The intent step: every pending inbound turn ends ``answered``, ``routed`` or ``ignorable``, recorded.

Ingest stores the turn (``pending``) in the same transaction as its ``message.replied`` event; right after
the commit :func:`route_turns` classifies it (a plugin within its timeout, else the FAQ matcher: outside any
transaction), offers it to the intent handlers in order inside one transaction (the outcome, its task or case
and the reply to send are committed together), then sends the reply. A turn left ``pending`` by a crash in
between is routed by :func:`route_pending` (the ``conversations`` maintenance job); a turn is routed once,
whoever gets there first.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Iterable

from sqlalchemy import bindparam, select

from carepath.runtime.conversations.classify import classify
from carepath.runtime.conversations.intents import Outcome, TurnContext, intent_handlers
from carepath.runtime.conversations.replies import reply_channel, send_reply
from carepath.runtime.conversations.turns import PENDING, conversation, finish, load_turn, record_outbound
from carepath.store.conversation_schema import ConversationTurn
from carepath.store.driver import DriverQuery
from carepath.store.savepoints import savepoint
from carepath.store.sqlite_gate import reading
from carepath.store.schema import Event, Patient

if TYPE_CHECKING:
    from carepath.engine import Engine

log = logging.getLogger(__name__)

# built once: the turn's status under its lock, its event's intent and outcome, the patient's name
_STATUS = select(ConversationTurn.status).where(ConversationTurn.id == bindparam("t")).with_for_update()
_EVENT = select(Event.intent, Event.outcome).select_from(ConversationTurn) \
    .join(Event, Event.id == ConversationTurn.event_id).where(ConversationTurn.id == bindparam("t"))
_NAME = select(Patient.name_enc).where(Patient.id == bindparam("p"))
_STATUS_Q, _EVENT_Q, _NAME_Q = DriverQuery(_STATUS), DriverQuery(_EVENT), DriverQuery(_NAME)  # (driver's cursor)


def route_turn(engine: "Engine", turn_id: int) -> Outcome | None:
    """Route one pending turn and send its reply; None when it was no longer pending."""
    from carepath.runtime.conversations.handlers import fallback

    with reading(engine.db) as conn:  # reads only: no write lock (on SQLite) until the transaction below
        turn = load_turn(conn, engine.cipher, turn_id)
        if turn is None or turn.status != PENDING:
            return None
        history = conversation(conn, engine.cipher, turn.patient_id, up_to=turn.id)[:-1]
    classification = classify(engine, turn.text, turn.channel, history)
    now = engine.clock.now()
    with engine.db.begin() as conn:
        if _STATUS_Q.scalar(conn, {"t": turn_id}) != PENDING:
            return None
        event = _EVENT_Q.first(conn, {"t": turn_id})  # (intent, outcome)
        ctx = TurnContext(engine, conn, turn, history, classification, now,
                          engine.cipher.decrypt(_NAME_Q.scalar(conn, {"p": turn.patient_id})),
                          event[0] if event else None, event[1] if event else None)
        outcome = None
        for handler_name, handler in intent_handlers():
            try:
                with savepoint(conn, "carepath_intent"):  # what a failing handler wrote is rolled back
                    outcome = handler(ctx)
            except Exception:  # one broken handler must not lose the message: the next ones still look
                log.exception("intent handler %s failed on turn %s; the next handler looks", handler_name, turn_id)
                continue
            if outcome is not None:
                break
        if outcome is None:
            outcome = fallback(ctx)
        finish(conn, turn_id, status=outcome.status, intent=outcome.intent, rule=outcome.rule[:128],
               task_id=outcome.task_id, complaint_id=outcome.complaint_id, routed_at=now)
        channel = turn.channel if turn.channel in engine.channels else reply_channel(conn, engine, turn.patient_id)
        reply_id = record_outbound(conn, engine.cipher, patient_id=turn.patient_id, channel=channel,
                                   text=outcome.reply, at=now, reply_to=turn_id, intent=outcome.intent,
                                   rule=outcome.rule[:128], complaint_id=outcome.complaint_id) \
            if outcome.reply else None
    if reply_id is not None:
        send_reply(engine, reply_id)
    return outcome


def route_turns(engine: "Engine", turn_ids: Iterable[int]) -> list[Outcome]:
    """Route turns ingest just stored (a failure is logged; the sweep routes the turn later)."""
    done = []
    for turn_id in turn_ids:
        try:
            outcome = route_turn(engine, turn_id)
        except Exception:
            log.exception("routing turn %s failed; the conversations maintenance job retries it", turn_id)
            continue
        if outcome is not None:
            done.append(outcome)
    return done


def route_pending(engine: "Engine", limit: int = 500) -> int:
    """Route turns still ``pending`` (a worker died after ingest); how many were routed now."""
    with engine.db.connect() as conn:
        ids = list(conn.execute(select(ConversationTurn.id).where(ConversationTurn.status == PENDING)
                                .order_by(ConversationTurn.id).limit(limit)).scalars())
    return len(route_turns(engine, ids))
