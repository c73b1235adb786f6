"""The patient portrait, kept up to date as facts arrive (never recomputed from scratch).

Write side:

- :func:`record_fact` counts one fact of a kind (``reply``, ``click``, ``visit``...) for a
  patient: its all-time total and last time (``portrait_counts``), its patient-local day
  (``portrait_days``, whose sums are the 30- and 90-day counts) and, for an interaction
  kind, the patient's last interaction. Other modules record their facts with one call
  (``record_fact(conn, patient_id, "checkin", at)``) after declaring the kind once with
  :func:`carepath.definition.portrait.register_kind`.
- :data:`UPDATERS` maps an event type to what it changes; ingest calls :func:`apply_event`
  for every event it applies. ``register_updater("checkin.recorded", counts("checkin"))``
  is how a new event type feeds the portrait.
- the dispatcher records messages sent (:func:`record_sends`), receipts record deliveries.

Why per-day rows: a window count must drop when a click becomes 31 days old even if nothing
happens that day. Summing the day rows in the window at read time is always right, costs one
indexed range per patient and kind, and needs no job to run at midnight; only segment
membership (which must emit events) is refreshed when a window edge passes
(:mod:`carepath.runtime.segments`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any, Callable, Iterable

from sqlalchemy import Connection, delete, select, text

from carepath.definition.portrait import KINDS, WINDOWS
from carepath.store.statements import execute, execute_many, fetch
from carepath.runtime.policy import zone
from carepath.runtime.scheduling import executemany_raw
from carepath.store.crypto import Cipher
from carepath.store.schema import Patient, PortraitDay, Touchpoint
from carepath.runtime.portrait_load import (SENSITIVE_PURPOSE, from_stored_row, load_portraits, with_portraits,
                                           with_portraits_on_read)

#: the read side (the last five) lives in portrait_load
__all__ = ["KEEP_DAYS", "RECENT", "IDLE_PREFIX", "raw_time", "record_facts", "record_fact", "cancel_idle",
           "change_facts", "add_diagnoses", "Updater", "register_updater", "Counted", "counts", "INPATIENT_CLASSES",
           "apply_event", "record_diagnoses", "sent_messages", "record_sends", "record_delivered", "prune_days",
           "ROW_STATEMENT", "ensure_row", "ensure_rows", "SENSITIVE_PURPOSE", "from_stored_row", "load_portraits",
           "with_portraits", "with_portraits_on_read"]

KEEP_DAYS = max(WINDOWS) + 1  # day rows older than this are pruned by maintenance
RECENT = 20  # visits, admissions and reports kept in the fact document (counts are kept apart)
IDLE_PREFIX = "idle:"  # occurrence of the touchpoints idle triggers plan

_COUNT_SQL = ("INSERT INTO portrait_counts (patient_id, kind, total, last_at) VALUES (?, ?, ?, ?) "
              "ON CONFLICT (patient_id, kind) DO UPDATE SET total = portrait_counts.total + excluded.total, "
              "last_at = CASE WHEN portrait_counts.last_at IS NULL OR excluded.last_at > portrait_counts.last_at "
              "THEN excluded.last_at ELSE portrait_counts.last_at END")
_DAY_SQL = ("INSERT INTO portrait_days (patient_id, kind, day, n) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (patient_id, kind, day) DO UPDATE SET n = portrait_days.n + excluded.n")
_ROW_SQL = ("INSERT INTO portraits (patient_id, admitted, interaction_seq, programmes, segments, updated_at) "
            "VALUES (:p, :f, 0, '[]', '[]', :now) ON CONFLICT (patient_id) DO NOTHING")
#: run on the driver's cursor (carepath.store.driver), ``?`` marks: at, now, patient id, at
_INTERACTION_SQL = ("UPDATE portraits SET last_interaction_at = ?, interaction_seq = interaction_seq + 1, "
                    "updated_at = ? WHERE patient_id = ? AND (last_interaction_at IS NULL "
                    "OR last_interaction_at < ?)")
#: :data:`ROW_STATEMENT` for the driver's cursor: patient id, False, now
_ROW_DRIVER_SQL = _ROW_SQL.replace(":p", "?").replace(":f", "?").replace(":now", "?")


def raw_time(conn: Connection, at: datetime) -> Any:
    """A datetime as this database's raw SQL takes it (SQLite stores naive UTC text)."""
    at = at.astimezone(zone("UTC"))
    # SQLite: the text SQLAlchemy itself stores, so comparisons between the two agree
    return at.strftime("%Y-%m-%d %H:%M:%S.%f") if conn.dialect.name == "sqlite" else at


