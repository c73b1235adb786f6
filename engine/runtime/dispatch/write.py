"""Fenced writes: every state change of a batch is committed before the next side effect.

Guarantees kept here: a batch's decisions are one transaction; each provider call's
``sending`` delivery row is committed before the call and its result in the same short
transaction as the next call's ``sending`` row, so a worker killed anywhere loses nothing and
leaves at most one call in doubt. Only touchpoints this worker still holds change (fencing), and
only they open staff tasks, change tags, plan follower steps or start a call. Every write is safe
to run twice, so :class:`~carepath.runtime.outages.OutageGuard` may repeat it after an outage.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select, update

from carepath.definition.model import AfterStep, Tag
from carepath.store.statements import HELD_BY, chunks, db_time, execute, id_in
from carepath.runtime.dispatch.recipients import is_copy, write_routes
from carepath.runtime.experiments import record_arms
from carepath.runtime.planner import Planned
from carepath.runtime.portrait import record_sends, sent_messages
from carepath.runtime.receipts import apply_early_receipts
from carepath.runtime.scheduling import executemany_raw, plan_batch
from carepath.store.schema import Patient, StaffTask

if TYPE_CHECKING:
    from carepath.runtime.batch_context import BatchContext
    from carepath.runtime.dispatch.decide import Outgoing

# a transaction re-run after a lost commit acknowledgement finds its row already there
DELIVERY_INSERT = ("INSERT INTO deliveries (touchpoint_id, attempt, channel, status, created_at, updated_at) "
                   "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (touchpoint_id, attempt) DO NOTHING")
DELIVERY_RESULT = ("UPDATE deliveries SET status = ?, provider_id = ?, error_kind = ?, error_code = ?, error = ?, "
                   "cost = ?, updated_at = ? WHERE touchpoint_id = ? AND attempt = ? AND channel = ? "
                   "AND status = 'sending'")
# Fencing: only rows this worker still holds change.
FINAL_SQL = ("UPDATE touchpoints SET status = ?, reason = ?, updated_at = ?, channel = ?, sent_at = ?, due_at = ?, "
             "attempts = ?, channel_index = ?, lease_until = NULL, claims = 0 "
             f"WHERE id = ? AND {HELD_BY}")
#: :data:`FINAL_SQL` for a touchpoint whose time stays (sent, skipped, failed...): ``due_at`` is left out, because an
#: indexed column named in ``SET`` has its index entries rewritten even when its value is the same, and the
#: ``(patient_id, due_at)`` index is in patient order: one more page written for nearly every touchpoint decided
FINAL_SAME_DUE_SQL = ("UPDATE touchpoints SET status = ?, reason = ?, updated_at = ?, channel = ?, sent_at = ?, "
                      "attempts = ?, channel_index = ?, lease_until = NULL, claims = 0 "
                      f"WHERE id = ? AND {HELD_BY}")
#: delivery statuses meaning the provider took the message (its receipts may have come first)
ACCEPTED = ("sent", "reconciled", "pending_confirmation")
_FOLLOWERS: dict[tuple[int, str, str], tuple[Any, list]] = {}


def followers_of(journey: Any, step_id: str, outcome: str) -> list:
    """The ``after_step`` steps of ``journey`` that follow ``step_id`` reaching ``outcome`` (memoized)."""
    key = (id(journey), step_id, outcome)
    known = _FOLLOWERS.get(key)
    if known is None or known[0] is not journey:
        known = _FOLLOWERS[key] = (journey, [s for s in journey.steps if isinstance(s.trigger, AfterStep)
                                             and s.trigger.step == step_id and s.trigger.outcome == outcome])
    return known[1]


class FencedWrites:
    """The dispatcher's transactions (mixed into the dispatcher)."""

    def _commit(self, finals: list[dict], tasks: list[dict], tags: list[tuple[int, Tag]], ctx: "BatchContext",
                now: datetime, deliveries: list[tuple] = (), starting: list["Outgoing"] = (),
                survived: list[int] = ()) -> list["Outgoing"]:
        """:meth:`_write` in one transaction, run again after a database outage (it is idempotent)."""
        return self.guard.run(lambda: self._write(finals, tasks, tags, ctx, now, list(deliveries), list(starting),
                                                  list(survived)))

    def _write(self, finals: list[dict], tasks: list[dict], tags: list[tuple[int, Tag]],
               ctx: "BatchContext", now: datetime, deliveries: list[tuple] = (),
               starting: list["Outgoing"] = (), survived: list[int] = ()) -> list["Outgoing"]:
        """Record results and decisions, and the ``sending`` rows of the next provider call, in one transaction.

        Returns the calls of ``starting`` this worker may make. Fencing: only touchpoints this
        worker still holds change, and only they open staff tasks, change tags, plan follower
        steps or start a call. A worker that stalled past its lease records its provider results
        and nothing else. ``survived``: touchpoints rendered without killing the worker (their
        claim no longer counts against them). Safe to run twice: results only fill ``sending``
        rows, decisions only touch held rows, ``sending`` rows are inserted once (a repeated
        ``survived`` stops at zero: at worst a suspicion is forgotten).
        """
        if not (finals or tasks or tags or deliveries or starting or survived):
            return []
        with self.engine.db.begin() as conn:
            executemany_raw(conn, DELIVERY_RESULT, list(deliveries), time_positions=(6,))
            held = self._still_held(conn, [f["b_id"] for f in finals] + [o.tp.id for o in starting])
            finals = [f for f in finals if f["b_id"] in held]
            self._write_finals(conn, finals, ctx)
            tasks = [t for t in tasks if t["touchpoint_id"] in held]
            if tasks:
                conn.execute(insert(StaffTask), tasks)
            self._apply_tags(conn, [(ctx.by_id[tp_id].patient_id, action) for tp_id, action in tags if tp_id in held],
                             now)
            self._plan_followers(conn, [f for f in finals if f["b_status"] in ("sent", "failed")], ctx, now)
            waiting = write_routes(conn, ctx, held, now)  # family and guardians: pins and copies
            record_arms(conn, [row for row in ctx.new_arms if row[-1] in held], now)  # issue 23: experiment arms
            record_sends(conn, sent_messages(finals, ctx), now)  # messages sent, on the patients' portraits
            provider_ids = [d[1] for d in deliveries if d[1] and d[0] in ACCEPTED]
            if provider_ids and ctx.receipts_waiting:  # receipts that came before these ids were recorded
                apply_early_receipts(conn, now, provider_ids)
            for part in chunks(survived):
                where, params = id_in(conn, "id", part)
                execute(conn, f"UPDATE touchpoints SET claims = claims - 1 WHERE {where} "
                              f"AND {HELD_BY} AND claims > 0", [*params, self.worker_id])
            start = [o for o in starting if o.tp.id in held]
            t = db_time(conn, now)
            executemany_raw(conn, DELIVERY_INSERT, [(o.tp.id, o.attempts, o.channel, "sending", t, t) for o in start],
                            time_positions=())
            self._held -= {f["b_id"] for f in finals}
            renewed = self._renew(conn, now)
        if renewed:
            self._renew_at = now + self.lease / 3
        ctx.pins, ctx.copies = waiting  # committed: what is left waits for its touchpoint's own transaction
        ctx.new_arms = [row for row in ctx.new_arms if row[-1] not in held]
        return start

    def _write_finals(self, conn: Connection, finals: list[dict], ctx: "BatchContext") -> None:
        """The touchpoints' new states (fenced); ``due_at`` is written only where it moves (a deferral, a retry)."""
        moved, same = [], []
        for f in finals:
            due = ctx.by_id[f["b_id"]].due_at
            (same if f["b_due"] is due or f["b_due"] == due else moved).append(f)
        executemany_raw(conn, FINAL_SQL, [(f["b_status"], f["b_reason"], f["b_now"], f["b_channel"], f["b_sent"],
                                           f["b_due"], f["b_attempts"], f["b_index"], f["b_id"], self.worker_id)
                                          for f in moved], time_positions=(2, 4, 5))
        executemany_raw(conn, FINAL_SAME_DUE_SQL, [(f["b_status"], f["b_reason"], f["b_now"], f["b_channel"],
                                                    f["b_sent"], f["b_attempts"], f["b_index"], f["b_id"],
                                                    self.worker_id) for f in same], time_positions=(2, 4))

    @staticmethod
    def _apply_tags(conn: Connection, changes: list[tuple[int, Tag]], now: datetime) -> None:
        by_patient: dict[int, list[Tag]] = defaultdict(list)
        for pid, action in changes:
            by_patient[pid].append(action)
        for pid, actions in by_patient.items():
            tags = set(conn.execute(select(Patient.tags).where(Patient.id == pid)).scalar() or [])
            for action in actions:
                tags = (tags | set(action.add)) - set(action.remove)
            conn.execute(update(Patient).where(Patient.id == pid).values(tags=sorted(tags), updated_at=now))

    def _plan_followers(self, conn: Connection, done: list[dict], ctx: "BatchContext", now: datetime) -> None:
        """Plan ``after_step`` steps whose source step just reached its outcome (one bulk write)."""
        entries = []
        for row in done:
            tp = ctx.by_id[row["b_id"]]
            if is_copy(tp):  # a copy for a further recipient: the planned touchpoint plans the followers
                continue
            journey = self.engine.journey_version(tp.journey, ctx.enrollments[tp.enrollment_id].version)
            followers = followers_of(journey, tp.step, row["b_status"]) if journey else []
            if followers:
                planned = [Planned(step=s, occurrence=tp.occurrence, planned_at=now + s.trigger.delay,
                                   due_at=now + s.trigger.delay) for s in followers]
                entries.append((tp.enrollment_id, tp.patient_id, ctx.patients[tp.patient_id].view.tz, journey,
                                planned))
        if entries:
            plan_batch(conn, entries, now=now, policy=self.engine.policy, return_ids=False)
