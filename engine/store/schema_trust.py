"""Tables of issue 22 (key rotation, audit anchors), next to :mod:`carepath.store.schema` (imported by it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from carepath.store.schema import Base, BigId, UTCDateTime


class KeyRotation(Base):
    """One ``carepath keys rotate --to KEYID`` run: ``running`` until every registered column is done."""

    __tablename__ = "key_rotations"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    target: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | done
    actor: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class KeyRotationProgress(Base):
    """Per rotation and registered column: the last primary key done (JSON list) and how many values moved."""

    __tablename__ = "key_rotation_progress"
    rotation_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    item: Mapped[str] = mapped_column(String(128), primary_key=True)  # "<table>.<column>"
    last_key: Mapped[list[Any] | None] = mapped_column(JSON)
    done: Mapped[bool] = mapped_column(default=False)
    moved: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuditAnchor(Base):
    """A copy of the audit chain's head at a moment (entry ``seq`` had hash ``hash``): what ``audit verify``
    checks a rewritten chain against. Also appended to ``CAREPATH_AUDIT_ANCHOR_FILE`` when set."""

    __tablename__ = "audit_anchors"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(Text)
    entries: Mapped[int] = mapped_column(Integer, default=0)