def record_facts(conn: Connection, facts: Iterable[tuple[int, str, datetime, str]], now: datetime) -> None:
    """Count facts ``(patient id, kind, at, patient's zone name)`` in bulk (a few statements for any number)."""
    counts: dict[tuple[int, str], list] = {}
    days: dict[tuple[int, str, date], int] = defaultdict(int)
    moved: dict[int, datetime] = {}
    local_days: dict[tuple[datetime, str], date] = {}  # a batch's sends share one instant: its day once per zone
    for pid, kind, at, tz in facts:
        entry = counts.setdefault((pid, kind), [0, at])
        entry[0] += 1
        if at > entry[1]:
            entry[1] = at
        day = local_days.get((at, tz))
        if day is None:
            day = local_days[(at, tz)] = at.astimezone(zone(tz)).date()
        days[(pid, kind, day)] += 1
        if KINDS.get(kind) is not None and KINDS[kind].interaction:
            moved[pid] = max(moved.get(pid, at), at)
    if not counts:
        return
    # straight through the driver: this runs on the dispatcher's hot path for every message sent
    executemany_raw(conn, _COUNT_SQL, [(p, k, n, at) for (p, k), (n, at) in counts.items()], (3,))
    sqlite = conn.dialect.name == "sqlite"
    executemany_raw(conn, _DAY_SQL, [(p, k, d.isoformat() if sqlite else d, n) for (p, k, d), n in days.items()],
                    ())
    if moved:
        raw_now = raw_time(conn, now)
        execute_many(conn, _ROW_DRIVER_SQL, [(p, False, raw_now) for p in moved])
        raw_at = {p: raw_time(conn, at) for p, at in moved.items()}
        execute_many(conn, _INTERACTION_SQL, [(at, raw_now, p, at) for p, at in raw_at.items()])
        # a patient who did something is not idle: an idle message not yet sent is cancelled (it re-arms)
        cancel_idle(conn, list(moved), "cancelled: the patient interacted again", now)


def record_fact(conn: Connection, patient_id: int, kind: str, at: datetime, tz: str | None = None,
                now: datetime | None = None) -> None:
    """Count one fact of ``kind`` for a patient at ``at`` (``tz``: the patient's zone, read when not given)."""
    if tz is None:
        tz = conn.execute(select(Patient.tz).where(Patient.id == patient_id)).scalar() or "Asia/Shanghai"
    record_facts(conn, [(patient_id, kind, at, tz)], now or at)


#: run on the driver's cursor (carepath.store.driver) per patient: reason, time, patient id, the idle prefix pattern
_CANCEL_IDLE_SQL = ("UPDATE touchpoints SET status = 'cancelled', reason = ?, updated_at = ? "
                    "WHERE patient_id = ? AND status = 'scheduled' AND occurrence LIKE ?")


def cancel_idle(conn: Connection, patient_ids: list[int], reason: str, now: datetime) -> None:
    """Cancel idle-trigger messages not yet sent to these patients (they are no longer idle)."""
    if patient_ids:
        raw_now = raw_time(conn, now)
        execute_many(conn, _CANCEL_IDLE_SQL, [(reason, raw_now, p, IDLE_PREFIX + "%") for p in patient_ids])


# ------------------------------------------------------------------ the fact document (encrypted)


# run on the driver's cursor (carepath.store.driver), ``?`` marks: they run for every visit, admission and report
_DOC_SQL = "SELECT facts_enc FROM portraits WHERE patient_id = ?"
_DOC_LOCKED_SQL = _DOC_SQL + " FOR UPDATE"
_ADMITTED_SQL = "UPDATE portraits SET admitted = ? WHERE patient_id = ?"  # the flag, the patient id
_WRITE_DOC_SQL = "UPDATE portraits SET facts_enc = ?, key_id = ?, updated_at = ? WHERE patient_id = ?"


def _set_admitted(conn: Connection, patient_id: int, admitted: bool) -> None:
    execute(conn, _ADMITTED_SQL, (admitted, patient_id))


def change_facts(conn: Connection, cipher: Cipher, patient_id: int, now: datetime,
                 change: Callable[[dict[str, Any]], None], admitted: bool | None = None) -> None:
    """Read, change and write back a patient's fact document (encrypted); ``admitted`` sets that flag too."""
    ensure_row(conn, patient_id, now)
    rows = fetch(conn, _DOC_LOCKED_SQL if conn.dialect.name == "postgresql" else _DOC_SQL, (patient_id,))
    doc = json.loads(cipher.decrypt(rows[0][0] if rows else None) or "{}")
    change(doc)
    execute(conn, _WRITE_DOC_SQL, (
        cipher.encrypt(json.dumps(doc, ensure_ascii=False, default=str)), cipher.current, raw_time(conn, now),
        patient_id))
    if admitted is not None:
        _set_admitted(conn, patient_id, admitted)


def _push(doc: dict[str, Any], name: str, item: dict[str, Any]) -> None:
    doc[name] = ([*doc.get(name, []), item])[-RECENT:]


