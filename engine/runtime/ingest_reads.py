"""The ingestor's per-event statements, built once, and what a batch of events reads once for all of them.

Building a SQLAlchemy Core statement (coercing its clauses, computing its cache key) costs more than
running a small one on SQLite; the statements every event runs are therefore built here once, with
bound parameters, and executed with the event's values.

:class:`BatchReads` is what :func:`carepath.runtime.batch_ingest.ingest_batch` reads once for the
events of a batch (a simulation tick, 200 lines of a file): the patient rows their MRNs name (with
merges and erasures) and which of those MRNs have events held for them. Each event still reads for
itself whatever an earlier event of the batch may have changed: an MRN whose event carried a patient
record, merged records or was held is read again, as ``Engine.ingest`` reads it. Only valid while no
other transaction can write (SQLite's single writer holds the batch's write lock): on PostgreSQL another
process may register, merge or erase a patient between the batch's start and an event's patient lock
(:func:`carepath.runtime.held.lock_patients`), so there each event reads for itself.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any, Iterable, Sequence

from sqlalchemy import Connection, String, bindparam, select, text

from carepath.store.statements import among
from carepath.runtime.held import HELD
from carepath.store.driver import DriverQuery
from carepath.store.schema import Enrollment, Event, Patient, Touchpoint

_STORED_COLUMNS = ("source", "source_id", "type", "patient_id", "occurred_at", "received_at", "payload", "received_via")
#: an event stored once per ``source`` + ``source_id`` (its id, or nothing for a duplicate). Written out as text with
#: the columns' types: SQLAlchemy's ``on_conflict_do_nothing`` has no cache key, so that form was compiled anew for
#: every event; this one is compiled once. The same SQL runs on SQLite and PostgreSQL.
def _store_event_sql(marks: Iterable[str]) -> str:
    return (f"INSERT INTO events ({', '.join(_STORED_COLUMNS)}, status) VALUES ({', '.join(marks)}, 'applied') "
            "ON CONFLICT (source, source_id) DO NOTHING RETURNING id")


STORE_EVENT = text(_store_event_sql(':' + c for c in _STORED_COLUMNS)).bindparams(*(bindparam(c, type_=Event.__table__.c[c].type) for c in _STORED_COLUMNS))

#: STORE_EVENT's SQL with ``?`` marks, run on SQLite's driver cursor (:mod:`carepath.store.driver`) with the values
#: in ``_STORED_COLUMNS`` order written as SQLAlchemy's types write them (datetimes as naive UTC text, the payload as
#: JSON text): that statement's execution and result handling cost more than SQLite's insert
STORE_EVENT_SQLITE = _store_event_sql("?" * len(_STORED_COLUMNS))

#: what became of an event (its outcome), written once it is applied: plain SQL run on the driver's cursor
#: (:func:`carepath.store.statements.execute`; every column a plain string or number), with the
#: values patient id, status, outcome, MRN hash, encrypted MRN, hold key and the event's id
RECORD_OUTCOME = ("UPDATE events SET patient_id = ?, status = ?, outcome = ?, mrn_hash = ?, mrn_enc = ?, hold_key = ? "
                  "WHERE id = ?")

#: a patient's active enrollments
ACTIVE_ENROLLMENTS = select(Enrollment.__table__).where(Enrollment.patient_id == bindparam("p"),
                                                        Enrollment.status == "active")
#: an enrollment row as :func:`active_enrollments` returns it (by name or position, as a SQLAlchemy row)
ActiveEnrollment = namedtuple("ActiveEnrollment",  # type: ignore[misc]
                              [column.name for column in Enrollment.__table__.columns])
_ACTIVE = DriverQuery(ACTIVE_ENROLLMENTS)

#: the statuses of a patient's enrollments of a journey (any episode) / of one episode
ENROLLMENT_STATUSES = select(Enrollment.status).where(Enrollment.patient_id == bindparam("p"),
                                                      Enrollment.journey == bindparam("j"))
EPISODE_STATUSES = ENROLLMENT_STATUSES.where(Enrollment.key == bindparam("k"))
#: whether an enrollment exists for an episode
EPISODE_KNOWN = select(Enrollment.id).where(Enrollment.patient_id == bindparam("p"),
                                            Enrollment.journey == bindparam("j"),
                                            Enrollment.key == bindparam("k")).limit(1)
#: the steps of touchpoints by id
STEPS_OF = select(Touchpoint.id, Touchpoint.step).where(Touchpoint.id.in_(bindparam("ids", expanding=True)))
ENROLLMENT_BY_ID = select(Enrollment.__table__).where(Enrollment.id == bindparam("e"))
#: the three reads above that every event of a journey with an episode key (or an ``on`` step) runs, on SQLite on the
#: driver's cursor (:class:`~carepath.store.driver.DriverQuery`; rows are tuples)
ENROLLMENT_STATUSES_Q = DriverQuery(ENROLLMENT_STATUSES)
EPISODE_STATUSES_Q = DriverQuery(EPISODE_STATUSES)
EPISODE_KNOWN_Q = DriverQuery(EPISODE_KNOWN)
ENROLLMENT_BY_ID_Q = DriverQuery(ENROLLMENT_BY_ID)  # (rows as ``ActiveEnrollment``: every column, by name)
#: ``STEPS_OF`` with the ids bound as one list (``among``: no expanding ``IN``), by whether the database is PostgreSQL
STEPS_OF_IDS = {pg: DriverQuery(select(Touchpoint.id, Touchpoint.step).where(among(Touchpoint.id, "ids", pg)))
                for pg in (False, True)}

#: patients by MRN hash (merged and erased ones too), lowest id first, by whether the database is PostgreSQL (the
#: hashes one array there, one JSON list on SQLite: see ``among``); SQLite runs it on the driver's cursor
_BY_HASH = {pg: select(Patient.id, Patient.merged_into, Patient.erased_at, Patient.mrn_hash).where(
    among(Patient.mrn_hash, "hashes", pg, String)).order_by(Patient.id) for pg in (False, True)}
PATIENTS_BY_HASH = {pg: DriverQuery(statement) for pg, statement in _BY_HASH.items()}
#: a patient row as :func:`patient_rows` returns it
PatientRow = namedtuple("PatientRow", ["id", "merged_into", "erased_at", "mrn_hash"])
#: MRN hashes with events held for their patient's record
HELD_HASHES = {pg: DriverQuery(select(Event.mrn_hash).where(Event.status == HELD, among(Event.mrn_hash, "hashes", pg,
                                                                                       String)).distinct())
               for pg in (False, True)}

CHUNK = 5000  # MRN hashes in one IN list


def active_enrollments(conn: Connection, patient_id: int) -> list[Any]:
    """The patient's active enrollments, every column (``ACTIVE_ENROLLMENTS``; every event reads them: on SQLite
    run on the driver's cursor, see :class:`~carepath.store.driver.DriverQuery`)."""
    return [ActiveEnrollment(*row) for row in _ACTIVE.rows(conn, {"p": patient_id})]


