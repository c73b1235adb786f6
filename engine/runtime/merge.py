"""Patient merges (HL7 ADT^A40, FHIR ``Patient.link`` replaced-by): history follows the surviving record."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, update

from carepath.runtime.family import move_related
from carepath.store.audit import audit
from carepath.store.schema import CheckinRow, Consent, Enrollment, Event, Patient, ReadingRow, StaffTask, Touchpoint

#: Tables whose rows belong to a patient and move to the survivor.
_OWNED = (Enrollment, Touchpoint, Event, StaffTask, Consent, CheckinRow, ReadingRow)  # check-ins: issue 19


def merge_patients(conn: Connection, *, survivor: int, merged: int, now: datetime, actor: str) -> None:
    """Move ``merged``'s enrollments, touchpoints, events, tasks and consents to ``survivor``; audited.

    The merged record stays (its MRN keeps resolving, to the survivor) so that
    late events naming the old MRN still reach the right patient.
    """
    if survivor == merged:
        return
    for table in _OWNED:
        conn.execute(update(table).where(table.patient_id == merged).values(patient_id=survivor))
    move_related(conn, survivor=survivor, merged=merged)  # family and guardians (issue 19)
    conn.execute(update(Patient).where(Patient.id == merged).values(merged_into=survivor, updated_at=now))
    conn.execute(update(Patient).where(Patient.merged_into == merged).values(merged_into=survivor))
    audit(conn, actor=actor, action="patient.merged", entity="patient", entity_id=survivor, at=now,
          detail={"merged": merged})
