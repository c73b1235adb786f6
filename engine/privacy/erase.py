"""``carepath patients erase ID``: remove or irreversibly de-identify a patient's personal data (PIPL art. 47).

Each kind in :mod:`carepath.privacy.kinds` is deleted or de-identified as its entry says, in one
transaction with the ``patient.erased`` audit entry (which holds counts, never a value). What reports count
stays: touchpoints, deliveries, staff tasks, survey scores, segment stays and event rows are kept, tied to
an anonymous patient row. That row keeps only the keyed hash of the MRN (no value can be read back from it)
so that a later event for the same MRN is recognised and refused (:func:`erased_refusal`) instead of
registering the patient again; a patient record sent for that MRN changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, select, update

from carepath.privacy.export import subject_of
from carepath.privacy.kinds import deidentified_payload, kinds
from carepath.store.audit import audit
from carepath.runtime.work_queue import OPEN_STATUSES
from carepath.store.schema import Enrollment, Event, Patient, StaffTask, Touchpoint

ERASED = "erased"


@dataclass
class ErasureReport:
    """What one erasure changed: rows per kind (deleted or de-identified)."""

    patient_id: int
    erased_at: datetime
    already: bool = False
    rows: dict[str, int] = field(default_factory=dict)
    stopped: int = 0  # touchpoints, enrollments and staff tasks still pending, now cancelled or exited

    def summary(self) -> str:
        if self.already:
            return f"patient {self.patient_id} was already erased on {self.erased_at:%Y-%m-%d %H:%M} UTC"
        done = ", ".join(f"{k} {n}" for k, n in self.rows.items() if n)
        stopped = f"; {self.stopped} pending touchpoint(s), enrollment(s) or task(s) stopped" if self.stopped else ""
        return f"patient {self.patient_id} erased: {done or 'no rows held'}{stopped}"


def erase_patient(conn: Connection, patient_id: int, *, now: datetime, actor: str) -> ErasureReport:
    """Erase ``patient_id`` in ``conn``'s transaction (idempotent: erasing again changes nothing)."""
    subject, erased_at = subject_of(conn, patient_id)
    if erased_at is not None:
        return ErasureReport(patient_id, erased_at, already=True)
    report = ErasureReport(patient_id, now)
    for kind in reversed(kinds()):  # dependants (notes, deliveries) before what they hang on
        report.rows[kind.name] = kind.apply_erasure(conn, subject)
    report.stopped = _stop_pending(conn, patient_id, now)
    conn.execute(update(Patient).where(Patient.id == patient_id).values(erased_at=now, updated_at=now))
    audit(conn, actor=actor, action="patient.erased", entity="patient", entity_id=patient_id, at=now,
          detail={"rows": {k: n for k, n in report.rows.items() if n}})
    return report


def _stop_pending(conn: Connection, patient_id: int, now: datetime) -> int:
    """Nothing more is sent to, planned for or asked about an erased patient."""
    reason = "patient erased"
    n = conn.execute(update(Touchpoint).where(Touchpoint.patient_id == patient_id,
                                              Touchpoint.status.in_(("scheduled", "claimed"))).values(
        status="cancelled", reason=f"cancelled: {reason}", lease_until=None, updated_at=now)).rowcount or 0
    n += conn.execute(update(Enrollment).where(Enrollment.patient_id == patient_id, Enrollment.status == "active")
                      .values(status="exited", exited_at=now, exit_reason=reason)).rowcount or 0
    n += conn.execute(update(StaffTask).where(StaffTask.patient_id == patient_id,
                                              StaffTask.status.in_(OPEN_STATUSES)).values(
        status="cancelled", closed_at=now, resolution=f"cancelled: {reason}")).rowcount or 0
    return n


def erased_refusal(conn: Connection, mrn_hashes: Sequence[str]) -> tuple[int, str] | None:
    """``(patient id, reason)`` when the MRN (its keyed hashes under the ring's keys) belongs to an erased
    patient, else None (ingest refuses the event)."""
    if not mrn_hashes:
        return None
    row = conn.execute(select(Patient.id, Patient.erased_at).where(Patient.mrn_hash.in_(list(mrn_hashes)),
                                                                   Patient.erased_at.is_not(None))).first()
    if row is None:
        return None
    return row.id, erased_reason(row.erased_at)


def erased_reason(erased_at: datetime) -> str:
    """Why an event of a patient erased at ``erased_at`` is refused."""
    return (f"the patient's data was erased on {erased_at:%Y-%m-%d} at their request; "
            "events for an erased patient are not applied or kept")


def strip_refused_event(conn: Connection, event_id: int) -> None:
    """A refused event of an erased patient keeps no personal value: payload emptied, source id replaced."""
    payload = conn.execute(select(Event.payload).where(Event.id == event_id)).scalar()
    conn.execute(update(Event).where(Event.id == event_id).values(
        payload=deidentified_payload(payload), mrn_hash=None, source_id=f"{ERASED}:{event_id}"))
