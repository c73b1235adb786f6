"""The dispatcher: claim due touchpoints in batches, re-check, render, send, record.

Every state change is committed before the next side effect: a claim before
rendering, a ``sending`` delivery row before each provider call (one row and
attempt number per call), the call's result as soon as it returns, in the
same short transaction as the next call's ``sending`` row. A worker killed
anywhere loses nothing and re-sends at most the call in flight: its lease
expires, another worker reclaims the touchpoint, marks the dead call
``unknown``, asks the channel whether the provider took it
(:meth:`Channel.lookup`, when it can) and otherwise re-sends with the same
idempotency key. A touchpoint claimed ``poison_after`` times without a result
is set aside as ``quarantined``; abandoned leases are reclaimed one per batch,
after that batch's due work, so they never hold it up.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from sqlalchemy import Connection, and_, func, insert, select, update

from carepath.masking import mask_text
from carepath.runtime.batch_context import BatchContext
from carepath.definition.context import expression_context
from carepath.definition.durations import format_duration
from carepath.definition.expressions import evaluate, render
from carepath.definition.model import AfterStep, Category, Send, Step, Tag, Task, exit_reason
from carepath.runtime.planner import CAP_DROPPED, DAILY_CAP, QUIET_HOURS, Planned, anchor_values
from carepath.plugins.contracts import Channel, ErrorKind, LookupResult, LookupStatus, Message, SendResult, Veto
from carepath.runtime.outages import OutageGuard
from carepath.runtime.clicks import tracked  # issue 20
from carepath.runtime.portrait import record_sends, sent_messages  # issue 20
from carepath.runtime.survey_links import with_survey
from carepath.runtime.work_queue import new_task
from carepath.runtime.policy import zone
from carepath.runtime.receipts import apply_early_receipts
from carepath.runtime.scheduling import executemany_raw, plan_batch
from carepath.store.schema import Delivery, EarlyReceipt, Patient, StaffTask, Touchpoint

if TYPE_CHECKING:
    from carepath.engine import Engine


log = logging.getLogger("carepath.dispatcher")

VETOED = "vetoed"
LOOKUP_INCONCLUSIVE = "lookup_inconclusive"
# what a batch reads of each claimed touchpoint (fewer columns: fewer conversions on the hot path)
_CLAIMED_COLUMNS = (Touchpoint.id, Touchpoint.enrollment_id, Touchpoint.patient_id, Touchpoint.journey, Touchpoint.step,
                    Touchpoint.stage, Touchpoint.occurrence, Touchpoint.idempotency_key, Touchpoint.due_at,
                    Touchpoint.reason, Touchpoint.attempts, Touchpoint.channel_index, Touchpoint.event_id,
                    Touchpoint.claims)
# a transaction re-run after a lost commit acknowledgement finds its row already there
_DELIVERY_INSERT = ("INSERT INTO deliveries (touchpoint_id, attempt, channel, status, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (touchpoint_id, attempt) DO NOTHING")
_DELIVERY_RESULT = ("UPDATE deliveries SET status = ?, provider_id = ?, error_kind = ?, error_code = ?, error = ?, "
                    "cost = ?, updated_at = ? WHERE touchpoint_id = ? AND attempt = ? AND channel = ? "
                    "AND status = 'sending'")

# a dead worker's calls are only in deliveries: count them whenever a touchpoint is queued again, so the next
# call gets its own row and a reclaimed call is looked up before it is sent again
CALLS_MADE = (select(func.coalesce(func.max(Delivery.attempt), 0)).where(Delivery.touchpoint_id == Touchpoint.id)
              .correlate(Touchpoint).scalar_subquery())
# a call that was in flight when its worker died: the touchpoint may be what killed it
_IN_FLIGHT = (select(Delivery.id).where(Delivery.touchpoint_id == Touchpoint.id, Delivery.status == "sending")
              .correlate(Touchpoint).exists())
# Fencing: only rows this worker still holds change.
_FINAL_SQL = ("UPDATE touchpoints SET status = ?, reason = ?, updated_at = ?, channel = ?, sent_at = ?, due_at = ?, "
              "attempts = ?, channel_index = ?, lease_until = NULL, claims = 0 "
              "WHERE id = ? AND status = 'claimed' AND claimed_by = ?")


def _deaths(conn: Connection, query: Any) -> dict[int, int]:
    """Expired touchpoint id -> deaths it is suspected of: its ``claims`` plus one for a call in flight."""
    return {tp_id: claims + bool(flying) for tp_id, claims, flying in conn.execute(query)}


@dataclass
class DispatchReport:
    """Counts of what a dispatch run did, by outcome and by ``(step, channel)``."""

    claimed: int = 0
    outcomes: Counter = field(default_factory=Counter)  # sent, skipped, cancelled, deferred, retry, failed, quarantined
    by_step: Counter = field(default_factory=Counter)  # (journey, stage, step, channel|"-", outcome)
    reclaimed: int = 0  # abandoned leases taken over
    reconciled: int = 0  # unknown attempts the provider was asked about (``Channel.lookup``)
    released: int = 0  # claimed but handed back unsent: the batch was cut short at its lease
    #: touchpoints set aside this run: ``{"touchpoint_id", "journey", "stage", "step", "reason"}``, one
    #: operator event each (``carepath serve`` emits ``carepath.touchpoint.quarantined``)
    quarantined: list[dict] = field(default_factory=list)

    def add(self, tp: Any, outcome: str, channel: str | None = None) -> None:
        self.outcomes[outcome] += 1
        self.by_step[(tp.journey, tp.stage, tp.step, channel or "-", outcome)] += 1

    def merge(self, other: "DispatchReport") -> "DispatchReport":
        self.claimed += other.claimed
        self.outcomes.update(other.outcomes)
        self.by_step.update(other.by_step)
        self.reclaimed += other.reclaimed
        self.reconciled += other.reconciled
        self.released += other.released
        self.quarantined += other.quarantined
        return self

    @property
    def sent(self) -> int:
        return self.outcomes["sent"]


@dataclass
class _Outgoing:
    """A touchpoint on its way through the channels of its ``via`` list."""

    tp: Any
    step: Step
    title: str
    body: str
    template: str
    channel_index: int
    context: dict = field(default_factory=dict, repr=False)
    notes: list[str] = field(default_factory=list)
    channel: str | None = None
    attempts: int = 0  # provider calls made so far, this one included once it starts
    lookup: Any = None  # the ``unknown`` attempt to reconcile before sending again (a deliveries row)


#: the reason of a touchpoint waiting because its provider said when to come back (``SendResult.retry_after``):
#: such waits (and a quiet-hours deferral after one) do not use up ``max_attempts``: the operator alert, not
#: each patient's message, carries a provider outage; crash loops stay bounded by quarantine (``poison_after``)
PROVIDER_WAIT = "wait:"


def _why_task(journey: str, step: Step) -> str:
    """What a task whose step gives no ``detail`` is about: its step, and the silence that opened it."""
    why = f"{step.action.task.replace('_', ' ')}: step {step.id} of {journey}"
    trigger = step.trigger
    if isinstance(trigger, AfterStep) and trigger.unless == "replied":
        why += f" (no reply to {trigger.step} within {format_duration(trigger.delay)})"
    return why


class Dispatcher:
    """Claims, re-checks, renders, sends and records due touchpoints for one worker.

    ``lease``: how long a claim holds without renewal (renewed while sending; should exceed a
    channel's timeout); ``poison_after``: claims without a recorded result before a touchpoint is
    quarantined; ``chunk``: most messages per ``send_batch`` call for channels that override it
    (other channels are called once per message); ``outage_limit``: how long a database outage
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

    # ------------------------------------------------------------------ the loop

    def dispatch_due(self, *, journey: str | None = None, stage: str | None = None, batch: int = 500,
                     max_batches: int | None = None) -> DispatchReport:
        """Dispatch everything due now, batch after batch, riding out database outages."""
        report = DispatchReport()
        self.guard.run(self.apply_early_receipts)
        n = 0
        while max_batches is None or n < max_batches:
            part = self.run_batch(limit=batch, journey=journey, stage=stage)
            report.merge(part)
            n += 1
            if part.claimed < batch and not part.reclaimed:
                break
        return report

    def apply_early_receipts(self) -> int:
        """Apply kept receipts whose delivery has been recorded since (a sweep; normally done at once)."""
        with self.engine.db.begin() as conn:
            return apply_early_receipts(conn, self.engine.clock.now())

    # ------------------------------------------------------------------ claiming

    def claim(self, *, limit: int, journey: str | None = None, stage: str | None = None,
              ids: Sequence[int] | None = None) -> list[Any]:
        """Lease up to ``limit`` due touchpoints to this worker."""
        return self._claim(limit, journey, stage, ids, abandoned=False)[0]

    def _claim(self, limit: int, journey: str | None, stage: str | None, ids: Sequence[int] | None, *,
               abandoned: bool) -> tuple[list[Any], list[Any], list[dict]]:
        """Due touchpoints, or (``abandoned``) those whose lease ran out: ``(claimed rows, a suspect's row,
        quarantined touchpoints)``.

        ``claims`` counts the deaths of workers a touchpoint may have caused: a claim adds one, getting
        through rendering takes it back, and a call in flight when its worker died (a ``sending`` row)
        adds one. Abandoned touchpoints never suspected are taken over together; a suspect alone, so it
        can only take itself down again; one suspected ``poison_after`` times is quarantined.
        """
        now = self.engine.clock.now()
        expired = and_(Touchpoint.status == "claimed", Touchpoint.lease_until < now)
        due = and_(Touchpoint.status == "scheduled", Touchpoint.due_at <= now)

        def query(condition, *cols):
            q = select(*cols).where(condition)
            if journey:
                q = q.where(Touchpoint.journey == journey)
            if stage:
                q = q.where(Touchpoint.stage == stage)
            if ids is not None:
                q = q.where(Touchpoint.id.in_(list(ids)))
            return q.with_for_update(skip_locked=True) if lock else q

        def take(tp_ids: list[int], claims) -> None:
            conn.execute(update(Touchpoint).where(Touchpoint.id.in_(tp_ids)).values(
                status="claimed", lease_until=now + self.lease, claimed_by=self.worker_id, updated_at=now,
                claims=claims))

        with self.engine.db.begin() as conn:
            lock = conn.dialect.name == "postgresql"
            quarantined: list[dict] = []
            suspect: list[int] = []
            if not abandoned:  # (status, due_at) index order: no sort of the whole backlog after an outage
                claimed = list(conn.execute(query(due, Touchpoint.id).order_by(
                    Touchpoint.status, Touchpoint.due_at).limit(limit)).scalars())
                if claimed:
                    take(claimed, Touchpoint.claims + 1)
            else:
                deaths = _deaths(conn, query(expired, Touchpoint.id, Touchpoint.claims, _IN_FLIGHT)
                                 .order_by(Touchpoint.due_at).limit(limit + 100))
                quarantined = self._quarantine(conn, [(i, n) for i, n in deaths.items() if n >= self.poison_after],
                                               now)
                claimed = [i for i, n in deaths.items() if n == 0][:limit]
                suspects = sorted((n, i) for i, n in deaths.items() if 0 < n < self.poison_after)
                suspect = [suspects[0][1]] if suspects else []
                if claimed:
                    take(claimed, 1)
                if suspect:
                    take(suspect, deaths[suspect[0]] + 1)
                if claimed or suspect:  # the dead worker's call in flight: its outcome is unknown; the row is kept
                    conn.execute(update(Delivery).where(Delivery.touchpoint_id.in_(claimed + suspect),
                                                        Delivery.status == "sending")
                                 .values(status="unknown", updated_at=now))
            if not (claimed or suspect):
                return [], [], quarantined
            rows = list(conn.execute(select(*_CLAIMED_COLUMNS).where(Touchpoint.id.in_(claimed + suspect))
                                     .order_by(Touchpoint.due_at, Touchpoint.id)))
            return ([r for r in rows if r.id not in suspect], [r for r in rows if r.id in suspect], quarantined)

    def release_abandoned(self, limit: int = 5000) -> tuple[int, list[dict]]:
        """Expired leases no worker took over (maintenance): ``(released, quarantined touchpoints)``.

        The same rules as a dispatcher's take-over: touchpoints never suspected of killing their worker
        go back to ``scheduled`` (their calls counted in ``attempts``); one suspected ``poison_after``
        times is quarantined; other suspects stay for a dispatcher to take over one at a time, so a
        poison touchpoint never again takes a whole batch down with it.
        """
        now = self.engine.clock.now()
        expired = and_(Touchpoint.status == "claimed", Touchpoint.lease_until < now)
        with self.engine.db.begin() as conn:
            q = select(Touchpoint.id, Touchpoint.claims, _IN_FLIGHT).where(expired).order_by(Touchpoint.due_at)
            if conn.dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True)
            deaths = _deaths(conn, q.limit(limit))
            quarantined = self._quarantine(conn, [(i, n) for i, n in deaths.items() if n >= self.poison_after], now)
            free = [i for i, n in deaths.items() if n == 0]
            for at in range(0, len(free), 5000):
                conn.execute(update(Touchpoint).where(Touchpoint.id.in_(free[at:at + 5000]), expired).values(
                    status="scheduled", lease_until=None, updated_at=now, attempts=CALLS_MADE))
        return len(free), quarantined

    def _quarantine(self, conn: Connection, poison: list[tuple[int, int]], now: datetime) -> list[dict]:
        """Set aside touchpoints whose workers died ``poison_after`` times while on them."""
        if not poison:
            return []
        by_deaths: dict[int, list[int]] = defaultdict(list)
        for tp_id, deaths in poison:
            by_deaths[deaths].append(tp_id)
        for deaths, tp_ids in by_deaths.items():
            conn.execute(update(Touchpoint).where(Touchpoint.id.in_(tp_ids)).values(
                status="quarantined", lease_until=None, updated_at=now, claims=deaths,
                reason=f"quarantined: claimed {deaths} times without a recorded result "
                       "(its worker died or hung each time); release it once the cause is fixed"))
        tp_ids = [tp_id for tp_id, _ in poison]
        conn.execute(update(Delivery).where(Delivery.touchpoint_id.in_(tp_ids), Delivery.status == "sending")
                     .values(status="unknown", updated_at=now))
        rows = conn.execute(select(Touchpoint.id, Touchpoint.journey, Touchpoint.stage, Touchpoint.step,
                                   Touchpoint.reason).where(Touchpoint.id.in_(tp_ids)))
        found = [dict(touchpoint_id=r.id, journey=r.journey, stage=r.stage, step=r.step, reason=r.reason)
                 for r in rows]
        for q in found:
            log.warning("touchpoint %s (%s/%s) quarantined: %s", q["touchpoint_id"], q["journey"], q["step"],
                        q["reason"])
        return found

    def release_quarantined(self, ids: Sequence[int]) -> int:
        """Put quarantined touchpoints back in the queue (due now, claim count reset) once the cause is fixed."""
        now = self.engine.clock.now()
        with self.engine.db.begin() as conn:
            return conn.execute(update(Touchpoint).where(Touchpoint.id.in_(list(ids)),
                                                         Touchpoint.status == "quarantined")
                                .values(status="scheduled", claims=0, due_at=now, updated_at=now,
                                        reason="released from quarantine", attempts=CALLS_MADE)).rowcount

    # ------------------------------------------------------------------- a batch

    def run_batch(self, *, limit: int = 500, journey: str | None = None, stage: str | None = None,
                  ids: Sequence[int] | None = None) -> DispatchReport:
        """Claim and dispatch up to ``limit`` due touchpoints, then take over abandoned leases.

        Abandoned work comes after the batch's due work, so it never holds due work up; a
        touchpoint suspected of killing its worker is taken over alone (see :meth:`_claim`).
        """
        report = DispatchReport()
        for abandoned in (False, True):
            tps, suspect, quarantined = self.guard.run(
                lambda: self._claim(limit, journey, stage, ids, abandoned=abandoned))
            for q in quarantined:
                report.quarantined.append(q)
                report.outcomes["quarantined"] += 1
                report.by_step[(q["journey"], q["stage"], q["step"], "-", "quarantined")] += 1
            report.claimed += len(tps) + len(suspect)
            report.reclaimed += len(tps) + len(suspect) if abandoned else 0
            for group in (tps, suspect):
                if group:
                    self._run(group, abandoned, report)
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

    def _load_context(self, tps: list[Any], abandoned: bool, now: datetime) -> "BatchContext":
        with self.engine.db.connect() as conn:
            ctx = BatchContext.load(conn, self.engine, tps, now)
            ctx.load_attempts(conn, [tp.id for tp in tps if tp.attempts or abandoned], LOOKUP_INCONCLUSIVE)
            # (a receipt arriving later in the batch is applied by the next sweep: dispatch_due)
            ctx.receipts_waiting = conn.execute(select(EarlyReceipt.id).limit(1)).first() is not None
        return ctx

    def _process(self, tps: list[Any], ctx: "BatchContext", report: DispatchReport) -> None:
        if not tps:
            return
        now = self.engine.clock.now()
        finals: list[dict] = []  # touchpoint updates
        tasks: list[dict] = []
        outgoing: list[_Outgoing] = []
        tag_changes: list[tuple[int, Tag]] = []  # (touchpoint id, action)
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
        self._commit(finals, tasks, tag_changes, ctx, now, survived=[tp.id for tp in tps])
        if outgoing:
            self._send_rounds(outgoing, ctx, report)

    # --------------------------------------------------------------- decisions

    def _farewell(self, tp: Any, enrollment: Any) -> bool:
        """Whether ``tp`` is a step on the very exit event that ended its enrollment (it still goes out)."""
        journey = self.engine.journey_version(tp.journey, enrollment.version)
        if journey is None or enrollment.status != "exited":
            return False
        try:
            event = journey.farewell_event(journey.step(tp.step))
        except KeyError:
            return False
        return event is not None and enrollment.exit_reason == exit_reason(event)

    def _decide(self, tp: Any, ctx: "BatchContext", now: datetime, report: DispatchReport):
        enrollment = ctx.enrollments.get(tp.enrollment_id)
        patient = ctx.patients.get(tp.patient_id)
        if enrollment is None or patient is None or patient.deceased or \
                (enrollment.status != "active" and not self._farewell(tp, enrollment)):
            report.add(tp, "cancelled")
            why = "patient deceased" if patient is not None and patient.deceased else "enrollment not active"
            return "final", self._final(tp, "cancelled", now, reason=f"cancelled: {why}")
        journey = self.engine.journey_version(tp.journey, enrollment.version)
        try:
            step = journey.step(tp.step) if journey else None
        except KeyError:
            step = None
        if step is None:
            report.add(tp, "skipped")
            return "final", self._final(tp, "skipped", now, reason="skipped: step not in pinned journey version")
        category = step.category
        tz = zone(patient.view.tz)
        policy = self.engine.policy
        if isinstance(step.action, Send) and not policy.allowed(now, category, tz):  # tasks, tags: no quiet hours
            report.add(tp, "deferred")
            return "final", self._defer(tp, policy.next_allowed(now, category, tz), QUIET_HOURS, now)
        expr = expression_context(patient.view, event=ctx.event_payload(tp, enrollment),
                                  anchors=anchor_values(enrollment.anchors or {}, enrollment.enrolled_at),
                                  journey=journey.name, now=now)
        check = evaluate(step.condition, expr)
        if not check.value:
            report.add(tp, "skipped")
            why = f"skipped: condition error {check.error}" if check.error else "skipped: condition false"
            return "final", self._final(tp, "skipped", now, reason=why)
        if isinstance(step.trigger, AfterStep) and step.trigger.unless == "replied" and ctx.replied(tp, step):
            report.add(tp, "skipped")
            return "final", self._final(tp, "skipped", now, reason="skipped: patient replied")
        action = step.action
        if isinstance(action, Send):
            if policy.counts_toward_cap(category):
                day = now.astimezone(tz).date()
                if ctx.sent_today[(tp.patient_id, day)] >= policy.daily_cap:
                    report.add(tp, "deferred" if step.over_cap == "defer" else "skipped")
                    if step.over_cap == "drop":
                        return "final", self._final(tp, "skipped", now, reason=CAP_DROPPED)
                    nxt = policy.next_allowed(policy.next_day_same_time(now, tz), category, tz)
                    return "final", self._defer(tp, nxt, DAILY_CAP, now)
            purpose = "marketing" if category is Category.marketing else "clinical"
            if not any(ctx.consent(tp.patient_id, purpose, name) for name in action.via):
                report.add(tp, "skipped")
                return "final", self._final(tp, "skipped", now, reason=f"skipped: no {purpose} consent")
            template = journey.templates.get(action.template) or self.engine.templates.get(action.template)
            if template is None:
                report.add(tp, "failed")
                return "final", self._final(tp, "failed", now, reason=f"failed: unknown template {action.template!r}")
            try:
                expr = with_survey(self.engine, expr, tp, action)
                title, body = render(template.title, expr), render(template.body, expr)
                body = tracked(self.engine, tp.id, body)  # issue 20: links go through the click redirect
            except Exception as exc:  # template bugs are configuration errors: recorded, never raised
                report.add(tp, "failed")
                return "final", self._final(tp, "failed", now, reason=f"failed: template {template.name}: {exc}")
            if policy.counts_toward_cap(category):
                ctx.sent_today[(tp.patient_id, now.astimezone(tz).date())] += 1
            return "send", _Outgoing(tp, step, title, body, template.name, tp.channel_index, expr)
        if isinstance(action, Task):
            return "task", dict(patient_id=tp.patient_id, enrollment_id=tp.enrollment_id, touchpoint_id=tp.id,
                                kind=action.task, team=action.team,
                                detail=action.detail or _why_task(journey.name, step),
                                **new_task(self.engine.config.team(action.team), now=now, sla=action.sla,
                                           priority=action.priority))
        if isinstance(action, Tag):
            return "tag", action
        return None  # pragma: no cover - the model admits no other action

    def _final(self, tp: Any, status: str, now: datetime, *, reason: str | None, channel: str | None = None,
               due: datetime | None = None, attempts: int | None = None, index: int | None = None) -> dict:
        return dict(b_id=tp.id, b_status=status, b_reason=reason, b_now=now, b_channel=channel,
                    b_sent=now if status == "sent" else None, b_due=due or tp.due_at,
                    b_attempts=self._attempts.get(tp.id, tp.attempts) if attempts is None else attempts,
                    b_index=tp.channel_index if index is None else index)

    def _defer(self, tp: Any, when: datetime, reason: str, now: datetime) -> dict:
        return self._final(tp, "scheduled", now, reason=reason, due=when)

    # ----------------------------------------------------------------- writing

    def _commit(self, finals: list[dict], tasks: list[dict], tags: list[tuple[int, Tag]], ctx: "BatchContext",
                now: datetime, deliveries: list[tuple] = (), starting: list[_Outgoing] = (),
                survived: list[int] = ()) -> list[_Outgoing]:
        """:meth:`_write` in one transaction, run again after a database outage (it is idempotent)."""
        return self.guard.run(lambda: self._write(finals, tasks, tags, ctx, now, list(deliveries), list(starting),
                                                  list(survived)))

    def _write(self, finals: list[dict], tasks: list[dict], tags: list[tuple[int, Tag]],
               ctx: "BatchContext", now: datetime, deliveries: list[tuple] = (),
               starting: list[_Outgoing] = (), survived: list[int] = ()) -> list[_Outgoing]:
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
            executemany_raw(conn, _DELIVERY_RESULT, list(deliveries))
            held = self._still_held(conn, [f["b_id"] for f in finals] + [o.tp.id for o in starting])
            finals = [f for f in finals if f["b_id"] in held]
            executemany_raw(conn, _FINAL_SQL, [(f["b_status"], f["b_reason"], f["b_now"], f["b_channel"], f["b_sent"],
                                                f["b_due"], f["b_attempts"], f["b_index"], f["b_id"], self.worker_id)
                                               for f in finals])
            tasks = [t for t in tasks if t["touchpoint_id"] in held]
            if tasks:
                conn.execute(insert(StaffTask), tasks)
            self._apply_tags(conn, [(ctx.by_id[tp_id].patient_id, action) for tp_id, action in tags if tp_id in held],
                             now)
            self._plan_followers(conn, [f for f in finals if f["b_status"] in ("sent", "failed")], ctx, now)
            record_sends(conn, sent_messages(finals, ctx), now)  # issue 20: messages sent, on the portrait
            provider_ids = [d[1] for d in deliveries if d[1] and d[0] in ("sent", "reconciled")]
            if provider_ids and ctx.receipts_waiting:  # receipts that came before these ids were recorded
                apply_early_receipts(conn, now, provider_ids)
            for at in range(0, len(survived), 5000):
                conn.execute(update(Touchpoint).where(
                    Touchpoint.id.in_(survived[at:at + 5000]), Touchpoint.status == "claimed",
                    Touchpoint.claimed_by == self.worker_id, Touchpoint.claims > 0)
                             .values(claims=Touchpoint.claims - 1))
            start = [o for o in starting if o.tp.id in held]
            executemany_raw(conn, _DELIVERY_INSERT, [(o.tp.id, o.attempts, o.channel, "sending", now, now)
                                                     for o in start])
            self._held -= {f["b_id"] for f in finals}
            renewed = self._renew(conn, now)
        if renewed:
            self._renew_at = now + self.lease / 3
        return start

    def _renew(self, conn: Connection, now: datetime) -> bool:
        """Extend this worker's lease on the batch's unfinished touchpoints (every third of a lease)."""
        if self._renew_at is None or now < self._renew_at or not self._held:
            return False
        ids = list(self._held)
        for start in range(0, len(ids), 5000):
            conn.execute(update(Touchpoint).where(Touchpoint.id.in_(ids[start:start + 5000]),
                                                  Touchpoint.status == "claimed",
                                                  Touchpoint.claimed_by == self.worker_id)
                         .values(lease_until=now + self.lease))
        return True

    def _still_held(self, conn: Connection, ids: list[int]) -> set[int]:
        """The touchpoints among ``ids`` still claimed by this worker, locked for this transaction."""
        held: set[int] = set()
        for start in range(0, len(ids), 5000):
            q = select(Touchpoint.id).where(Touchpoint.id.in_(ids[start:start + 5000]),
                                            Touchpoint.status == "claimed", Touchpoint.claimed_by == self.worker_id)
            if conn.dialect.name == "postgresql":
                q = q.with_for_update()
            held.update(conn.execute(q).scalars())
        return held

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
            journey = self.engine.journey_version(tp.journey, ctx.enrollments[tp.enrollment_id].version)
            followers = [s for s in journey.steps if isinstance(s.trigger, AfterStep)
                         and s.trigger.step == tp.step and s.trigger.outcome == row["b_status"]]
            if followers:
                planned = [Planned(step=s, occurrence=tp.occurrence, planned_at=now + s.trigger.delay,
                                   due_at=now + s.trigger.delay) for s in followers]
                entries.append((tp.enrollment_id, tp.patient_id, ctx.patients[tp.patient_id].view.tz, journey,
                                planned))
        if entries:
            plan_batch(conn, entries, now=now, policy=self.engine.policy, return_ids=False)

    # ----------------------------------------------------------------- sending

    def _send_rounds(self, outgoing: list[_Outgoing], ctx: "BatchContext", report: DispatchReport) -> None:
        """Try channels in order; a permanent error or missing address falls to the next at once.

        Each provider call (a send, a ``send_batch`` chunk or a lookup) is recorded as it returns.
        """
        pending = outgoing
        while pending:
            now = self.engine.clock.now()
            ready, exhausted = self._pick_channels(pending, ctx)
            for o in [o for o in ready if o.attempts >= self.max_attempts and not self._reconcile(o)
                      and not (o.tp.reason or "").startswith((PROVIDER_WAIT, "deferred:"))]:
                # only calls cut off by crashes get here: they count, so crash loops end too
                o.notes.append(f"{o.channel}: no result after {o.attempts} attempts")
                ready.remove(o)
                exhausted.append(o)
            finals = [self._give_up(o, now, report) for o in exhausted]
            tasks = [self._fallback_task(o, now) for o in exhausted if o.step.category is not Category.marketing]
            calls = self._plan_calls(ready)
            pending = []
            done: tuple[list[_Outgoing], list[Any], bool] | None = None
            for i, (lookup, group) in enumerate(calls):
                deliveries: list[tuple] = []
                if done is not None:
                    deliveries, finals, tasks = self._outcomes(*done, ctx, report, pending)
                now = self.engine.clock.now()
                if self._past_lease(now):
                    finals += self._release([o for _, g in calls[i:] for o in g] + pending, now, report)
                    self._commit(finals, tasks, [], ctx, now, deliveries)
                    return
                for o in group:
                    o.attempts += 1
                group = self._commit(finals, tasks, [], ctx, now, deliveries, starting=group)
                finals, tasks = [], []
                done = (group, self._lookup(group[0], ctx) if lookup and group else self._send(group, ctx), lookup)
            deliveries = []
            if done is not None:
                deliveries, more_finals, more_tasks = self._outcomes(*done, ctx, report, pending)
                finals, tasks = finals + more_finals, tasks + more_tasks
            self._commit(finals, tasks, [], ctx, self.engine.clock.now(), deliveries)

    def _pick_channels(self, pending: Iterable[_Outgoing], ctx: "BatchContext") -> tuple[list[_Outgoing], list[_Outgoing]]:
        ready, exhausted = [], []
        for o in pending:
            via = o.step.action.via
            while o.channel_index < len(via):
                name = via[o.channel_index]
                problem = ctx.channel_problem(self.engine, o.tp, o.step, name)
                if problem is None:
                    o.channel = name
                    ready.append(o)
                    break
                o.notes.append(f"{name}: {problem}")
                o.channel_index += 1
            else:
                exhausted.append(o)
        return ready, exhausted

    def _past_lease(self, now: datetime) -> bool:
        """Has this batch run for a whole lease? Then it stops rather than outlive it."""
        return self._batch_started is not None and now >= self._batch_started + self.lease

    def _release(self, rest: list[_Outgoing], now: datetime, report: DispatchReport) -> list[dict]:
        """Hand unsent touchpoints back (due at once, progress kept) for any worker to take."""
        report.released += len(rest)
        log.info("batch of %s ran for a whole lease: %d touchpoint(s) handed back unsent", self.worker_id, len(rest))
        return [self._final(o.tp, "scheduled", now, reason="released: its batch was cut short at the lease",
                            due=now, attempts=o.attempts, index=o.channel_index) for o in rest]

    def _plan_calls(self, ready: list[_Outgoing]) -> list[tuple[bool, list[_Outgoing]]]:
        """Provider calls in order, as ``(is_lookup, outgoing)``: a lookup per unknown attempt first, then
        one send per message, or ``send_batch`` chunks for channels that take many per call."""
        by_channel: dict[str, list[_Outgoing]] = defaultdict(list)
        for o in ready:
            by_channel[o.channel].append(o)
        calls: list[tuple[bool, list[_Outgoing]]] = []
        for name, group in by_channel.items():
            channel = self.engine.channels[name]
            calls += [(True, [o]) for o in group if self._reconcile(o)]
            sends = [o for o in group if not self._reconcile(o)]
            size = self.chunk if type(channel).send_batch is not Channel.send_batch else 1
            calls += [(False, sends[i:i + size]) for i in range(0, len(sends), size)]
        return calls

    def _reconcile(self, o: _Outgoing) -> bool:
        """Is this message's last call on this channel ``unknown``, and can the channel look it up?"""
        return (o.lookup is not None and o.lookup.channel == o.channel
                and self.engine.channels[o.channel].capabilities.lookup)

    def _message(self, o: _Outgoing, ctx: "BatchContext", channel: Channel) -> Message:
        return Message(idempotency_key=f"{o.tp.idempotency_key}:{o.channel}", channel=o.channel,
                       patient_id=o.tp.patient_id,
                       address=ctx.patients[o.tp.patient_id].addresses.get(channel.address_kind) or "",
                       title=o.title, body=o.body, template=o.template, category=o.step.category.value,
                       context=o.context)

    def _lookup(self, o: _Outgoing, ctx: "BatchContext") -> list[LookupResult]:
        """Ask the provider whether the unknown attempt went through (one provider call)."""
        channel = self.engine.channels[o.channel]
        try:
            found = channel.lookup(self._message(o, ctx, channel), o.lookup.created_at)
        except Exception as exc:  # a connector bug must not lose the touchpoint: ask again later
            return [LookupResult(LookupStatus.UNKNOWN, detail=f"{type(exc).__name__}: {exc}")]
        return [found if isinstance(found, LookupResult) else LookupResult(LookupStatus.UNKNOWN, detail="no answer")]

    def _send(self, group: list[_Outgoing], ctx: "BatchContext") -> list[SendResult]:
        """One provider call for ``group`` (all on one channel), after the ``before_send`` hooks."""
        if not group:
            return []
        channel = self.engine.channels[group[0].channel]
        messages = [self._message(o, ctx, channel) for o in group]
        results: list[SendResult | None] = [None] * len(group)
        if self.engine.plugins.pm.hook.carepath_before_send.get_hookimpls():
            for j, o in enumerate(group):
                checked = self.engine.plugins.before_send(o.tp, messages[j])
                if isinstance(checked, Veto):
                    results[j] = SendResult.permanent(VETOED, checked.reason)
                else:
                    messages[j] = checked
        allowed = [j for j in range(len(group)) if results[j] is None]
        try:
            out = channel.send_batch([messages[j] for j in allowed]) if allowed else []
        except Exception as exc:  # a connector bug must not lose the batch: retry later
            out = [SendResult.retryable("connector_error", f"{type(exc).__name__}: {exc}")] * len(allowed)
        for j, res in zip(allowed, out):
            results[j] = res
        return results  # type: ignore[return-value]

    def _outcomes(self, group: list[_Outgoing], results: list[Any], lookup: bool, ctx: "BatchContext",
                  report: DispatchReport, pending: list[_Outgoing]) -> tuple[list[tuple], list[dict], list[dict]]:
        """Delivery rows, touchpoint updates and staff tasks for one call's results; fallbacks go to ``pending``."""
        now = self.engine.clock.now()
        deliveries: list[tuple] = []
        finals: list[dict] = []
        tasks: list[dict] = []
        for o, res in zip(group, results):
            if lookup:
                res = self._lookup_outcome(o, res, now, report, deliveries, finals, pending)
                if res is None:
                    continue
            else:
                deliveries.append(("sent" if res.ok else "failed", res.provider_id,
                                   res.error_kind.value if res.error_kind else None, res.error_code, res.error,
                                   res.cost, now, o.tp.id, o.attempts, o.channel))
            if res.ok:
                report.add(o.tp, "sent", o.channel)
                reason = ("fallback: " + "; ".join(o.notes)) if o.notes else o.tp.reason
                finals.append(self._final(o.tp, "sent", now, reason=reason, channel=o.channel, attempts=o.attempts,
                                          index=o.channel_index))
            elif res.error_code == VETOED:
                report.add(o.tp, "skipped", o.channel)
                finals.append(self._final(o.tp, "skipped", now, reason=f"skipped: vetoed by a plugin: {res.error}",
                                          attempts=o.attempts))
            elif res.error_kind is ErrorKind.PERMANENT:
                o.notes.append(f"{o.channel}: {res.error_code}")
                o.channel_index += 1
                pending.append(o)
            elif o.attempts >= self.max_attempts and res.retry_after is None:
                # a provider that says when to come back (a rate limit, an account held by the connector)
                # is waited for: the operator alert, not each patient's message, carries the outage
                o.notes.append(f"{o.channel}: {res.error_code} after {o.attempts} attempts")
                finals.append(self._give_up(o, now, report, attempts=o.attempts))
                if o.step.category is not Category.marketing:
                    tasks.append(self._fallback_task(o, now))
            else:
                report.add(o.tp, "retry", o.channel)
                wait = max(self._backoff(o.attempts), res.retry_after or timedelta(0))
                why = f"{PROVIDER_WAIT} {o.channel} {res.error_code}" if res.retry_after else \
                    f"retry: {o.channel} {res.error_code}"
                finals.append(self._final(o.tp, "scheduled", now, reason=why, due=now + wait, attempts=o.attempts,
                                          index=o.channel_index))
        return deliveries, finals, tasks

    def _lookup_outcome(self, o: _Outgoing, found: LookupResult, now: datetime, report: DispatchReport,
                        deliveries: list[tuple], finals: list[dict], pending: list[_Outgoing]) -> SendResult | None:
        """Record what the provider said of an unknown attempt; a :class:`SendResult` when the touchpoint
        ends or retries on it, ``None`` when the message goes out again (``pending``)."""
        report.reconciled += 1
        unknown = o.lookup.attempt
        o.lookup = None
        if found.status is LookupStatus.ACCEPTED:
            deliveries.append(("reconciled", found.provider_id, None, None,
                               f"the provider had accepted attempt {unknown}", found.cost, now, o.tp.id, o.attempts,
                               o.channel))
            o.notes.append(f"{o.channel}: reconciled attempt {unknown} (accepted)")
            return SendResult.sent(found.provider_id, found.cost)
        if found.status is LookupStatus.NOT_FOUND:
            deliveries.append(("not_found", None, None, None, f"the provider never took attempt {unknown}", None,
                               now, o.tp.id, o.attempts, o.channel))
            pending.append(o)
            return None
        detail = f"the provider cannot tell yet whether attempt {unknown} went through"
        deliveries.append(("failed", None, ErrorKind.RETRYABLE.value, LOOKUP_INCONCLUSIVE,
                           f"{detail}: {found.detail}" if found.detail else detail, None, now, o.tp.id, o.attempts,
                           o.channel))
        return SendResult.retryable(LOOKUP_INCONCLUSIVE, detail)

    def _give_up(self, o: _Outgoing, now: datetime, report: DispatchReport, attempts: int | None = None) -> dict:
        report.add(o.tp, "failed", o.channel)
        reason = "failed: no channel delivered (" + "; ".join(o.notes) + ")" if o.notes else "failed: no channel"
        return self._final(o.tp, "failed", now, reason=reason, index=o.channel_index,
                           attempts=o.attempts if attempts is None else attempts)

    def _fallback_task(self, o: _Outgoing, now: datetime) -> dict:
        """The last resort: the journey's team contacts the patient, told what the message said and why it failed."""
        journey = self.engine.journeys.get(o.tp.journey)
        team = journey.calling_team if journey else "nursing"
        detail = (f"Call the patient: message '{o.template}' of step {o.tp.step} was not delivered on any "
                  f"channel.\nMessage: {mask_text(o.body)}\nWhy: " + "; ".join(o.notes))
        return dict(patient_id=o.tp.patient_id, enrollment_id=o.tp.enrollment_id, touchpoint_id=o.tp.id,
                    kind="contact_patient", team=team, detail=detail,
                    **new_task(self.engine.config.team(team), now=now, sla=timedelta(hours=24)))

    def _backoff(self, attempts: int) -> timedelta:
        base = self.backoff * (2 ** (attempts - 1))
        base = min(base, timedelta(hours=1))
        return base * (0.8 + 0.4 * self._rng.random())
