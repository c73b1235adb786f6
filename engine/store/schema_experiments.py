"""Issue 23: which arm of a journey experiment each patient is in (a variant, or ``holdout``).

One row per journey, experiment and patient, written the first time the patient reaches the
experiment's step, and kept across journey versions: a later version reads the stored arm rather
than hashing again. ``schema`` imports this module, so the table is on the same metadata.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from carepath.store.schema import Base, BigId, UTCDateTime


class ExperimentAssignment(Base):
    """A patient's arm in one experiment, with the step, version and touchpoint that first assigned it."""

    __tablename__ = "experiment_assignments"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    journey: Mapped[str] = mapped_column(String(128))
    experiment: Mapped[str] = mapped_column(String(128))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    arm: Mapped[str] = mapped_column(String(64))
    step: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(32))
    touchpoint_id: Mapped[int | None] = mapped_column(BigId)
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (UniqueConstraint("journey", "experiment", "patient_id", name="uq_experiment_assignment"),)
