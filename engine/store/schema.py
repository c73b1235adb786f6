"""SQLAlchemy 2 table mappings. Every change here needs an Alembic migration."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# SQLite has no 64-bit autoincrement type of its own: keep INTEGER there.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on both SQLite and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use UTC-aware datetimes")
        from datetime import timezone

        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        from datetime import timezone

        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    pass


class Patient(Base):
    __tablename__ = "patients"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    mrn_hash: Mapped[str] = mapped_column(String(64), unique=True)
    mrn_enc: Mapped[str] = mapped_column(Text)
    name_enc: Mapped[str | None] = mapped_column(Text)
    phone_enc: Mapped[str | None] = mapped_column(Text)
    phone_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    openid_enc: Mapped[str | None] = mapped_column(Text)
    openid_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    key_id: Mapped[str] = mapped_column(String(32))
    birth_date: Mapped[date | None] = mapped_column(Date)
    sex: Mapped[str | None] = mapped_column(String(8))
    conditions: Mapped[list[str]] = mapped_column(JSON, default=list)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    tz: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    language: Mapped[str] = mapped_column(String(16), default="zh_CN")
    channel_prefs: Mapped[list[str]] = mapped_column(JSON, default=list)
    deceased: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Set when the HIS merged this record into another (HL7 A40, FHIR Patient.link replaced-by):
    #: its MRN then resolves to the surviving patient.
    merged_into: Mapped[int | None] = mapped_column(BigId, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: issue 19: the times of day the patient chose (``{"medication_time": "20:00"}``), JSON encrypted
    preferences_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: issue 19: ``lunar`` when the patient keeps their birthday on the lunar calendar (else Gregorian)
    birthday_calendar: Mapped[str | None] = mapped_column(String(8), nullable=True)
    #: issue 22: when the patient's personal data was erased at their request (carepath.privacy.erase)
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class JourneyVersion(Base):
    """Every journey version ever enrolled on; enrollments are pinned to one."""

    __tablename__ = "journey_versions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    journey: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(32))
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (UniqueConstraint("journey", "version", name="uq_journey_version"),)


class Event(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64))
    source_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"), index=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    outcome: Mapped[str | None] = mapped_column(Text)
    # applied | resend | stale | held | expired (see carepath.runtime.held) | refused | superseded
    # (carepath.runtime.refused)
    status: Mapped[str] = mapped_column(String(16), default="applied", server_default="applied")
    mrn_hash: Mapped[str | None] = mapped_column(String(64))  # kept while held for a patient not registered
    hold_key: Mapped[str | None] = mapped_column(String(255))  # the episode key an event is held for
    #: who delivered it: ``events-api:<system>``, ``hook:<connector>``, ``mllp:<connector>``, ``cli``
    received_via: Mapped[str | None] = mapped_column(String(128))
    #: what an inbound text meant to the engine (``unsubscribe``; see carepath.runtime.unsubscribe)
    intent: Mapped[str | None] = mapped_column(String(32))
    #: issue 22: the MRN (encrypted) beside ``mrn_hash``, so a key rotation can recompute the hash
    mrn_enc: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (UniqueConstraint("source", "source_id", name="uq_event_source"),
                      Index("ix_events_held", "status", "mrn_hash"))


class Enrollment(Base):
    __tablename__ = "enrollments"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    journey: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(32))
    key: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="active")
    anchors: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # per anchor, the occurred_at of the event behind its last applied change (ISO text)
    anchor_times: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    exited_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    exit_reason: Mapped[str | None] = mapped_column(Text)
    #: issue 19: since when the programme is paused (a ``pause_on`` event), None while it runs
    paused_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: issue 19: ``occurred_at`` of the last pause or resume applied (an older one is stale)
    pause_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    __table_args__ = (Index("ix_enrollments_patient", "patient_id", "journey", "status"),)


class Horizon(Base):
    """Issue 19: how far an open-ended step of an enrollment is planned (:mod:`carepath.runtime.horizon`).

    ``planned_until``: every occurrence up to this instant has its touchpoint; None once the series ended.
    """

    __tablename__ = "horizons"
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id"), primary_key=True)
    step: Mapped[str] = mapped_column(String(128), primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    planned_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (Index("ix_horizons_due", "step", "planned_until"),)


#: every status a touchpoint row can have (``carepath touchpoints list --status`` takes these)
TOUCHPOINT_STATUSES = ("scheduled", "claimed", "sent", "delivered", "failed", "skipped", "cancelled", "quarantined")


class Touchpoint(Base):
    """One scheduled execution of a step: the outbox row."""

    __tablename__ = "touchpoints"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    journey: Mapped[str] = mapped_column(String(128))
    step: Mapped[str] = mapped_column(String(128))
    stage: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(8), default="send")  # send | task | tag
    occurrence: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    anchor: Mapped[str | None] = mapped_column(String(64))
    anchor_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the anchor value it was planned for
    status: Mapped[str] = mapped_column(String(16))
    planned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # provider calls made (sends and lookups)
    #: worker deaths a touchpoint may have caused since its last recorded result (read by
    #: ``carepath.runtime.dispatch.claim.charged``): one charged ``poison_after`` is set aside as ``quarantined``
    claims: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    channel_index: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    channel: Mapped[str | None] = mapped_column(String(64))
    event_id: Mapped[int | None] = mapped_column(BigId)
    #: who this touchpoint is for: ``None`` the patient, ``rp:<id>`` a related person (issue 19, family)
    recipient: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (
        Index("ix_touchpoints_due", "status", "due_at"),
        Index("ix_touchpoints_patient_due", "patient_id", "due_at"),
    )


class Delivery(Base):
    """One provider call on one channel, with its own attempt number; written before and after the call.

    ``status``: ``sending`` (call under way), ``sent``, ``failed``, ``delivered``, ``unknown`` (the
    worker died during the call; kept as is), or for a lookup of an unknown attempt ``reconciled``
    (the provider had accepted it) / ``not_found`` (it had not: the message is sent again).
    A channel that holds messages for a person's confirmation (WeCom) records ``pending_confirmation``
    until its outcome: ``delivered``, ``failed``, ``capped`` (refused by the provider's limit) or
    ``unconfirmed`` (its window passed and the message fell back).
    """

    __tablename__ = "deliveries"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    touchpoint_id: Mapped[int] = mapped_column(ForeignKey("touchpoints.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(24))
    provider_id: Mapped[str | None] = mapped_column(String(128), index=True)
    error_kind: Mapped[str | None] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    cost: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (UniqueConstraint("touchpoint_id", "attempt", name="uq_delivery_attempt"),)


class EarlyReceipt(Base):
    """A delivery receipt that arrived before its delivery's provider id was recorded; applied then."""

    __tablename__ = "early_receipts"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider_id: Mapped[str] = mapped_column(String(128), index=True)
    status: Mapped[str] = mapped_column(String(16))  # delivered | failed
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OutboxMessage(Base):
    """Messages 'sent' by the outbox channel (also the demo's provider)."""

    __tablename__ = "outbox_messages"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    channel: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[int] = mapped_column(BigId)
    address_masked: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StaffTask(Base):
    __tablename__ = "staff_tasks"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    enrollment_id: Mapped[int | None] = mapped_column(BigId)
    touchpoint_id: Mapped[int | None] = mapped_column(BigId)
    kind: Mapped[str] = mapped_column(String(64))
    team: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="open")
    detail: Mapped[str | None] = mapped_column(Text)
    sla_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # the staff work queue: who has it, how urgent, where it stands on its team's escalation chain
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    first_response_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    assigned_role: Mapped[str | None] = mapped_column(String(64))
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution: Mapped[str | None] = mapped_column(Text)
    #: issue 21: the staff member the task is for (the patient's health manager), and the conversation turn behind it
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    turn_id: Mapped[int | None] = mapped_column(BigId, nullable=True)


