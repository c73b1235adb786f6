"""The store's own bookkeeping: operator alerts, connector state (tokens, cursors), the audit chain and store
metadata. Tables on the store's one ``Base``; re-exported by :mod:`carepath.store.schema`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, JSON, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from carepath.store.schema import Base, BigId, UTCDateTime


class OperatorAlert(Base):
    """Something an operator must fix (a connector's account out of balance, bad credentials).

    ``emitted_at`` is set once the alert was published (a Prefect event such as
    ``carepath.connector.down``); rows are never deleted.
    """

    __tablename__ = "operator_alerts"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(128))
    code: Mapped[str | None] = mapped_column(String(128))
    detail: Mapped[str | None] = mapped_column(Text)
    emitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    __table_args__ = (Index("ix_operator_alerts_pending", "emitted_at", "at"),)


class ConnectorState(Base):
    """Small state a connector instance shares between workers (a provider access token, used one-time tokens).

    ``version`` and the lease columns make refreshing a compare-and-set: one worker at a time.
    """

    __tablename__ = "connector_state"
    connector: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    """Append-only, hash-chained audit log: who changed journeys, consents and patient data (carepath.store.audit).

    ``seq`` numbers the chain without gaps; ``hash`` is SHA-256 over ``prev_hash`` and the entry's canonical form.
    """

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    seq: Mapped[int | None] = mapped_column(BigInteger)  # issue 22
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))
    patient_id: Mapped[int | None] = mapped_column(BigId, index=True)  # the patient it concerns, if one
    __table_args__ = (UniqueConstraint("seq", name="uq_audit_log_seq"),)


class HisCursor(Base):
    """Where each polled HIS source is up to; advanced only after the events it covers are stored."""

    __tablename__ = "his_cursors"
    source: Mapped[str] = mapped_column(String(128), primary_key=True)
    cursor: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StoreMeta(Base):
    """Facts about the store itself, one row per name (``key_fingerprint``: the key its contacts use)."""

    __tablename__ = "store_meta"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