def patient_rows(conn: Connection, hashes: Sequence[str]) -> list[Any]:
    """The patient rows these MRN hashes name (``id, merged_into, erased_at, mrn_hash``), lowest id first."""
    rows: list[Any] = []
    for start in range(0, len(hashes), CHUNK):
        rows += map(PatientRow._make, PATIENTS_BY_HASH[conn.dialect.name == "postgresql"].rows(
            conn, {"hashes": list(hashes[start:start + CHUNK])}))
    return sorted(rows, key=lambda r: r.id)


def erased_row(rows: Iterable[Any]) -> Any | None:
    """The erased patient among ``rows`` (patient rows of one MRN), if any."""
    return next((r for r in rows if r.erased_at is not None), None)


def patient_of(rows: Sequence[Any]) -> int | None:
    """The patient an MRN names given its rows (lowest id first): a merged record names its survivor."""
    if not rows:
        return None
    return rows[0].merged_into or rows[0].id


class BatchReads:
    """Patient rows and held-event MRNs read once for a batch's events; stale for an MRN once an event of the
    batch may have changed them (a patient record, a merge, an event held), so that MRN is read again."""

    def __init__(self, conn: Connection, hashes: Iterable[str]) -> None:
        wanted = sorted(set(hashes))
        self._patients: dict[str, list[Any]] = {h: [] for h in wanted}
        for row in patient_rows(conn, wanted):
            self._patients[row.mrn_hash].append(row)
        self._held: set[str] = set()
        for start in range(0, len(wanted), CHUNK):
            self._held.update(row[0] for row in HELD_HASHES[conn.dialect.name == "postgresql"].rows(
                conn, {"hashes": wanted[start:start + CHUNK]}))
        self._stale: set[str] = set()
        self._all_stale = False

    def patients(self, hashes: Sequence[str]) -> list[Any] | None:
        """The patient rows of an MRN (its hashes under every key), or ``None`` when they must be read again."""
        if self._all_stale or any(h in self._stale or h not in self._patients for h in hashes):
            return None
        return sorted((r for h in hashes for r in self._patients[h]), key=lambda r: r.id)

    def none_held(self, hashes: Sequence[str]) -> bool:
        """Whether no event is held for this MRN (known without reading; ``False``: read them)."""
        return not self._all_stale and all(h in self._patients and h not in self._held and h not in self._stale
                                           for h in hashes)

    def changed(self, hashes: Sequence[str]) -> None:
        """An event changed what is known of this MRN (its record, its held events): read it again."""
        self._stale.update(hashes)

    def changed_all(self) -> None:
        """An event changed patients other than its own (a merge): read every MRN again."""
        self._all_stale = True

