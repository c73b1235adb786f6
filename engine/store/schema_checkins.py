"""Issue 19 tables: check-ins (打卡) and readings (``vitals.reading``). Values are personal data: encrypted.

Kept next to ``schema.py`` (which would pass 400 lines); ``schema`` imports this module, so the tables are on
the same metadata.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from carepath.store.schema import Base, BigId, UTCDateTime


class CheckinRow(Base):
    """One check-in of a patient: ``recorded`` (it counts) or ``rejected`` (an impossible value, with the
    reason). ``day`` is the patient-local day it counts for; ``value_enc`` the value (encrypted text, or none
    for a keyword check-in), in the measure's own ``unit``."""

    __tablename__ = "checkins"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id"))
    journey: Mapped[str] = mapped_column(String(128))
    step: Mapped[str] = mapped_column(String(128))
    checkin: Mapped[str] = mapped_column(String(64))
    day: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16))  # recorded | rejected
    reason: Mapped[str | None] = mapped_column(Text)
    measure: Mapped[str | None] = mapped_column(String(32))
    value_enc: Mapped[str | None] = mapped_column(Text)
    unit: Mapped[str | None] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))  # reply | page | device
    touchpoint_id: Mapped[int | None] = mapped_column(BigId)  # the prompt it answers
    event_id: Mapped[int | None] = mapped_column(BigId, unique=True)  # the reply or reading it came from
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (Index("ix_checkins_patient", "patient_id", "at"),
                      Index("ix_checkins_enrollment", "enrollment_id", "step", "day"))


class ReadingRow(Base):
    """One measurement of a patient (``vitals.reading``): ``accepted``, or ``rejected`` with the reason (an
    impossible value or unit). ``value_enc`` is in the measure's own ``unit`` (encrypted text)."""

    __tablename__ = "readings"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    event_id: Mapped[int] = mapped_column(BigId, unique=True)
    measure: Mapped[str] = mapped_column(String(32))
    value_enc: Mapped[str | None] = mapped_column(Text)
    unit: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # accepted | rejected
    reason: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(128))
    device_id: Mapped[str | None] = mapped_column(String(128))
    measured_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (Index("ix_readings_patient", "patient_id", "measured_at"),)
