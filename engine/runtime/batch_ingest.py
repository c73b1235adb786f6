"""Many events in one transaction, each under its own savepoint: the per-event path, committed once.

``Engine.ingest`` stores and applies one event per transaction. A file of events or a simulation tick
pays a commit (and, on SQLite, a write lock) per event for nothing; :func:`ingest_batch` applies the
events in order through the very same :meth:`Ingestor.ingest_in` inside one transaction, each under a
``SAVEPOINT``: an event refused at the door or failing while it is applied is rolled back to its
savepoint (nothing of it kept) and reported in its place, and the events around it are applied. What
follows a commit (plugins told, conversation turns routed, urgent steps sent) runs once the batch is
committed, event by event in the same order.

``isolated=False`` drops the per-event savepoint for a caller to whom any failing event is fatal (a
simulation, whose synthetic events the engine must all accept): the first error then raises and nothing of
the batch is kept, instead of being reported in the event's place.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Callable, Sequence

from sqlalchemy.exc import DataError, IntegrityError

from carepath.definition.events import EventIn
from carepath.runtime.ingest_reads import BatchReads
from carepath.runtime.ingest_result import IngestResult
from carepath.store.savepoints import savepoint

if TYPE_CHECKING:
    from carepath.engine import Engine

#: errors that leave one event out of a batch (a rolled-back savepoint) instead of ending the batch
EVENT_ERRORS = (ValueError, DataError, IntegrityError)


def ingest_batch(engine: "Engine", events: Sequence[EventIn], *, dispatch_urgent: bool = True,
                 received_via: str | None = None,
                 before: Callable[[EventIn], None] | None = None,
                 isolated: bool = True) -> list[IngestResult | Exception]:
    """Store and apply ``events`` in order in one transaction; per event its result or the error that left it out.

    ``before`` is called with each event before it is applied and again before its after-commit step (a
    simulation moves its virtual clock to the event's time there, as it does around ``Engine.ingest``).

    An event that fails changes nothing (its savepoint is rolled back); a database error outside one event
    (the commit itself) raises, and then nothing of the batch is kept, as a failed ``Engine.ingest`` keeps
    nothing of its event. ``isolated=False``: no savepoint per event, and the first event that fails raises
    (nothing of the batch kept).
    """
    outcomes: list[IngestResult | Exception] = []
    applied: list[tuple[EventIn, IngestResult]] = []
    if not events:
        return outcomes
    with engine.db.begin() as conn:
        # the patients, erasures and held events of every MRN of the batch, read once (BatchReads), where
        # nobody else can write while the batch runs (SQLite: one writer); on PostgreSQL each event reads them
        # once it holds its patient's lock, so a patient registered by another process meanwhile is seen
        reads = BatchReads(conn, (h for event in events for h in engine.cipher.lookup_hashes(event.patient_mrn))) \
            if conn.dialect.name == "sqlite" else None
        for event in events:
            if before is not None:
                before(event)
            try:
                admitted = engine.admit(event)
                with savepoint(conn, "carepath_event") if isolated else nullcontext():
                    result = engine.ingestor.ingest_in(conn, admitted, received_via, reads)
            except EVENT_ERRORS as exc:
                if not isolated:
                    raise
                outcomes.append(exc)
                continue
            outcomes.append(result)
            applied.append((admitted, result))
    for admitted, result in applied:
        if before is not None:
            before(admitted)
        engine.after_ingest(admitted, result, dispatch_urgent=dispatch_urgent)
    return outcomes