def add_diagnoses(doc: dict[str, Any], codes: Iterable[str], at: datetime) -> None:
    """Each code with the first and last time it was seen."""
    found = {d["code"]: d for d in doc.get("diagnoses", [])}
    for raw in codes:
        code = str(raw).strip().upper()
        if not code:
            continue
        entry = found.setdefault(code, {"code": code, "first": at.date().isoformat()})
        entry["last"] = at.date().isoformat()
    doc["diagnoses"] = list(found.values())


# ------------------------------------------------------------------ event updaters

Updater = Callable[[Connection, Any, int, Any, datetime], None]  # (conn, cipher, patient id, event, now)
UPDATERS: dict[str, list[Updater]] = defaultdict(list)


def register_updater(event_type: str, updater: Updater) -> None:
    """Make events of ``event_type`` change the portrait (several updaters may share a type)."""
    UPDATERS[event_type].append(updater)


class Counted(list):
    """Facts an updater counted while a caller collects them (:func:`apply_event` with ``collect``), to be
    written together with :func:`record_facts`: ``(patient id, kind, at, zone)`` each."""


def counts(kind: str) -> Updater:
    """An updater that counts one fact of ``kind`` at the event's time."""

    def update_(conn: Connection, cipher: Any, patient_id: int, ev: Any, now: datetime,
                collect: Counted | None = None, tz: str | None = None) -> None:
        if collect is not None and tz is not None:
            collect.append((patient_id, kind, ev.occurred_at, tz))
        else:
            record_fact(conn, patient_id, kind, ev.occurred_at, tz, now=now)

    update_.counts = kind  # type: ignore[attr-defined]
    return update_


def _department(ev: Any) -> str | None:
    return ev.payload.get("department") or ev.payload.get("ward")


def _visit(conn: Connection, cipher: Any, pid: int, ev: Any, now: datetime) -> None:
    change_facts(conn, cipher, pid, now, lambda d: (_push(d, "visits", {
        "at": ev.occurred_at.isoformat(), "department": _department(ev)}), d.update(last_department=_department(ev))))


def _admitted(conn: Connection, cipher: Any, pid: int, ev: Any, now: datetime) -> None:
    def change(d: dict) -> None:
        _push(d, "admissions", {"at": ev.occurred_at.isoformat(), "department": _department(ev)})
        d["last_department"] = _department(ev)

    change_facts(conn, cipher, pid, now, change, admitted=True)
    cancel_idle(conn, [pid], "cancelled: the patient was admitted", now)


INPATIENT_CLASSES = {"inpatient", "i", "imp", "住院"}
_ADMITTED_NOW = "SELECT admitted FROM portraits WHERE patient_id = ?"  # on the driver's cursor (statements.fetch)


def _discharged(conn: Connection, cipher: Any, pid: int, ev: Any, now: datetime) -> None:
    """The end of a stay counts as a discharge; the end of an outpatient visit (the same event type from many
    HIS, told apart by ``patient_class`` or by no admission before it) counts as nothing more than its visit."""
    was_admitted = next(iter(fetch(conn, _ADMITTED_NOW, (pid,))), (None,))[0]
    inpatient = bool(was_admitted) or str(ev.payload.get("patient_class") or "").strip().lower() in INPATIENT_CLASSES
    if inpatient:
        record_fact(conn, pid, "discharge", ev.occurred_at, now=now)

    def change(d: dict) -> None:
        if d.get("admissions"):
            d["admissions"][-1]["discharged_at"] = ev.occurred_at.isoformat()
        diagnosis = ev.payload.get("diagnosis")
        if isinstance(diagnosis, str) and diagnosis.strip() and " " not in diagnosis.strip():
            add_diagnoses(d, [diagnosis], ev.occurred_at)

    change_facts(conn, cipher, pid, now, change, admitted=False)


def _admission_reversed(conn: Connection, cipher: Any, pid: int, ev: Any, now: datetime) -> None:
    ensure_row(conn, pid, now)
    _set_admitted(conn, pid, False)


def _discharge_reversed(conn: Connection, cipher: Any, pid: int, ev: Any, now: datetime) -> None:
    ensure_row(conn, pid, now)
    _set_admitted(conn, pid, True)


def _report(conn: Connection, cipher: Any, pid: int, ev: Any, now: datetime) -> None:
    change_facts(conn, cipher, pid, now, lambda d: _push(d, "reports", {
        "at": ev.occurred_at.isoformat(), "report": ev.payload.get("report"), "abnormal": ev.payload.get("abnormal")}))


