"""Messages to the patient in a conversation: answers, holding replies, complaint status messages.

On a WeChat Official Account channel a reply is a customer-service message (``message/custom/send``), which
WeChat allows only within 48 hours of the patient's last message (``[conversations] customer_service_window``):
outside that window carepath does not attempt it and sends by the channel's own rules instead, as on SMS: the
channel's ``send`` with the template ``[conversations] answer_template`` (``answer`` in its context). A message
that names no configured channel is answered on the channel the patient last wrote on, else a configured channel
they have an address for. A reply that cannot go (no channel, no consent, refused) is handed to the patient's
health manager as a task: the patient's message is then ``routed``, never silently left unanswered.

Each reply is an outbound turn stored ``queued`` before the provider is called and updated with the result.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from carepath.plugins.contracts import Message, SendResult
from carepath.runtime.conversations.turns import INBOUND, finish, last_inbound_at, record_outbound
from carepath.runtime.patients import consent_state
from carepath.store.conversation_schema import ConversationTurn
from carepath.store.schema import Patient

if TYPE_CHECKING:
    from carepath.engine import Engine

log = logging.getLogger(__name__)
CUSTOMER_SERVICE, CHANNEL = "customer_service", "channel"


def reply_channel(conn: Any, engine: "Engine", patient_id: int) -> str | None:
    """Where to write to the patient when the message names no configured channel (or for a complaint's status):
    the channel of their last message, else their first preferred configured
    channel they have an address for, else the first configured channel they have an address for, else None."""
    last = conn.execute(select(ConversationTurn.channel).where(
        ConversationTurn.patient_id == patient_id, ConversationTurn.direction == INBOUND,
        ConversationTurn.channel.is_not(None)).order_by(ConversationTurn.id.desc()).limit(1)).scalar()
    if last in engine.channels:
        return last
    row = conn.execute(select(Patient.channel_prefs, Patient.phone_enc, Patient.openid_enc)
                       .where(Patient.id == patient_id)).first()
    if row is None:
        return None
    has = {"phone": bool(row.phone_enc), "openid": bool(row.openid_enc), "none": True}
    usable = [name for name, ch in engine.channels.items() if has.get(ch.address_kind, False)]
    return next((c for c in (row.channel_prefs or []) if c in usable), usable[0] if usable else None)


def say(engine: "Engine", patient_id: int, text: str, *, complaint_id: int | None = None, intent: str | None = None,
        rule: str | None = None) -> int | None:
    """Send ``text`` to the patient outside any turn (a complaint's status); the outbound turn's id."""
    now = engine.clock.now()
    with engine.db.begin() as conn:
        channel = reply_channel(conn, engine, patient_id)
        turn_id = record_outbound(conn, engine.cipher, patient_id=patient_id, channel=channel, text=text, at=now,
                                  reply_to=None, intent=intent, rule=rule, complaint_id=complaint_id)
    send_reply(engine, turn_id)
    return turn_id


def send_reply(engine: "Engine", turn_id: int) -> str:
    """Send a ``queued`` outbound turn; its new status (``sent`` / ``failed``). A failed answer to a patient's
    message opens a task for their health manager and marks that message ``routed``."""
    now = engine.clock.now()
    with engine.db.connect() as conn:
        turn = conn.execute(select(ConversationTurn.__table__).where(ConversationTurn.id == turn_id)).one()
        if turn.status != "queued":
            return turn.status
        patient = conn.execute(select(Patient.phone_enc, Patient.openid_enc, Patient.name_enc).where(
            Patient.id == turn.patient_id)).one()
        consents = consent_state(conn, [turn.patient_id])
        last_in = last_inbound_at(conn, turn.patient_id, turn.channel) if turn.channel else None
    text = engine.cipher.decrypt(turn.text_enc) or ""
    channel = engine.channels.get(turn.channel) if turn.channel else None
    via = CHANNEL
    if channel is None:
        result = SendResult.permanent("no_channel", "no configured channel to answer on")
    elif not consents.get((turn.patient_id, "clinical", channel.name),
                          consents.get((turn.patient_id, "clinical", "*"), True)):
        result = SendResult.permanent("no_consent", f"no clinical consent on {channel.name}")
    else:
        address = {"phone": patient.phone_enc, "openid": patient.openid_enc}.get(channel.address_kind)
        address = engine.cipher.decrypt(address) if address else ("-" if channel.address_kind == "none" else None)
        window = engine.config.conversations.customer_service_window
        if not address:
            result = SendResult.permanent("no_address", f"the patient has no {channel.address_kind}")
        elif hasattr(channel, "send_customer_service") and last_in is not None and now - last_in <= window:
            via = CUSTOMER_SERVICE
            result = channel.send_customer_service(address, text)
            if result.retryable_error:  # busy or a token refreshed elsewhere: once more, at once
                result = channel.send_customer_service(address, text)
        else:
            name = engine.cipher.decrypt(patient.name_enc) or ""
            message = Message(idempotency_key=f"turn:{turn_id}", channel=channel.name, patient_id=turn.patient_id,
                              address=address, title="", body=text,
                              template=engine.config.conversations.answer_template, category="clinical", context={"answer": text, "patient": {"name": name}, "now": now})
            try:
                result = channel.send(message)
            except Exception as exc:  # a provider library's surprise must not lose the reply
                result = SendResult.permanent("error", f"{type(exc).__name__}")
    status = "sent" if result.ok else "failed"
    with engine.db.begin() as conn:
        finish(conn, turn_id, status=status, via=via, provider_id=result.provider_id,
               error=None if result.ok else f"{result.error_code}: {result.error or ''}"[:500])
        answered = turn.reply_to is not None and conn.execute(select(ConversationTurn.status).where(
            ConversationTurn.id == turn.reply_to)).scalar() == "answered"
        if not result.ok and answered:  # a routed message already has its person: the task stays theirs
            from carepath.runtime.conversations.tasks import manager_task

            task_id = manager_task(conn, engine, patient_id=turn.patient_id, turn_id=turn.reply_to,
                                   kind="answer_undelivered",
                                   why=f"the answer could not be sent ({result.error_code})", now=now)
            finish(conn, turn.reply_to, status="routed", task_id=task_id)
    if not result.ok:
        log.info("conversation reply %s not sent on %s: %s", turn_id, turn.channel, result.error_code)
    return status
