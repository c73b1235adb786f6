"""Claims and leases: who may work on a touchpoint, for how long, and what happens when a worker dies.

Guarantees kept here: a touchpoint is leased to one worker at a time (``FOR UPDATE SKIP LOCKED``
on PostgreSQL, the write lock on SQLite); a lease is renewed while its batch runs and a batch
stops rather than outlive it; only rows a worker still holds change when it writes (fencing,
:meth:`ClaimsAndLeases._still_held`); an abandoned lease is taken over after the batch's due
work, its call in flight marked ``unknown`` (to be reconciled, never blindly re-sent), and a
touchpoint suspected of killing its worker is taken over alone. An empty sweep costs one read
that takes no lock.

Which deaths count toward quarantine (:func:`charged`): a worker that dies while it works on many
touchpoints says nothing of which one killed it, so a death in a batch only makes suspects of the
batch's touchpoints that had not got through rendering; it is charged to a touchpoint only when
its own provider call was in flight. A suspect is then tried alone, in a claim of its own made
right before it is worked on: a death during that trial is charged to it, wherever it lands. A
touchpoint that kills its worker each time it is processed is charged every trial and quarantined
after ``poison_after`` charged deaths; one that merely sat in killed batches, or waited for its
trial while an unrelated kill landed, is charged nothing for it.

Sharing a small backlog (PostgreSQL, :meth:`ClaimsAndLeases._claim_size`): when less than two
batches are due, a sweep's claim takes half of it, so that a worker sweeping at the same moment
(every worker is woken by the same ``NOTIFY``, scheduled runs start together) takes the other
half instead of finding nothing. A backlog of at most ``2 × SHARE_FLOOR`` is claimed whole, unless this worker
has lately seen another claim (``PEER_SHARE_FLOOR``): a worker alone never pays a second batch for a small
backlog, two that meet share it. Only the size of a claim changes: what is claimed is leased,
fenced and locked exactly as any claim.
"""

from __future__ import annotations

from collections import namedtuple
from datetime import datetime
from typing import Any, NamedTuple, Sequence

from sqlalchemy import Connection, and_, func, select, update

from carepath.store.statements import (HELD_BY, chunks, db_time, execute, fetch, id_in, in_list, is_postgres,
                                       py_time, sql_for)
from carepath.store.schema import Delivery, Touchpoint
from carepath.store.sqlite_gate import reads_only

# what a batch reads of each claimed touchpoint (fewer columns: fewer conversions on the hot path)
CLAIMED_COLUMNS = ("id", "enrollment_id", "patient_id", "journey", "step", "stage", "occurrence", "idempotency_key",
                   "due_at", "reason", "attempts", "channel_index", "event_id", "claims", "recipient")
Claimed = namedtuple("Claimed", CLAIMED_COLUMNS)
_DUE_AT = CLAIMED_COLUMNS.index("due_at")
_RETURNING = ", ".join(CLAIMED_COLUMNS)

# a dead worker's calls are only in deliveries: count them whenever a touchpoint is queued again, so the next
# call gets its own row and a reclaimed call is looked up before it is sent again
CALLS_MADE = (select(func.coalesce(func.max(Delivery.attempt), 0)).where(Delivery.touchpoint_id == Touchpoint.id)
              .correlate(Touchpoint).scalar_subquery())
# a call that was in flight when its worker died: the touchpoint may be what killed it
IN_FLIGHT = (select(Delivery.id).where(Delivery.touchpoint_id == Touchpoint.id, Delivery.status == "sending")
             .correlate(Touchpoint).exists())
_IN_FLIGHT_SQL = "EXISTS (SELECT 1 FROM deliveries d WHERE d.touchpoint_id = touchpoints.id AND d.status = 'sending')"


#: a backlog of at most twice this many is claimed whole by a worker that has not seen others claim: splitting it
#: would cost another batch's reads and commits to save less than one provider chunk's work (100 messages)
SHARE_FLOOR = 100
#: the same for a worker that has seen another claim in one of its last :data:`PEER_MEMORY` sweeps with work: the
#: other is woken by the same ``NOTIFY`` and idles while this one sends a backlog it could have shared
PEER_SHARE_FLOOR = 25
#: sweeps with work (this worker's) for which a sighting of another worker's claims counts
PEER_MEMORY = 50


