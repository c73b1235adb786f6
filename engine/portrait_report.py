"""Read-side views of portraits and segments for people: masked, and sensitive data kept below group size."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from carepath.definition.segments import SegmentSet
from carepath.masking import mask_name
from carepath.runtime.patients import load_patients
from carepath.runtime.portrait import with_portraits
from carepath.store.crypto import Cipher
from carepath.store.schema import Patient, Portrait, SegmentMember

HIDDEN = "sensitive diagnosis (not shown)"


def portrait_data(conn: Connection, cipher: Cipher, patient_id: int, segments: SegmentSet,
                  now: datetime) -> dict[str, Any] | None:
    """One patient's portrait as ``carepath patients show`` prints it: name masked, sensitive diagnoses hidden."""
    records = load_patients(conn, cipher, [patient_id], now, with_addresses=False)
    if patient_id not in records:
        return None
    record = with_portraits(conn, cipher, records, now, segments.sensitive_code)[patient_id]
    view, portrait = record.view, record.view.portrait
    fields = portrait.as_dict()
    codes = portrait.all_diagnoses()
    fields["diagnoses"] = [c if not segments.sensitive_code(c) else HIDDEN for c in codes]
    fields["chronic"] = portrait.chronic
    fields.update({k: list(v) for k, v in fields.items() if isinstance(v, tuple)})
    return {"patient": {"id": patient_id, "name": mask_name(view.name), "sex": view.sex, "age": view.age,
                        "deceased": record.deceased},
            "portrait": fields}


def segment_counts(conn: Connection, segments: SegmentSet) -> list[dict[str, Any]]:
    """Each segment with its member count (``None`` with ``suppressed`` for a sensitive one below group size)."""
    counts = dict(conn.execute(select(SegmentMember.segment, func.count()).where(SegmentMember.left_at.is_(None))
                               .group_by(SegmentMember.segment)).all())
    out = []
    for seg in sorted(segments.segments.values(), key=lambda s: (s.dimension, s.name)):
        n = counts.get(seg.name, 0)
        hidden = seg.sensitive and n < segments.min_group_size
        out.append({**seg.to_json(), "members": None if hidden else n, "suppressed": hidden})
    return out


def evaluated_patients(conn: Connection) -> tuple[int, int]:
    """``(patients, of which with evaluated segments)``: living, not merged."""
    total = conn.execute(select(func.count()).select_from(Patient).where(
        Patient.merged_into.is_(None), Patient.deceased.is_(False))).scalar() or 0
    evaluated = conn.execute(select(func.count()).select_from(Portrait).join(Patient, Patient.id == Portrait.patient_id)
                             .where(Patient.merged_into.is_(None), Patient.deceased.is_(False))).scalar() or 0
    return total, evaluated


def dimension_totals(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Members per dimension (shown counts only)."""
    totals: Counter = Counter()
    for r in rows:
        totals[r["dimension"]] += r["members"] or 0
    return dict(totals)


def segment_members(conn: Connection, cipher: Cipher, name: str, page: int, per_page: int,
                    now: datetime) -> tuple[int, list[dict[str, Any]]]:
    """``(members in all, one page of them)``: masked name, sex, age and since when."""
    total = conn.execute(select(func.count()).select_from(SegmentMember).where(
        SegmentMember.segment == name, SegmentMember.left_at.is_(None))).scalar() or 0
    rows = conn.execute(select(SegmentMember.patient_id, SegmentMember.entered_at).where(
        SegmentMember.segment == name, SegmentMember.left_at.is_(None)).order_by(SegmentMember.patient_id)
        .offset((page - 1) * per_page).limit(per_page)).all()
    people = load_patients(conn, cipher, [r.patient_id for r in rows], now, with_addresses=False)
    return total, [{"patient_id": r.patient_id, "name": mask_name(people[r.patient_id].view.name),
                    "sex": people[r.patient_id].view.sex, "age": people[r.patient_id].view.age,
                    "since": r.entered_at.isoformat()} for r in rows if r.patient_id in people]
