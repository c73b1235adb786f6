"""Tables of the WeCom connector (next to :mod:`carepath.store.schema`, which is past its size)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from carepath.store.schema import Base, BigId, UTCDateTime


class WecomContact(Base):
    """A patient's WeCom external contact: their ``external_userid`` added by one staff member.

    ``external_key`` is a keyed hash of the external_userid (look-ups), ``external_userid_enc`` the
    id itself, encrypted. ``status``: ``active`` while the two are contacts, ``removed`` after either
    deleted the other (the row stays: a later mass-message result still names its sender).
    """

    __tablename__ = "wecom_contacts"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    connector: Mapped[str] = mapped_column(String(64))
    external_key: Mapped[str] = mapped_column(String(64))
    external_userid_enc: Mapped[str] = mapped_column(Text)
    staff_userid: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (UniqueConstraint("connector", "external_key", "staff_userid", name="uq_wecom_contact"),
                      Index("ix_wecom_contacts_patient", "connector", "patient_id", "status"))
