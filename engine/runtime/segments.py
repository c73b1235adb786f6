"""Segment membership, kept incrementally: re-evaluated for the patients whose portrait changed.

:func:`refresh` evaluates every segment for some patients, records who entered and who
left (``segment_members``, one row per stay; a copy of the open ones on the portrait for
the dispatcher) and returns the ``segment.entered`` / ``segment.left`` events to apply,
so journeys can enroll and exit on them. Ingest calls it for the patient of each event
that changed the portrait or their journeys; the maintenance job
:func:`refresh_time_edges` calls it for the patients whose membership may change with
time alone: those with facts on the day that just left a 30- or 90-day window, those
whose birthday it is, and, once a day, everyone when a segment reads a ``last_*_days``
field or ``now``.

Sensitive diagnoses count only with the patient's ``sensitive`` consent: without it the
segment conditions see neither ``patient.portrait.diagnoses`` nor ``patient.conditions``
in the sensitive categories.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterable

from sqlalchemy import Connection, extract, insert, or_, select, update

from carepath.definition.context import expression_context
from carepath.definition.events import EventIn
from carepath.definition.expressions import evaluate
from carepath.definition.portrait import WINDOWS
from carepath.definition.segments import Segment, SegmentSet
from carepath.runtime.patients import load_patients
from carepath.runtime.portrait import ensure_row, with_portraits
from carepath.store.schema import Enrollment, Patient, Portrait, PortraitDay, SegmentMember, StoreMeta

if TYPE_CHECKING:
    from carepath.engine import Engine

SOURCE = "carepath-segments"
ENTERED, LEFT = "segment.entered", "segment.left"
_SWEPT = "segments_swept_on"  # store_meta: the last day time edges were refreshed


def members_of(view: Any, segments: SegmentSet, now: datetime) -> set[str]:
    """The segments a patient (a :class:`PatientView` with its portrait) is in now."""
    if not view.portrait.sensitive_consent:  # the patient record's conditions follow the same rule
        view = dataclasses.replace(view, conditions=tuple(c for c in view.conditions
                                                          if not segments.sensitive_code(c)))
    ctx = expression_context(view, now=now)
    return {s.name for s in segments.segments.values() if evaluate(s.when, ctx).value}


def _programmes(conn: Connection, ids: list[int]) -> dict[int, list[str]]:
    out: dict[int, set[str]] = {pid: set() for pid in ids}
    for pid, journey in conn.execute(select(Enrollment.patient_id, Enrollment.journey).where(
            Enrollment.patient_id.in_(ids), Enrollment.status == "active")):
        out[pid].add(journey)
    return {pid: sorted(names) for pid, names in out.items()}


def refresh(conn: Connection, engine: "Engine", patient_ids: Iterable[int], now: datetime) -> list[tuple[int, EventIn]]:
    """Re-evaluate the segments of these patients; ``(patient id, event)`` for each entry and exit."""
    segments: SegmentSet = engine.config.segments
    ids = sorted(set(patient_ids))
    if not ids:
        return []
    records = load_patients(conn, engine.cipher, ids, now, with_addresses=False)
    programmes = _programmes(conn, list(records))
    for pid in records:
        ensure_row(conn, pid, now)
    records = with_portraits(conn, engine.cipher, records, now, segments.sensitive_code)
    derived: list[tuple[int, EventIn]] = []
    for pid, record in records.items():
        view = record.view
        view.portrait.programmes = fresh_programmes = tuple(programmes[pid])
        now_in = set() if record.deceased else members_of(view, segments, now)
        was_in = set(view.portrait.segments)
        for name in sorted(was_in - now_in):
            closed = conn.execute(update(SegmentMember).where(
                SegmentMember.segment == name, SegmentMember.patient_id == pid, SegmentMember.left_at.is_(None))
                .values(left_at=now).returning(SegmentMember.id)).scalars().first()
            derived.append((pid, _event(LEFT, segments.segments.get(name), name, pid, closed, now)))
        for name in sorted(now_in - was_in):
            row = conn.execute(insert(SegmentMember).values(segment=name, patient_id=pid, entered_at=now)
                               .returning(SegmentMember.id)).scalar_one()
            derived.append((pid, _event(ENTERED, segments.segments[name], name, pid, row, now)))
        conn.execute(update(Portrait).where(Portrait.patient_id == pid).values(
            segments=sorted(now_in), programmes=list(fresh_programmes), updated_at=now))
    return derived


def _event(kind: str, segment: Segment | None, name: str, pid: int, stay: int | None, now: datetime) -> EventIn:
    payload = {"segment": name, "dimension": segment.dimension if segment else "custom"}
    return EventIn.model_construct(type=kind, source=SOURCE, source_id=f"{kind}:{name}:{pid}:{stay}",
                                   patient_mrn="", occurred_at=now, payload=payload)


# ------------------------------------------------------------------ time passing


def _reads_time(segments: SegmentSet) -> bool:
    """Whether a segment's membership can change by time alone beyond windows and age (``last_*_days``, ``now``)."""
    return any("_days" in s.when.replace("_30d", "").replace("_90d", "") or "now" in s.when.split()
               for s in segments.segments.values())


def _edge_patients(conn: Connection, first: date, last: date, everyone: bool) -> list[int]:
    """Patients whose membership may have changed by time between days ``first`` and ``last`` (inclusive)."""
    if everyone:
        return list(conn.execute(select(Portrait.patient_id)).scalars())
    dropped = [PortraitDay.day.between(first - timedelta(days=w), last - timedelta(days=w)) for w in WINDOWS]
    ids = set(conn.execute(select(PortraitDay.patient_id).where(or_(*dropped)).distinct()).scalars())
    day = first
    while day <= last and (day - first).days <= 366:
        ids.update(conn.execute(select(Patient.id).where(
            extract("month", Patient.birth_date) == day.month, extract("day", Patient.birth_date) == day.day,
            Patient.merged_into.is_(None))).scalars())
        day += timedelta(days=1)
    return sorted(ids)


def refresh_time_edges(engine: "Engine", chunk: int = 500) -> int:
    """Maintenance: refresh the patients whose windows or age moved since the last run (once per local day);
    apply the entries and exits. Returns how many patients were re-evaluated."""
    from carepath.runtime.policy import zone
    from carepath.runtime.portrait import prune_days

    now = engine.clock.now()
    today = now.astimezone(zone("Asia/Shanghai")).date()
    with engine.db.begin() as conn:
        last = conn.execute(select(StoreMeta.value).where(StoreMeta.name == _SWEPT)).scalar()
        if last is not None and date.fromisoformat(last) >= today:
            return 0
        first = date.fromisoformat(last) + timedelta(days=1) if last else today
        ids = _edge_patients(conn, first, today, _reads_time(engine.config.segments))
        prune_days(conn, now)
    for start in range(0, len(ids), chunk):
        with engine.db.begin() as conn:
            engine.ingestor.apply_derived(conn, refresh(conn, engine, ids[start:start + chunk], now), now)
    with engine.db.begin() as conn:
        if conn.execute(update(StoreMeta).where(StoreMeta.name == _SWEPT).values(value=today.isoformat())).rowcount == 0:
            conn.execute(insert(StoreMeta).values(name=_SWEPT, value=today.isoformat()))
    return len(ids)