class TaskNote(Base):
    """A staff member's note on a task (append-only)."""

    __tablename__ = "task_notes"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("staff_tasks.id"), index=True)
    author: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class SurveyResponse(Base):
    """One answered questionnaire, kept as a FHIR QuestionnaireResponse with its scores."""

    __tablename__ = "survey_responses"
    __table_args__ = (UniqueConstraint("provider", "external_id", name="uq_survey_response_external"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    touchpoint_id: Mapped[int | None] = mapped_column(BigId, unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    journey: Mapped[str | None] = mapped_column(String(128))
    step: Mapped[str | None] = mapped_column(String(128))
    survey: Mapped[str] = mapped_column(String(128))
    provider: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(128))
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    nps: Mapped[int | None] = mapped_column(Integer)
    satisfaction: Mapped[float | None] = mapped_column(Float)
    red_flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Consent(Base):
    """The consent ledger: rows are only ever added; the newest per (patient, purpose, channel) is in force."""

    __tablename__ = "consents"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(128))  # clinical, marketing, template:<name>
    channel: Mapped[str] = mapped_column(String(64), default="*")
    granted: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    # the consent ledger (carepath.runtime.consent_ledger): how it was given, who recorded it, why
    via: Mapped[str | None] = mapped_column(String(16))  # his, patient_reply, staff, web, system
    recorded_by: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(String(255))


from carepath.store.schema_wecom import WecomContact  # noqa: E402,F401 - its tables belong to Base.metadata
from carepath.store import staff_schema  # noqa: E402,F401  (staff sessions and refused logins, on Base)
from carepath.store import schema_trust  # noqa: E402,F401 - issue 22's tables join Base.metadata
# issue 21: conversations, health managers, complaint cases (a module of its own; same Base)
from carepath.store.conversation_schema import ComplaintCase, ConversationTurn, HealthManager  # noqa: E402,F401
# issue 19: check-ins and readings live next to this module (kept under 400 lines each)
from carepath.store.schema_checkins import CheckinRow, ReadingRow  # noqa: E402,F401
from carepath.store.family_schema import RelatedPerson  # noqa: E402,F401  (family and guardians, issue 19)
from carepath.store.schema_experiments import ExperimentAssignment  # noqa: E402,F401  (experiments, issue 23)
# portraits, segments and tracked links (issue 17), a module of their own
from carepath.store.schema_portrait import (  # noqa: E402,F401
    Portrait, PortraitCount, PortraitDay, SegmentMember, TrackedLink)
# operator alerts, connector state, the audit chain, store metadata
from carepath.store.schema_operations import (  # noqa: E402,F401
    AuditEntry, ConnectorState, HisCursor, OperatorAlert, StoreMeta)
