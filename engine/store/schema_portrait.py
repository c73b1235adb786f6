"""Portraits, segments and tracked links (issue 17): what the engine knows of a patient's engagement and the
link targets behind the click redirect. Tables on the store's one ``Base``; re-exported by
:mod:`carepath.store.schema`."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from carepath.store.schema import Base, BigId, UTCDateTime


class Portrait(Base):
    """Per patient, what the engine knows of them, kept up to date as events arrive (``carepath.runtime.portrait``).

    ``facts_enc`` (diagnoses with dates, visits, admissions, reports, survey scores, communities) is health data:
    encrypted with the store's cipher (``key_id``), like contacts. The plain columns are what SQL needs: whether the patient
    is admitted, the last interaction and its sequence number (idle triggers), the segments they are in.
    """

    __tablename__ = "portraits"
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), primary_key=True)
    key_id: Mapped[str | None] = mapped_column(String(32))
    facts_enc: Mapped[str | None] = mapped_column(Text)
    admitted: Mapped[bool] = mapped_column(Boolean, default=False)
    #: the newest interaction (reply, click, survey answer, check-in, visit...); ``interaction_seq`` counts each
    #: time it moved forward (an idle period is identified by it)
    last_interaction_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    interaction_seq: Mapped[int] = mapped_column(Integer, default=0)
    programmes: Mapped[list[str]] = mapped_column(JSON, default=list)
    segments: Mapped[list[str]] = mapped_column(JSON, default=list)  # a copy of the open segment_members rows
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PortraitCount(Base):
    """One kind of fact of a patient (``reply``, ``click``, ``visit``...): how many in all and the last one."""

    __tablename__ = "portrait_counts"
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    total: Mapped[int] = mapped_column(Integer, default=0)
    last_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PortraitDay(Base):
    """Facts per patient, kind and patient-local day: windowed counts (30 and 90 days) are sums over these,
    so they stay right as days pass without events. Days older than the longest window are pruned."""

    __tablename__ = "portrait_days"
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    n: Mapped[int] = mapped_column(Integer, default=0)
    __table_args__ = (Index("ix_portrait_days_day", "day"),)


class SegmentMember(Base):
    """One stay of a patient in a segment: open (``left_at`` null) while they are in it."""

    __tablename__ = "segment_members"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    segment: Mapped[str] = mapped_column(String(128))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    __table_args__ = (Index("ix_segment_members_open", "segment", "left_at", "patient_id"),)


class TrackedLink(Base):
    """A link target that messages point to through the click redirect (``/c/<token>``): one row per URL."""

    __tablename__ = "tracked_links"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    url_hash: Mapped[str] = mapped_column(String(64), unique=True)
    url: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
