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
import json
from collections import Counter
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from sqlalchemy import Connection, extract, insert, or_, select, update

from carepath.definition.context import expression_context
from carepath.definition.events import EventIn
from carepath.definition.expressions import evaluate
from carepath.definition.portrait import WINDOWS
from carepath.definition.segments import Segment, SegmentSet
from carepath.store.statements import ID_CHUNK, execute_many, fetch, id_in
from carepath.runtime.patients import load_patients
from carepath.runtime.portrait import ensure_rows, raw_time, with_portraits
from carepath.runtime.segment_cuts import compared_fields, position
from carepath.store.schema import Patient, Portrait, PortraitDay, StoreMeta

if TYPE_CHECKING:
    from carepath.engine import Engine

SOURCE = "carepath-segments"
ENTERED, LEFT = "segment.entered", "segment.left"
_SWEPT = "segments_swept_on"  # store_meta: the last day time edges were refreshed


def members_of(view: Any, segments: SegmentSet, now: datetime) -> set[str]:
    """The segments a patient (a :class:`PatientView` with its portrait) is in now."""
    if not view.portrait.sensitive_consent:  # the patient record's conditions follow the same rule
        kept = tuple(c for c in view.conditions if not segments.sensitive_code(c))
        if kept != view.conditions:  # (a copy of the view only when a condition is left out)
            view = dataclasses.replace(view, conditions=kept)
    signature = _signature(segments)
    key = signature(view) if signature is not None else None
    if len(_MEMBERS) > 8 and segments.fingerprint not in _MEMBERS:
        _MEMBERS.clear()
    cache = _MEMBERS.setdefault(segments.fingerprint, {})
    if key is not None and key in cache:
        return set(cache[key])
    found = _evaluate(view, segments, now)
    if key is not None:
        if len(cache) > 50_000:
            cache.clear()
        cache[key] = frozenset(found)
    return found


#: membership by the values the segment conditions read (few distinct ones among many patients)
_MEMBERS: dict[tuple, dict[tuple, frozenset[str]]] = {}
_SIGNATURES: dict[tuple, Any] = {}
_METHOD_DATA = {"has": ("v", "conditions"), "tagged": ("v", "tags")}


def _signature(segments: SegmentSet) -> Any:
    """A function giving the values every segment condition reads of a patient (so equal values mean equal
    membership), or ``None`` when a condition reads something else (``now``, the whole patient)."""
    key = segments.fingerprint
    if key in _SIGNATURES:
        return _SIGNATURES[key]
    from carepath.definition import expression_checks as checks

    parts: list[tuple[str, str]] = []
    trees = []
    usable = True
    for seg in segments.segments.values():
        tree = checks.parse(seg.when, condition=True)
        if tree is None:
            usable = False
            break
        trees.append(tree)
        for use in checks.uses(tree):
            if use.root != "patient" or not use.path:
                usable = False
            elif use.path[0] == "portrait":
                if len(use.path) < 2:
                    usable = False
                else:
                    parts.append(("p", "diagnoses" if use.path[1] == "has_diagnosis" else use.path[1]))
            else:
                parts.append(_METHOD_DATA.get(use.path[0], ("v", use.path[0])))
    fields = sorted(set(parts))
    # a number read only in comparisons with constants counts by its place among them (segment_cuts)
    cuts = compared_fields(trees, Counter(parts)) if usable else {}
    reads = [(where == "v", name, cuts.get((where, name))) for where, name in fields]

    def signature(view: Any) -> tuple:
        return tuple(getattr(view if own else view.portrait, name) if scale is None
                     else position(getattr(view if own else view.portrait, name), scale)
                     for own, name, scale in reads)

    _SIGNATURES.clear()
    _SIGNATURES[key] = signature if usable else None
    return _SIGNATURES[key]


def _evaluate(view: Any, segments: SegmentSet, now: datetime) -> set[str]:
    ctx = expression_context(view, now=now)
    names, combined = _combined(segments)
    if combined is not None:
        try:  # every condition in one evaluation (one sandbox context instead of one per segment)
            return {name for name, hit in zip(names, combined(**ctx)) if hit}
        except Exception:  # noqa: BLE001 - a condition failing for this patient: evaluate them one by one
            pass
    return {s.name for s in segments.segments.values() if evaluate(s.when, ctx).value}


_COMBINED: dict[tuple, tuple[list[str], Any]] = {}