def claim_size(due: int, limit: int, *, leave_some: bool, floor: int = SHARE_FLOOR) -> int:
    """How many of ``due`` touchpoints (counted up to ``2 × limit``) one claim of at most ``limit`` takes.

    Two batches or more due: a whole batch. Less: half of it when ``leave_some`` (another worker may be
    claiming at the same moment), unless it is small (at most ``2 × floor``); otherwise all of it.
    """
    if not leave_some or due <= 2 * floor:
        return min(due, limit)
    return min(limit, (due + 1) // 2)


def _claimed(row: tuple) -> Claimed:
    values = list(row)
    values[_DUE_AT] = py_time(values[_DUE_AT])
    return Claimed(*values)


def _filters(journey: str | None, stage: str | None, ids: Sequence[int] | None) -> tuple[str, list[Any]]:
    where, params = "", []
    if journey:
        where += " AND journey = ?"
        params.append(journey)
    if stage:
        where += " AND stage = ?"
        params.append(stage)
    if ids is not None:
        where += f" AND id IN ({in_list(ids) or 'NULL'})"
        params += list(ids)
    return where, params


#: ``claims`` of a suspect claimed alone, over the deaths already charged to it: one for the claim (taken back
#: once rendering survives, as any claim's) and one for the trial, so that its worker dying anywhere in it is charged
TRIAL = 2


def charged(claims: int, in_flight: bool) -> int:
    """Deaths of workers charged to an abandoned touchpoint: those during its trial alone or its own call.

    ``claims`` is 1 for a batch's claim not yet through rendering (the touchpoint is suspected, but any
    of the batch may have killed the worker: nothing is charged), 0 after it, and the deaths charged so
    far plus :data:`TRIAL` for a suspect claimed alone (one less once its rendering survived, when its
    call's ``sending`` row takes that place); ``in_flight``: such a row, a call of its own in flight when
    the worker died.
    """
    return max(claims - 1, 0) + bool(in_flight)


class Suspicion(NamedTuple):
    """What a dead worker's touchpoint is suspected of: whether it may have killed it, and the deaths charged."""

    suspected: bool
    charged: int


def suspicions(conn: Connection, query: Any) -> dict[int, Suspicion]:
    """Expired touchpoint id -> :class:`Suspicion`, from ``(id, claims, call in flight)`` rows."""
    return {tp_id: Suspicion(bool(claims or flying), charged(claims, flying))
            for tp_id, claims, flying in conn.execute(query)}


class ClaimsAndLeases:
    """Claiming, taking over, renewing and checking leases (mixed into :class:`~carepath.runtime.dispatcher.Dispatcher`)."""

    #: this worker's last claim of due work left due touchpoints (for other workers, or for its next batch): the
    #: sweep claims again after it even if it took less than a batch, and that claim goes on with the sweep
    left_some: bool = False
    _left = 0  # how many were still due after that claim
    _sweeps = 0  # sweeps with work so far (claims that started one)
    _peer_seen = -PEER_MEMORY  # the sweep in which this worker last saw another worker's claims

    def _work_waiting(self, journey: str | None, stage: str | None,
                      ids: Sequence[int] | None) -> tuple[bool, bool, bool]:
        """``(due, abandoned, receipts kept)`` in one read that takes no lock: what an empty sweep costs."""
        now = self.engine.clock.now()
        where, params = _filters(journey, stage, ids)
        # in (status, due_at) index order: without it PostgreSQL may plan a scan of the whole table for LIMIT 1,
        # which finds nothing due only after reading every row
        text = ("SELECT (SELECT 1 FROM touchpoints WHERE status = 'scheduled' AND due_at <= ?" + where +
                " ORDER BY status, due_at LIMIT 1), "
                "(SELECT 1 FROM touchpoints WHERE status = 'claimed' AND lease_until < ?" + where +
                " ORDER BY status, due_at LIMIT 1), (SELECT 1 FROM early_receipts LIMIT 1)")
        with self.engine.db.connect() as conn:
            t = db_time(reads_only(conn), now)  # no transaction: no write lock (SQLite), no BEGIN/ROLLBACK (PostgreSQL)
            cursor = conn.connection.driver_connection.cursor()
            cursor.execute(sql_for(conn, text), [t, *params, t, *params])
            due, abandoned, receipts = cursor.fetchone()
            cursor.close()
        if not due:
            if self.left_some:  # what this worker's last claim left was taken by another worker
                self._peer_seen = self._sweeps
            self.left_some = False  # caught up: the next claim starts a new sweep
        return bool(due), bool(abandoned), bool(receipts)

    def _claim_size(self, conn: Connection, limit: int, where: str, params: list[Any], now: datetime) -> int:
        """The size of a sweep's claim on PostgreSQL: :func:`claim_size` of what is due (one read of the
        (status, due_at) index, at most ``2 × limit`` entries).

        Half of a small backlog is left for the others when this claim starts a sweep (the others may be
        starting theirs), or when less is due than this worker's last claim left (another worker has claimed
        since, and will come back for more). Otherwise this worker is alone on the backlog and takes the rest.
        A worker that has seen another claim lately (less due than it left, or nothing left of what its
        sweep's read found) splits backlogs down to :data:`PEER_SHARE_FLOOR`; one that never has, to
        :data:`SHARE_FLOOR`, so a worker alone pays no more batches than before.
        """
        due = fetch(conn, "SELECT count(*) FROM (SELECT 1 FROM touchpoints WHERE status = 'scheduled' AND due_at <= ?"
                          f"{where} ORDER BY status, due_at LIMIT ?) d", [db_time(conn, now), *params, 2 * limit])[0][0]
        if not self.left_some:
            self._sweeps += 1
        if (self.left_some and due < self._left) or not due:  # (no due: the sweep's read saw some, another took it)
            self._peer_seen = self._sweeps
        others = not self.left_some or due < self._left
        floor = PEER_SHARE_FLOOR if self._sweeps - self._peer_seen < PEER_MEMORY else SHARE_FLOOR
        size = claim_size(due, limit, leave_some=others, floor=floor)
        self.left_some, self._left = size < due, due - size  # the next claim goes on with this sweep
        return size

    def _claim_due(self, conn: Connection, limit: int, journey: str | None, stage: str | None,
                   ids: Sequence[int] | None, now: datetime, share: bool = False) -> list[Claimed]:
        """Lease up to ``limit`` due touchpoints in one statement, oldest due first (the (status, due_at) index
        order: no sort of the whole backlog after an outage); with ``share``, on PostgreSQL, a share of a small
        backlog (:meth:`_claim_size`)."""
        where, params = _filters(journey, stage, ids)
        if share and ids is None and is_postgres(conn):
            limit = self._claim_size(conn, limit, where, params, now)
            if not limit:  # the count saw nothing due: other workers claimed it since this sweep's read
                return []
        lock = " FOR UPDATE SKIP LOCKED" if is_postgres(conn) else ""
        rows = fetch(conn, "UPDATE touchpoints SET status = 'claimed', lease_until = ?, claimed_by = ?, updated_at = ?, "
                           "claims = claims + 1 WHERE id IN (SELECT id FROM touchpoints WHERE status = 'scheduled' "
                           f"AND due_at <= ?{where} ORDER BY status, due_at LIMIT ?{lock}) RETURNING {_RETURNING}",
                     [db_time(conn, now + self.lease), self.worker_id, db_time(conn, now), db_time(conn, now), *params,
                      limit])
        if not rows:
            self.left_some = False  # what was left is in other workers' hands
        return sorted(map(_claimed, rows), key=lambda r: (r.due_at, r.id))

    def _claim(self, limit: int, journey: str | None, stage: str | None, ids: Sequence[int] | None, *,
               abandoned: bool, share: bool = False, alone: bool = False) -> tuple[list[Any], list[Any], list[dict]]:
        """Due touchpoints, or (``abandoned``) those whose lease ran out: ``(claimed rows, a suspect's row,
        quarantined touchpoints)``.

        A claim adds one to ``claims`` and getting through rendering takes it back, so a worker dying
        before then leaves its batch suspected (:func:`charged`). Abandoned touchpoints never suspected are
        taken over together; with ``alone``, the least charged suspect instead, on its own, for its trial
        (claimed right before it is worked on: a death while it waited is not its own); one charged
        ``poison_after`` deaths is quarantined. ``share``: a sweep's claim of due work, which may leave part
        of a small backlog to other workers (:meth:`_claim_size`).
        """
        now = self.engine.clock.now()
        with self.engine.db.begin() as conn:
            if not abandoned:
                return self._claim_due(conn, limit, journey, stage, ids, now, share), [], []
            expired = and_(Touchpoint.status == "claimed", Touchpoint.lease_until < now)
            q = select(Touchpoint.id, Touchpoint.claims, IN_FLIGHT).where(expired)
            if journey:
                q = q.where(Touchpoint.journey == journey)
            if stage:
                q = q.where(Touchpoint.stage == stage)
            if ids is not None:
                q = q.where(Touchpoint.id.in_(list(ids)))
            q = q.order_by(Touchpoint.due_at).limit(limit + 100)
            found = suspicions(conn, q.with_for_update(skip_locked=True) if is_postgres(conn) else q)
            quarantined = self._quarantine(conn, [(i, s.charged) for i, s in found.items()
                                                  if s.charged >= self.poison_after], now)
            if alone:
                suspects = sorted((s.charged, i) for i, s in found.items() if s.suspected
                                  and s.charged < self.poison_after)
                taken, claims = ([suspects[0][1]], suspects[0][0] + TRIAL) if suspects else ([], 0)
            else:
                taken, claims = [i for i, s in found.items() if not s.suspected][:limit], 1
            if not taken:
                return [], [], quarantined
            conn.execute(update(Touchpoint).where(Touchpoint.id.in_(taken)).values(
                status="claimed", lease_until=now + self.lease, claimed_by=self.worker_id, updated_at=now,
                claims=claims))
            # the dead worker's call in flight: its outcome is unknown; the row is kept
            conn.execute(update(Delivery).where(Delivery.touchpoint_id.in_(taken),
                                                Delivery.status == "sending").values(status="unknown", updated_at=now))
            where, params = id_in(conn, "id", taken)
            rows = [_claimed(r) for r in fetch(conn, f"SELECT {_RETURNING} FROM touchpoints WHERE {where}", params)]
            rows.sort(key=lambda r: (r.due_at, r.id))
            return ([], rows, quarantined) if alone else (rows, [], quarantined)

    def release_abandoned(self, limit: int = 5000) -> tuple[int, list[dict]]:
        """Expired leases no worker took over (maintenance): ``(released, quarantined touchpoints)``.

        The same rules as a dispatcher's take-over: touchpoints never suspected of killing their worker
        go back to ``scheduled`` (their calls counted in ``attempts``); one charged ``poison_after``
        deaths (:func:`charged`) is quarantined; other suspects stay for a dispatcher to take over one at
        a time, so a poison touchpoint never again takes a whole batch down with it.
        """
        now = self.engine.clock.now()
        expired = and_(Touchpoint.status == "claimed", Touchpoint.lease_until < now)
        with self.engine.db.begin() as conn:
            q = select(Touchpoint.id, Touchpoint.claims, IN_FLIGHT).where(expired).order_by(Touchpoint.due_at)
            if is_postgres(conn):
                q = q.with_for_update(skip_locked=True)
            found = suspicions(conn, q.limit(limit))
            quarantined = self._quarantine(conn, [(i, s.charged) for i, s in found.items()
                                                  if s.charged >= self.poison_after], now)
            free = [i for i, s in found.items() if not s.suspected]
            for part in chunks(free):
                conn.execute(update(Touchpoint).where(Touchpoint.id.in_(part), expired).values(
                    status="scheduled", lease_until=None, updated_at=now, attempts=CALLS_MADE))
        return len(free), quarantined

    def _renew(self, conn: Connection, now: datetime) -> bool:
        """Extend this worker's lease on the batch's unfinished touchpoints (every third of a lease)."""
        if self._renew_at is None or now < self._renew_at or not self._held:
            return False
        for part in chunks(self._held):
            where, params = id_in(conn, "id", part)
            execute(conn, f"UPDATE touchpoints SET lease_until = ? WHERE {where} AND {HELD_BY}",
                    [db_time(conn, now + self.lease), *params, self.worker_id])
        return True

    def _still_held(self, conn: Connection, ids: list[int]) -> set[int]:
        """The touchpoints among ``ids`` still claimed by this worker, locked for this transaction (fencing)."""
        held: set[int] = set()
        lock = " FOR UPDATE" if is_postgres(conn) else ""
        for part in chunks(ids):
            where, params = id_in(conn, "id", part)
            held.update(r[0] for r in fetch(conn, f"SELECT id FROM touchpoints WHERE {where} "
                                                  f"AND {HELD_BY}{lock}",
                                            [*params, self.worker_id]))
        return held

    def _past_lease(self, now: datetime) -> bool:
        """Has this batch run for a whole lease? Then it stops rather than outlive it."""
        return self._batch_started is not None and now >= self._batch_started + self.lease