def _survey(conn: Connection, cipher: Any, pid: int, ev: Any, now: datetime) -> None:
    p = ev.payload
    change_facts(conn, cipher, pid, now, lambda d: d.update(survey={
        "name": p.get("survey"), "nps": p.get("nps"), "satisfaction": p.get("satisfaction"),
        "at": ev.occurred_at.isoformat()}))


for _type, _updaters in {
        "message.replied": [counts("reply")], "message.clicked": [counts("click")],
        "survey.completed": [counts("survey"), _survey], "checkin.recorded": [counts("checkin")],
        "visit.checked_in": [counts("visit"), _visit], "encounter.admitted": [_admitted, counts("admission")],
        "encounter.discharged": [_discharged], "report.ready": [counts("report"), _report],
        "encounter.admission_cancelled": [_admission_reversed],
        "encounter.discharge_cancelled": [_discharge_reversed],
        # the sensitive consent decides which diagnoses segments see: membership is evaluated again
        "consent.changed": [lambda conn, cipher, pid, ev, now: None]}.items():
    for _u in _updaters:
        register_updater(_type, _u)


def apply_event(conn: Connection, cipher: Cipher, patient_id: int, ev: Any, now: datetime,
                collect: Counted | None = None, tz: str | None = None) -> bool:
    """Apply an event to the patient's portrait; whether anything in it changed.

    With ``collect`` (and the patient's zone ``tz``), counted facts are appended to it for the
    caller to write in bulk (:func:`record_facts`) instead of one by one."""
    changed = False
    record = ev.payload.get("patient")
    if isinstance(record, dict) and record.get("conditions"):
        codes = [c for c in record["conditions"] if isinstance(c, str)]
        change_facts(conn, cipher, patient_id, now, lambda d: add_diagnoses(d, codes, ev.occurred_at))
        changed = True
    for updater in UPDATERS.get(ev.type, ()):
        if getattr(updater, "counts", None) and collect is not None:
            updater(conn, cipher, patient_id, ev, now, collect, tz)
        else:
            updater(conn, cipher, patient_id, ev, now)
        changed = True
    return changed


def record_diagnoses(conn: Connection, cipher: Cipher, patient_id: int, codes: Iterable[str], at: datetime) -> None:
    """Add diagnoses from a patient record (registration, an HIS update) with the time they were seen."""
    codes = list(codes)
    if codes:
        change_facts(conn, cipher, patient_id, at, lambda d: add_diagnoses(d, codes, at))


# ------------------------------------------------------------------ dispatcher and receipts


_NOT_MESSAGES = ("staff-task", "tag")  # channels a "sent" touchpoint names when it sent no message


def sent_messages(finals: Iterable[dict], ctx: Any) -> list[tuple[int, str]]:
    """``(patient id, zone)`` of the messages among a dispatcher batch's results (``finals``) that were sent."""
    out = []
    for f in finals:
        if f["b_status"] == "sent" and f["b_channel"] not in _NOT_MESSAGES:
            pid = ctx.by_id[f["b_id"]].patient_id
            out.append((pid, ctx.patients[pid].view.tz))
    return out


def record_sends(conn: Connection, sent: Iterable[tuple[int, str]], now: datetime) -> None:
    """Messages sent now: ``(patient id, patient's zone)`` each (the dispatcher's results, in bulk)."""
    record_facts(conn, [(pid, "message", now, tz) for pid, tz in sent], now)


def record_delivered(conn: Connection, touchpoint_id: int, at: datetime) -> None:
    """A provider confirmed delivery of a touchpoint's message."""
    row = conn.execute(select(Touchpoint.patient_id, Patient.tz).join(Patient, Patient.id == Touchpoint.patient_id)
                       .where(Touchpoint.id == touchpoint_id)).first()
    if row is not None:
        record_facts(conn, [(row.patient_id, "delivered", at, row.tz)], at)


def prune_days(conn: Connection, now: datetime) -> int:
    """Delete day rows older than every window (they no longer count anywhere)."""
    oldest = (now - timedelta(days=KEEP_DAYS + 1)).date()
    return conn.execute(delete(PortraitDay).where(PortraitDay.day < oldest)).rowcount or 0


ROW_STATEMENT = text(_ROW_SQL).bindparams(f=False)


def ensure_rows(conn: Connection, patient_ids: Iterable[int], raw_now: Any) -> None:
    """Create the portrait rows of these patients that do not exist yet (``raw_now``: :func:`raw_time`), in one
    ``executemany`` on the driver's cursor (what ``ROW_STATEMENT`` does through SQLAlchemy)."""
    execute_many(conn, _ROW_DRIVER_SQL, [(p, False, raw_now) for p in patient_ids])


def ensure_row(conn: Connection, patient_id: int, now: datetime) -> None:
    """Create the patient's portrait row when it does not exist yet."""
    execute(conn, _ROW_DRIVER_SQL, (patient_id, False, raw_time(conn, now)))