def _combined(segments: SegmentSet) -> tuple[list[str], Any]:
    """The names of the segments and one compiled condition giving the truth of each, in order."""
    key = segments.fingerprint
    if key not in _COMBINED:
        from carepath.definition.expressions import compile_condition

        names = list(segments.segments)
        source = "[" + ", ".join(f"(({segments.segments[n].when}) and true)" for n in names) + "]"
        try:
            compiled = compile_condition(source) if names else None
        except Exception:  # noqa: BLE001 - each condition compiles alone (checked at load)
            compiled = None
        _COMBINED.clear()
        _COMBINED[key] = (names, compiled)
    return _COMBINED[key]


def _programmes(conn: Connection, ids: list[int]) -> dict[int, list[str]]:
    out: dict[int, set[str]] = {pid: set() for pid in ids}
    for start in range(0, len(ids), ID_CHUNK):
        where, params = id_in(conn, "patient_id", ids[start:start + ID_CHUNK])
        for pid, journey in fetch(conn, f"SELECT patient_id, journey FROM enrollments WHERE {where} "
                                        "AND status = 'active'", params):
            out[pid].add(journey)
    return {pid: sorted(names) for pid, names in out.items()}


# run on the driver's cursor (carepath.store.driver), once per row: (now, segment, patient id) /
# (segment, patient id, now) / (segments, programmes, now, patient id), JSON given as text
_LEAVE = "UPDATE segment_members SET left_at = ? WHERE segment = ? AND patient_id = ? AND left_at IS NULL"
_ENTER = "INSERT INTO segment_members (segment, patient_id, entered_at) VALUES (?, ?, ?)"
_ROW = "UPDATE portraits SET segments = ?, programmes = ?, updated_at = ? WHERE patient_id = ?"


def refresh(conn: Connection, engine: "Engine", patient_ids: Iterable[int], now: datetime,
            loaded: Mapping[int, Any] | None = None) -> list[tuple[int, EventIn]]:
    """Re-evaluate the segments of these patients; ``(patient id, event)`` for each entry and exit that a
    running journey listens to (every stay is recorded in ``segment_members`` either way).

    ``loaded``: these patients' records with their portraits, read in this transaction (at ``now``, with the
    segments' sensitive codes) from their stored portrait rows and unchanged since (ingest passes the records
    it read for an event whose effects touch neither the patient, the portrait nor consent); read again when
    not given. Their active journeys (``programmes``) are read here either way."""
    segments: SegmentSet = engine.config.segments
    ids = sorted(set(patient_ids))
    if not ids:
        return []
    listened = engine.ingestor.listened()
    reuse = loaded is not None and set(loaded) == set(ids)
    records = dict(loaded) if reuse else load_patients(conn, engine.cipher, ids, now, with_addresses=False)
    programmes = _programmes(conn, list(records))
    raw_now = raw_time(conn, now)
    if not reuse:  # (a loaded portrait was read from its row: it exists)
        ensure_rows(conn, records, raw_now)
        records = with_portraits(conn, engine.cipher, records, now, segments.sensitive_code)
    derived: list[tuple[int, EventIn]] = []
    leave, enter, rows = [], [], []
    for pid, record in records.items():
        view = record.view
        fresh = tuple(programmes[pid])
        old_programmes, view.portrait.programmes = view.portrait.programmes, fresh
        now_in = set() if record.deceased else members_of(view, segments, now)
        was_in = set(view.portrait.segments)
        left, entered = sorted(was_in - now_in), sorted(now_in - was_in)
        leave += [(raw_now, name, pid) for name in left]
        enter += [(name, pid, raw_now) for name in entered]
        for kind, names in ((LEFT, left), (ENTERED, entered)):
            if kind in listened:
                derived += [(pid, _event(kind, segments.segments.get(name), name, pid, now)) for name in names]
        if now_in != was_in or fresh != old_programmes:
            rows.append((json.dumps(sorted(now_in)), json.dumps(list(fresh)), raw_now, pid))
    for statement, params in ((_LEAVE, leave), (_ENTER, enter), (_ROW, rows)):
        if params:
            execute_many(conn, statement, params)
    return derived


def _event(kind: str, segment: Segment | None, name: str, pid: int, now: datetime) -> EventIn:
    payload = {"segment": name, "dimension": segment.dimension if segment else "custom"}
    return EventIn.model_construct(type=kind, source=SOURCE, source_id=f"{kind}:{name}:{pid}:{now.isoformat()}",
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
