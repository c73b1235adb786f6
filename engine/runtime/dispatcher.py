"""The dispatcher: claim due touchpoints in batches, re-check, render, send, record.

Every state change is committed before the next side effect: a claim before
rendering, a ``sending`` delivery row before each provider call (one row and
attempt number per call), the call's result as soon as it returns, in the
same short transaction as the next call's ``sending`` row. A worker killed
anywhere loses nothing and re-sends at most the call in flight: its lease
expires, another worker reclaims the touchpoint, marks the dead call
``unknown``, asks the channel whether the provider took it
(:meth:`Channel.lookup`, when it can) and otherwise re-sends with the same
idempotency key. A touchpoint charged ``poison_after`` deaths of its workers
without a result (on its trials alone or in its own calls, not as one of a killed
batch) is set aside as ``quarantined``; abandoned leases are reclaimed one per batch,
after that batch's due work, so they never hold it up.

A batch, top to bottom (:meth:`Dispatcher.run_batch`): one read says whether anything is
due (:mod:`~carepath.runtime.dispatch.claim`); the due touchpoints are leased in one
statement; the batch's context is read in bulk (:mod:`~carepath.runtime.batch_context`);
each touchpoint is decided in memory (:mod:`~carepath.runtime.dispatch.decide`); the
decisions are written in one fenced transaction (:mod:`~carepath.runtime.dispatch.write`);
then the messages go out chunk by chunk (:mod:`~carepath.runtime.dispatch.send`), unknown
attempts looked up first (:mod:`~carepath.runtime.dispatch.reconcile`); abandoned leases are
taken over last, a poison touchpoint quarantined (:mod:`~carepath.runtime.dispatch.quarantine`).
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Sequence

from carepath.runtime.batch_context import BatchContext
from carepath.runtime.dispatch.claim import CALLS_MADE, ClaimsAndLeases
from carepath.runtime.dispatch.collector import collector_paused
from carepath.runtime.dispatch.decide import PROVIDER_WAIT, Decisions
from carepath.runtime.dispatch.quarantine import Quarantine
from carepath.runtime.dispatch.reconcile import LOOKUP_INCONCLUSIVE, Reconciliation
from carepath.runtime.dispatch.report import DispatchReport
from carepath.runtime.dispatch.send import VETOED, ProviderCalls
from carepath.runtime.dispatch.write import FencedWrites
from carepath.runtime.outages import OutageGuard
from carepath.runtime.receipts import apply_early_receipts
from carepath.store.sqlite_gate import reading

if TYPE_CHECKING:
    from carepath.engine import Engine

__all__ = ["CALLS_MADE", "LOOKUP_INCONCLUSIVE", "PROVIDER_WAIT", "VETOED", "DispatchReport", "Dispatcher"]


class Dispatcher(ClaimsAndLeases, Quarantine, Decisions, FencedWrites, ProviderCalls, Reconciliation):
    """Claims, re-checks, renders, sends and records due touchpoints for one worker.

    ``lease``: how long a claim holds without renewal (renewed while sending; should exceed a
    channel's timeout); ``poison_after``: deaths charged to a touchpoint without a recorded result
    before it is quarantined (:func:`~carepath.runtime.dispatch.claim.charged`); ``chunk``: most
    messages per ``send_batch`` call for channels that override it (other channels are called once
    per message); ``outage_limit``: how long a database outage
    is ridden out before the error is raised.
    """

    def __init__(self, engine: "Engine", *, worker_id: str | None = None, lease: timedelta = timedelta(minutes=5),
                 max_attempts: int = 5, backoff: timedelta = timedelta(minutes=1), poison_after: int = 3,
                 chunk: int = 100, outage_limit: timedelta = timedelta(minutes=10)) -> None:
        self.engine = engine
        self.worker_id = worker_id or f"w-{uuid.uuid4().hex[:10]}"
        self.lease = lease
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.poison_after = poison_after
        self.chunk = chunk
        self.guard = OutageGuard(outage_limit)
        self._rng = random.Random()
        self._held: set[int] = set()  # touchpoints of the running batch not yet finished
        self._attempts: dict[int, int] = {}  # provider calls per touchpoint of the running batch
        self._batch_started: datetime | None = None
        self._renew_at: datetime | None = None
        self._allowed_memo: dict = {}
        self._receipts_waiting = False  # early receipts are kept (seen by the batch's first read)

    # ------------------------------------------------------------------ the loop

    def dispatch_due(self, *, journey: str | None = None, stage: str | None = None, batch: int = 500,
                     max_batches: int | None = None) -> DispatchReport:
        """Dispatch everything due now, batch after batch, riding out database outages.

        A sweep that finds nothing due, no abandoned lease and no kept receipt costs one read. On PostgreSQL
        a claim may take half of a small backlog and leave the rest to other workers sweeping at the same
        time (:meth:`~carepath.runtime.dispatch.claim.ClaimsAndLeases._claim_size`); the sweep then claims
        again, and stops when a claim leaves nothing.
        """
        report = DispatchReport()
        due, abandoned, receipts = self.guard.run(lambda: self._work_waiting(journey, stage, None))
        if receipts:
            self.guard.run(self.apply_early_receipts)
        if not (due or abandoned):
            return report
        n = 0
        while max_batches is None or n < max_batches:
            part = self.run_batch(limit=batch, journey=journey, stage=stage, share=True)
            report.merge(part)
            n += 1
            if part.claimed < batch and not part.reclaimed and not self.left_some:
                break
        return report

    def apply_early_receipts(self) -> int:
        """Apply kept receipts whose delivery has been recorded since (a sweep; normally done at once)."""
        with self.engine.db.begin() as conn:
            return apply_early_receipts(conn, self.engine.clock.now())

    def claim(self, *, limit: int, journey: str | None = None, stage: str | None = None,
              ids: Sequence[int] | None = None) -> list[Any]:
        """Lease up to ``limit`` due touchpoints to this worker."""
        return self._claim(limit, journey, stage, ids, abandoned=False)[0]

    # ------------------------------------------------------------------- a batch

    def run_batch(self, *, limit: int = 500, journey: str | None = None, stage: str | None = None,
                  ids: Sequence[int] | None = None, share: bool = False) -> DispatchReport:
        """Claim and dispatch up to ``limit`` due touchpoints, then take over abandoned leases.

        Abandoned work comes after the batch's due work, so it never holds due work up; a
        touchpoint suspected of killing its worker is taken over alone, after the others, in a claim
        of its own (see :meth:`_claim`).
        ``share``: part of a sweep, whose claim may leave half of a small backlog to other workers
        (``left_some`` says it did).
        """
        report = DispatchReport()
        with collector_paused():  # a batch's objects are freed by reference counting (see dispatch.collector)
            due, abandoned, self._receipts_waiting = self.guard.run(lambda: self._work_waiting(journey, stage, ids))
            for take_over, alone in [(False, False)] * due + [(True, False), (True, True)] * abandoned:
                tps, suspect, quarantined = self.guard.run(
                    lambda: self._claim(limit, journey, stage, ids, abandoned=take_over, share=share, alone=alone))
                for q in quarantined:
                    report.quarantined.append(q)
                    report.outcomes["quarantined"] += 1
                    report.by_step[(q["journey"], q["stage"], q["step"], "-", "quarantined")] += 1
                report.claimed += len(tps) + len(suspect)
                report.reclaimed += len(tps) + len(suspect) if take_over else 0
                for group in (tps, suspect):
                    if group:
                        self._run(group, take_over, report)
        return report

    def _run(self, tps: list[Any], abandoned: bool, report: DispatchReport) -> None:
        now = self.engine.clock.now()
        ctx = self.guard.run(lambda: self._load_context(tps, abandoned, now))
        self._held, self._attempts = {tp.id for tp in tps}, ctx.attempts
        self._batch_started, self._renew_at = now, now + self.lease / 3
        try:
            self._process(tps, ctx, report)
        finally:
            self._held, self._attempts = set(), {}

    def _load_context(self, tps: list[Any], abandoned: bool, now: datetime) -> BatchContext:
        """The batch's context in bulk, read without SQLite's write lock (the decisions are written, fenced, after)."""
        with reading(self.engine.db) as conn:
            ctx = BatchContext.load(conn, self.engine, tps, now)
            ctx.load_attempts(conn, [tp.id for tp in tps if tp.attempts or abandoned], LOOKUP_INCONCLUSIVE)
        # (a receipt arriving later in the batch is applied by the next sweep: dispatch_due)
        ctx.receipts_waiting = self._receipts_waiting
        return ctx

    def _process(self, tps: list[Any], ctx: BatchContext, report: DispatchReport) -> None:
        """Decide every touchpoint, write the decisions in one transaction, then send.

        A decision is written before any provider call that follows it; when there is something to
        send, in the transaction that also writes the first call's ``sending`` rows."""
        now = self.engine.clock.now()
        finals: list[dict] = []  # touchpoint updates
        tasks: list[dict] = []
        outgoing = []
        tag_changes = []  # (touchpoint id, action)
        for tp in tps:
            decision = self._decide(tp, ctx, now, report)
            if decision is None:
                continue
            kind, payload = decision
            if kind == "final":
                finals.append(payload)
            elif kind == "send":
                payload.attempts = ctx.attempts.get(tp.id, tp.attempts)
                payload.lookup = ctx.unresolved.get(tp.id)
                outgoing.append(payload)
            elif kind == "task":
                tasks.append(payload)
                finals.append(self._final(tp, "sent", now, reason=None, channel="staff-task"))
                report.add(tp, "sent", "staff-task")
            elif kind == "tag":
                tag_changes.append((tp.id, payload))
                finals.append(self._final(tp, "sent", now, reason=None, channel="tag"))
                report.add(tp, "sent", "tag")
        # rendering survived: the claim no longer counts against the touchpoint (a final write sets claims to 0
        # itself, so only the touchpoints still going out need the decrement)
        final_ids = {f["b_id"] for f in finals}
        survived = [tp.id for tp in tps if tp.id not in final_ids]
        if outgoing:  # the decisions go in with the first call's ``sending`` rows
            self._send_rounds(outgoing, ctx, report, decided=(finals, tasks, tag_changes, survived))
        else:
            self._commit(finals, tasks, tag_changes, ctx, now, survived=survived)
