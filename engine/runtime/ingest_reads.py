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

from typing import Any, Iterable, Sequence

from sqlalchemy import Connection, bindparam, select, text, update

from carepath.runtime.held import HELD
from carepath.store.schema import Enrollment, Event, Patient, Touchpoint

_STORED_COLUMNS = ("source", "source_id", "type", "patient_id", "occurred_at", "received_at", "payload", "received_via")
#: an event stored once per ``source`` + ``source_id`` (its id, or nothing for a duplicate). Written out as text with
#: the columns' types: SQLAlchemy's ``on_conflict_do_nothing`` has no cache key, so that form was compiled anew for
#: every event; this one is compiled once. The same SQL runs on SQLite and PostgreSQL.
STORE_EVENT = text(
    f"INSERT INTO events ({', '.join(_STORED_COLUMNS)}, status) VALUES ({', '.join(':' + c for c in _STORED_COLUMNS)}, "
    "'applied') ON CONFLICT (source, source_id) DO NOTHING RETURNING id"
).bindparams(*(bindparam(c, type_=Event.__table__.c[c].type) for c in _STORED_COLUMNS))

#: what became of an event (its outcome), written once it is applied
RECORD_OUTCOME = update(Event).where(Event.id == bindparam("r_id")).values(
    patient_id=bindparam("r_patient"), status=bindparam("r_status"), outcome=bindparam("r_outcome"),
    mrn_hash=bindparam("r_hash"), mrn_enc=bindparam("r_enc"), hold_key=bindparam("r_key"))

#: a patient's active enrollments
ACTIVE_ENROLLMENTS = select(Enrollment.__table__).where(Enrollment.patient_id == bindparam("p"),
                                                        Enrollment.status == "active")

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

#: patients by MRN hash (merged and erased ones too), lowest id first
PATIENTS_BY_HASH = select(Patient.id, Patient.merged_into, Patient.erased_at, Patient.mrn_hash).where(
    Patient.mrn_hash.in_(bindparam("hashes", expanding=True))).order_by(Patient.id)
#: MRN hashes with events held for their patient's record
HELD_HASHES = select(Event.mrn_hash).where(Event.status == HELD,
                                           Event.mrn_hash.in_(bindparam("hashes", expanding=True))).distinct()

CHUNK = 5000  # MRN hashes in one IN list


def patient_rows(conn: Connection, hashes: Sequence[str]) -> list[Any]:
    """The patient rows these MRN hashes name (``id, merged_into, erased_at, mrn_hash``), lowest id first."""
    rows: list[Any] = []
    for start in range(0, len(hashes), CHUNK):
        rows += conn.execute(PATIENTS_BY_HASH, {"hashes": list(hashes[start:start + CHUNK])}).all()
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
            self._held.update(conn.execute(HELD_HASHES, {"hashes": wanted[start:start + CHUNK]}).scalars())
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

