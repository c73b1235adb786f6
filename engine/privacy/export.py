"""``carepath patients export ID``: everything held about one patient, decrypted, with a manifest (PIPL art. 45).

The document is ``{"manifest": {...}, "data": {kind: [rows]}}``; the manifest names the format, the patient,
when it was made, and every kind of data in :mod:`carepath.privacy.kinds` with its row count and what it
is (a kind with no rows is listed with 0, so a reader sees it was looked at). The export is audited
(``patient.exported``, with the counts only).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from carepath.privacy.kinds import Subject, kinds
from carepath.store.audit import audit
from carepath.store.schema import Patient

if TYPE_CHECKING:
    from carepath.store.crypto import Cipher

FORMAT = "carepath-patient-export/1"


class NoSuchPatient(LookupError):
    """No patient with that id."""


def subject_of(conn: Connection, patient_id: int) -> tuple[Subject, datetime | None]:
    """The patient to act on and when they were erased (None while not); :class:`NoSuchPatient` if unknown."""
    row = conn.execute(select(Patient.id, Patient.mrn_hash, Patient.erased_at)
                       .where(Patient.id == patient_id)).first()
    if row is None:
        raise NoSuchPatient(f"no patient with id {patient_id}")
    return Subject(row.id, row.mrn_hash), row.erased_at


def export_patient(conn: Connection, cipher: "Cipher", patient_id: int, *, now: datetime,
                   actor: str) -> dict[str, Any]:
    """The export document for ``patient_id`` (see the module docstring), audited in ``conn``'s transaction."""
    subject, erased_at = subject_of(conn, patient_id)
    data: dict[str, list[dict[str, Any]]] = {}
    manifest_kinds: dict[str, dict[str, Any]] = {}
    for kind in kinds():
        rows = kind.export_rows(conn, cipher, subject)
        data[kind.name] = rows
        manifest_kinds[kind.name] = {"count": len(rows), "table": kind.table.name, "description": kind.description}
    counts = {name: k["count"] for name, k in manifest_kinds.items()}
    audit(conn, actor=actor, action="patient.exported", entity="patient", entity_id=patient_id, at=now,
          detail={"kinds": counts})
    manifest = {"format": FORMAT, "patient_id": patient_id, "exported_at": now.isoformat(),
                "erased_at": erased_at.isoformat() if erased_at else None, "kinds": manifest_kinds}
    return {"manifest": manifest, "data": data}
