"""Related persons of a patient (family members, guardians): one row each, contacts encrypted at rest.

Kept next to :mod:`carepath.store.schema` (which it extends) so that file stays small. Every change
here needs an Alembic migration too.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from carepath.store.schema import Base, BigId, UTCDateTime


class RelatedPerson(Base):
    """A family member or guardian of a patient, with their own addresses and their own consent.

    ``ref`` is the identity the source gave (a FHIR RelatedPerson id, an HL7 NK1 set id, an id in a
    ``patient.related_person_added`` payload): the same ref updates the same row. ``name_enc``,
    ``phone_enc`` and ``openid_enc`` are encrypted with the store's cipher (``key_id`` says with which
    key); ``phone_hash``/``openid_hash`` are keyed look-up hashes (an unsubscribe reply from the
    person's own phone finds them). ``removed_at`` is set by ``patient.related_person_removed``;
    ``unsubscribed_at`` by their own unsubscribe, which never touches the patient's consent.
    """

    __tablename__ = "related_persons"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    ref: Mapped[str] = mapped_column(String(128))
    relationship: Mapped[str] = mapped_column(String(32))
    guardian: Mapped[bool] = mapped_column(Boolean, default=False)
    name_enc: Mapped[str | None] = mapped_column(Text)
    phone_enc: Mapped[str | None] = mapped_column(Text)
    phone_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    openid_enc: Mapped[str | None] = mapped_column(Text)
    openid_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    key_id: Mapped[str] = mapped_column(String(32))
    marketing_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (UniqueConstraint("patient_id", "ref", name="uq_related_person_ref"),)
