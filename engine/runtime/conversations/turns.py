"""Conversation turns: stored with their text encrypted, read back for staff (masked) and for the intent step."""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, select

from carepath.masking import mask_text
from carepath.store.conversation_schema import ConversationTurn
from carepath.store.driver import DriverQuery
from carepath.store.statements import insert_returning, update_by_id

if TYPE_CHECKING:
    from carepath.store.crypto import Cipher

PENDING = "pending"
INBOUND, OUTBOUND = "in", "out"

# built once (see carepath.store.statements)
_TURN_OF_EVENT = select(ConversationTurn.id).where(ConversationTurn.event_id == bindparam("e"))
_TURN = select(ConversationTurn.__table__).where(ConversationTurn.id == bindparam("t"))
_LAST_TURNS = select(ConversationTurn.__table__).where(ConversationTurn.patient_id == bindparam("p")) \
    .order_by(ConversationTurn.id.desc()).limit(bindparam("n"))
_LAST_TURNS_UP_TO = select(ConversationTurn.__table__).where(ConversationTurn.patient_id == bindparam("p"),
                                                             ConversationTurn.id <= bindparam("up_to")) \
    .order_by(ConversationTurn.id.desc()).limit(bindparam("n"))
#: the three above as routing a reply runs them (on SQLite on the driver's cursor: DriverQuery), rows as named tuples
_TURN_Q, _LAST_TURNS_Q, _LAST_TURNS_UP_TO_Q, _TURN_OF_EVENT_Q = (
    DriverQuery(q) for q in (_TURN, _LAST_TURNS, _LAST_TURNS_UP_TO, _TURN_OF_EVENT))
TurnRow = namedtuple("TurnRow", [column.key for column in ConversationTurn.__table__.columns])


@dataclass(frozen=True)
class Turn:
    """One turn as the runtime and people see it; ``text`` is in clear (mask it with :meth:`shown`)."""

    id: int
    patient_id: int
    direction: str
    channel: str | None
    text: str
    at: datetime
    status: str
    intent: str | None
    rule: str | None
    task_id: int | None
    complaint_id: int | None
    via: str | None
    error: str | None

    def shown(self) -> str:
        """The text as surfaces show it: phone numbers masked."""
        return mask_text(self.text)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "direction": self.direction, "channel": self.channel, "text": self.shown(),
                "at": self.at.isoformat(), "status": self.status, "intent": self.intent, "rule": self.rule,
                "task_id": self.task_id, "complaint_id": self.complaint_id, "via": self.via, "error": self.error}


def record_inbound(conn: Connection, cipher: "Cipher", *, patient_id: int, event_id: int, channel: str | None,
                   text: str, at: datetime) -> int:
    """Store what the patient wrote as a ``pending`` turn (inside the ingest transaction); its id. An event applied
    again (released after waiting, repaired) keeps its one turn."""
    existing = _TURN_OF_EVENT_Q.scalar(conn, {"e": event_id})
    if existing is not None:
        return existing
    return insert_returning(conn, ConversationTurn, dict(
        patient_id=patient_id, event_id=event_id, direction=INBOUND, channel=channel, text_enc=cipher.encrypt(text),
        at=at, status=PENDING))


def record_outbound(conn: Connection, cipher: "Cipher", *, patient_id: int, channel: str | None, text: str,
                    at: datetime, reply_to: int | None, intent: str | None = None, rule: str | None = None,
                    complaint_id: int | None = None) -> int:
    """Store a message to the patient as ``queued`` before it is sent; its id."""
    return insert_returning(conn, ConversationTurn, dict(
        patient_id=patient_id, direction=OUTBOUND, channel=channel, text_enc=cipher.encrypt(text), at=at,
        status="queued", reply_to=reply_to, intent=intent, rule=rule, complaint_id=complaint_id))


def finish(conn: Connection, turn_id: int, **values: Any) -> None:
    """Record what became of a turn (status, intent, rule, task, error...)."""
    update_by_id(conn, ConversationTurn, turn_id, values)


def _turn(cipher: "Cipher", row: Any) -> Turn:
    return Turn(row.id, row.patient_id, row.direction, row.channel, cipher.decrypt(row.text_enc) or "", row.at,
                row.status, row.intent, row.rule, row.task_id, row.complaint_id, row.via, row.error)


def load_turn(conn: Connection, cipher: "Cipher", turn_id: int) -> Turn | None:
    rows = _TURN_Q.rows(conn, {"t": turn_id})
    return _turn(cipher, TurnRow._make(rows[0])) if rows else None


def conversation(conn: Connection, cipher: "Cipher", patient_id: int, *, limit: int = 20,
                 up_to: int | None = None) -> list[Turn]:
    """The patient's last ``limit`` turns (up to turn ``up_to`` when given), oldest first."""
    if up_to is None:
        rows = _LAST_TURNS_Q.rows(conn, {"p": patient_id, "n": limit})
    else:
        rows = _LAST_TURNS_UP_TO_Q.rows(conn, {"p": patient_id, "up_to": up_to, "n": limit})
    return [_turn(cipher, TurnRow._make(row)) for row in reversed(rows)]


def last_inbound_at(conn: Connection, patient_id: int, channel: str) -> datetime | None:
    """When the patient last wrote on ``channel`` (what the WeChat 48-hour window counts from)."""
    return conn.execute(select(ConversationTurn.at).where(
        ConversationTurn.patient_id == patient_id, ConversationTurn.channel == channel,
        ConversationTurn.direction == INBOUND).order_by(ConversationTurn.at.desc()).limit(1)).scalar()


def transcript(turns: list[Turn]) -> str:
    """A conversation as a task shows it (masked): ``[05-01 09:00] 患者: ...`` lines."""
    who = {INBOUND: "患者", OUTBOUND: "回复"}
    return "\n".join(f"[{t.at:%m-%d %H:%M}] {who.get(t.direction, t.direction)}: {t.shown()}" for t in turns)


def record_turn(conn: Connection, engine: Any, ev: Any, event_id: int, patient_id: int) -> int:
    """The inbound turn of a ``message.replied`` event (``payload.text``, ``payload.channel``), inside ingest."""
    channel = ev.payload.get("channel")
    return record_inbound(conn, engine.cipher, patient_id=patient_id, event_id=event_id,
                          channel=channel if isinstance(channel, str) else None,
                          text=str(ev.payload.get("text") or ""), at=ev.occurred_at)


def task_conversation(engine: Any, task_id: int, limit: int = 20) -> tuple[int | None, list[Turn]]:
    """The conversation behind a task a patient's message opened: ``(turn id, the last turns)``; ``(None, [])``
    for any other task."""
    from carepath.store.schema import StaffTask

    with engine.db.connect() as conn:
        row = conn.execute(select(StaffTask.patient_id, StaffTask.turn_id).where(StaffTask.id == task_id)).first()
        if row is None or row.turn_id is None:
            return None, []
        return row.turn_id, conversation(conn, engine.cipher, row.patient_id, limit=limit)
