"""Issue 21 tables: conversation turns, health-manager assignments, complaint cases.

Kept beside :mod:`carepath.store.schema` (same ``Base``) so that module stays small; it imports this one at
its end, so every table is known wherever the schema is. Migration ``0018_conversations``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from carepath.store.schema import Base, BigId, UTCDateTime

#: what an inbound turn ended as; ``pending`` only until the intent step ran (a sweep routes leftovers)
TURN_OUTCOMES = ("answered", "routed", "ignorable")
#: what happened to an outbound turn (an answer, a holding reply, a complaint status message)
REPLY_STATUSES = ("queued", "sent", "failed")


class ConversationTurn(Base):
    """One message in a patient's conversation: ``in`` (the patient wrote) or ``out`` (carepath or staff answered).

    The text is personal data: encrypted (``text_enc``, AES-GCM with the store's key) and masked on every
    surface. An inbound turn is tied to the ``message.replied`` event it came from (``event_id``, unique).
    """

    __tablename__ = "conversation_turns"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    event_id: Mapped[int | None] = mapped_column(BigId, unique=True)
    direction: Mapped[str] = mapped_column(String(8))  # in | out
    channel: Mapped[str | None] = mapped_column(String(64))
    text_enc: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: in: pending | answered | routed | ignorable; out: queued | sent | failed
    status: Mapped[str] = mapped_column(String(16))
    intent: Mapped[str | None] = mapped_column(String(32))
    #: the rule that decided (``faq:booking``, ``red_flag:渗血``, ``ignorable:thanks``, ``fallback``)
    rule: Mapped[str | None] = mapped_column(String(128))
    task_id: Mapped[int | None] = mapped_column(BigId)
    complaint_id: Mapped[int | None] = mapped_column(BigId)
    reply_to: Mapped[int | None] = mapped_column(BigId)  # out: the inbound turn it answers
    via: Mapped[str | None] = mapped_column(String(32))  # out: customer_service | channel
    provider_id: Mapped[str | None] = mapped_column(String(128))
    error: Mapped[str | None] = mapped_column(Text)
    routed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    __table_args__ = (Index("ix_conversation_turns_patient", "patient_id", "at"),
                      Index("ix_conversation_turns_status", "status", "at"))


class HealthManager(Base):
    """Which staff member (``[staff.NAME]``) is a patient's health manager (健康管理师); one per patient."""

    __tablename__ = "health_managers"
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), primary_key=True)
    manager: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(32))  # config | csv | cli | wecom | api
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ComplaintCase(Base):
    """A complaint with its two deadlines: first response (24 h) and resolution (7 working days)."""

    __tablename__ = "complaint_cases"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    source: Mapped[str] = mapped_column(String(16))  # message | survey | staff
    #: what opened it (``turn:12``, ``event:55``, ``staff:wang-li:<time>``): one case per source
    source_ref: Mapped[str] = mapped_column(String(128), unique=True)
    key_id: Mapped[str | None] = mapped_column(String(32))
    summary_enc: Mapped[str | None] = mapped_column(Text)  # the patient's words or the staff summary, encrypted
    status: Mapped[str] = mapped_column(String(16))  # open | acknowledged | resolved
    task_id: Mapped[int | None] = mapped_column(BigId)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    first_response_due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolution_due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    resolution_enc: Mapped[str | None] = mapped_column(Text)
    first_response_breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution_breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    satisfaction_asked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    satisfaction: Mapped[int | None] = mapped_column(Integer)  # 1-5, the patient's answer after closure
