"""The dispatcher: claim due touchpoints in batches, re-check, render, send, record.

Every state change is committed before the next side effect: a claim before
rendering, a ``sending`` delivery row before the provider call, the result
after it. A worker killed anywhere loses nothing: its lease expires, another
worker reclaims the touchpoint and resends with the same idempotency key,
which the channel passes to the provider's dedup field.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from sqlalchemy import Connection, and_, insert, select, update

from carepath.runtime.batch_context import BatchContext
from carepath.definition.context import expression_context
from carepath.definition.expressions import evaluate, render
from carepath.definition.model import AfterStep, Category, Send, Step, Survey, Tag, Task
from carepath.runtime.planner import CAP_DROPPED, DAILY_CAP, QUIET_HOURS, Planned, anchor_values
from carepath.runtime.survey_links import survey_context
from carepath.runtime.work_queue import new_task
from carepath.plugins.contracts import ErrorKind, Message, SendResult, Veto
from carepath.runtime.policy import zone
from carepath.runtime.scheduling import executemany_raw, plan_batch
from carepath.store.schema import Patient, StaffTask, Touchpoint

if TYPE_CHECKING:
    from carepath.engine import Engine


VETOED = "vetoed"
# what a batch reads of each claimed touchpoint (fewer columns: fewer conversions on the hot path)
_CLAIMED_COLUMNS = (Touchpoint.id, Touchpoint.enrollment_id, Touchpoint.patient_id, Touchpoint.journey, Touchpoint.step,
                    Touchpoint.stage, Touchpoint.occurrence, Touchpoint.idempotency_key, Touchpoint.due_at,
                    Touchpoint.reason, Touchpoint.attempts, Touchpoint.channel_index, Touchpoint.event_id)
_DELIVERY_INSERT = ("INSERT INTO deliveries (touchpoint_id, attempt, channel, status, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)")
_DELIVERY_RESULT = ("UPDATE deliveries SET status = ?, provider_id = ?, error_kind = ?, error_code = ?, error = ?, "
                    "cost = ?, updated_at = ? WHERE touchpoint_id = ? AND attempt = ? AND channel = ? "
                    "AND status = 'sending'")

# Fencing: only rows this worker still holds change.
_FINAL_SQL = ("UPDATE touchpoints SET status = ?, reason = ?, updated_at = ?, channel = ?, sent_at = ?, due_at = ?, "
              "attempts = ?, channel_index = ?, lease_until = NULL "
              "WHERE id = ? AND status = 'claimed' AND claimed_by = ?")


@dataclass
class DispatchReport:
    """Counts of what a dispatch run did, by outcome and by ``(step, channel)``."""

    claimed: int = 0
    outcomes: Counter = field(default_factory=Counter)  # sent, skipped, cancelled, deferred, retry, failed
    by_step: Counter = field(default_factory=Counter)  # (journey, stage, step, channel|"-", outcome)

    def add(self, tp: Any, outcome: str, channel: str | None = None) -> None:
        self.outcomes[outcome] += 1
        self.by_step[(tp.journey, tp.stage, tp.step, channel or "-", outcome)] += 1

    def merge(self, other: "DispatchReport") -> "DispatchReport":
        self.claimed += other.claimed
        self.outcomes.update(other.outcomes)
        self.by_step.update(other.by_step)
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


class Dispatcher:
    def __init__(self, engine: "Engine", *, worker_id: str | None = None, lease: timedelta = timedelta(minutes=5),
                 max_attempts: int = 5, backoff: timedelta = timedelta(minutes=1)) -> None:
        self.engine = engine
        self.worker_id = worker_id or f"w-{uuid.uuid4().hex[:10]}"
        self.lease = lease
        self.max_attempts = max_attempts
        self.backoff = backoff
        self._rng = random.Random()

    # ------------------------------------------------------------------ claiming

    def claim(self, *, limit: int, journey: str | None = None, stage: str | None = None,
              ids: Sequence[int] | None = None) -> list[Any]:
        """Lease up to ``limit`` due touchpoints (expired leases included) to this worker."""
        now = self.engine.clock.now()
        expired = and_(Touchpoint.status == "claimed", Touchpoint.lease_until < now)
        due = and_(Touchpoint.status == "scheduled", Touchpoint.due_at <= now)

        def query(condition, n: int):
            q = select(Touchpoint.id).where(condition)
            if journey:
                q = q.where(Touchpoint.journey == journey)
            if stage:
                q = q.where(Touchpoint.stage == stage)
            if ids is not None:
                q = q.where(Touchpoint.id.in_(list(ids)))
            # (status, due_at) index order: no sort of the whole backlog after an outage
            return q.order_by(Touchpoint.status, Touchpoint.due_at).limit(n)

        with self.engine.db.begin() as conn:
            lock = conn.dialect.name == "postgresql"
            claimed = []
            for condition in (expired, due):  # abandoned leases first: they are the oldest work
                q = query(condition, limit - len(claimed))
                claimed += conn.execute(q.with_for_update(skip_locked=True) if lock else q).scalars()
                if len(claimed) >= limit:
                    break
            if not claimed:
                return []
            conn.execute(update(Touchpoint).where(Touchpoint.id.in_(claimed)).values(
                status="claimed", lease_until=now + self.lease, claimed_by=self.worker_id, updated_at=now))
            return list(conn.execute(select(*_CLAIMED_COLUMNS).where(Touchpoint.id.in_(claimed))
                                     .order_by(Touchpoint.due_at, Touchpoint.id)))

    # ------------------------------------------------------------------- a batch

    def run_batch(self, *, limit: int = 500, journey: str | None = None, stage: str | None = None,
                  ids: Sequence[int] | None = None) -> DispatchReport:
        report = DispatchReport()
        tps = self.claim(limit=limit, journey=journey, stage=stage, ids=ids)
        report.claimed = len(tps)
        if not tps:
            return report
        eng = self.engine
        now = eng.clock.now()
        with eng.db.connect() as conn:
            ctx = BatchContext.load(conn, eng, tps, now)
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
                outgoing.append(payload)
            elif kind == "task":
                tasks.append(payload)
                finals.append(self._final(tp, "sent", now, reason=None, channel="staff-task"))
                report.add(tp, "sent", "staff-task")
            elif kind == "tag":
                tag_changes.append((tp.id, payload))
                finals.append(self._final(tp, "sent", now, reason=None, channel="tag"))
                report.add(tp, "sent", "tag")
        self._write(finals, tasks, tag_changes, ctx, now)
        if outgoing:
            self._send_rounds(outgoing, ctx, report)
        return report

    # --------------------------------------------------------------- decisions

    def _decide(self, tp: Any, ctx: "BatchContext", now: datetime, report: DispatchReport):
        enrollment = ctx.enrollments.get(tp.enrollment_id)
        patient = ctx.patients.get(tp.patient_id)
        if enrollment is None or enrollment.status != "active" or patient is None or patient.deceased:
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
        if not policy.allowed(now, category, tz):
            report.add(tp, "deferred")
            return "final", self._defer(tp, policy.next_allowed(now, category, tz), QUIET_HOURS, now)
        event = ctx.events.get(tp.event_id) if tp.event_id else enrollment.context
        expr = expression_context(patient.view, event=event or {},
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
                if isinstance(action, Survey):
                    expr = {**expr, "survey": survey_context(self.engine, tp, action)}
                title, body = render(template.title, expr), render(template.body, expr)
            except Exception as exc:  # template bugs are configuration errors: recorded, never raised
                report.add(tp, "failed")
                return "final", self._final(tp, "failed", now, reason=f"failed: template {template.name}: {exc}")
            if policy.counts_toward_cap(category):
                ctx.sent_today[(tp.patient_id, now.astimezone(tz).date())] += 1
            return "send", _Outgoing(tp, step, title, body, template.name, tp.channel_index, expr)
        if isinstance(action, Task):
            return "task", dict(patient_id=tp.patient_id, enrollment_id=tp.enrollment_id, touchpoint_id=tp.id,
                                kind=action.task, team=action.team, detail=action.detail,
                                **new_task(self.engine.config.team(action.team), now=now, sla=action.sla,
                                           priority=action.priority))
        if isinstance(action, Tag):
            return "tag", action
        return None  # pragma: no cover - the model admits no other action

    def _final(self, tp: Any, status: str, now: datetime, *, reason: str | None, channel: str | None = None,
               due: datetime | None = None, attempts: int | None = None, index: int | None = None) -> dict:
        return dict(b_id=tp.id, b_status=status, b_reason=reason, b_now=now, b_channel=channel,
                    b_sent=now if status == "sent" else None, b_due=due or tp.due_at,
                    b_attempts=tp.attempts if attempts is None else attempts,
                    b_index=tp.channel_index if index is None else index)

    def _defer(self, tp: Any, when: datetime, reason: str, now: datetime) -> dict:
        return self._final(tp, "scheduled", now, reason=reason, due=when)

    # ----------------------------------------------------------------- writing

    def _write(self, finals: list[dict], tasks: list[dict], tags: list[tuple[int, Tag]],
               ctx: "BatchContext", now: datetime, deliveries: list[tuple] = ()) -> list[int]:
        """Record decisions and delivery results in one transaction.

        Fencing: only touchpoints this worker still holds change, and only they
        open staff tasks, change tags or plan follower steps. A worker that
        stalled past its lease records its provider results and nothing else.
        """
        if not (finals or tasks or tags or deliveries):
            return []
        with self.engine.db.begin() as conn:
            executemany_raw(conn, _DELIVERY_RESULT, list(deliveries))
            held = self._still_held(conn, [f["b_id"] for f in finals])
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
        return [f["b_id"] for f in finals]

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
        """Try channels in order; a permanent error or missing address falls to the next at once."""
        pending = outgoing
        while pending:
            now = self.engine.clock.now()
            ready, exhausted = self._pick_channels(pending, ctx)
            finals = [self._give_up(o, now, report) for o in exhausted]
            tasks = [self._fallback_task(o, now) for o in exhausted if o.step.category is not Category.marketing]
            if ready:
                self._record_attempts(ready, now)
            self._write(finals, tasks, [], ctx, now)
            if not ready:
                return
            results = self._call_channels(ready, ctx)
            now = self.engine.clock.now()
            finals, tasks, pending = [], [], []
            delivery_rows = []
            for o, res in zip(ready, results):
                delivery_rows.append(("sent" if res.ok else "failed", res.provider_id,
                                      res.error_kind.value if res.error_kind else None, res.error_code, res.error,
                                      res.cost, now, o.tp.id, o.tp.attempts + 1, o.channel))
                if res.ok:
                    report.add(o.tp, "sent", o.channel)
                    finals.append(self._final(o.tp, "sent", now, reason=("fallback: " + "; ".join(o.notes)) if o.notes else o.tp.reason,
                                              channel=o.channel, attempts=o.tp.attempts + 1, index=o.channel_index))
                elif res.error_code == VETOED:
                    report.add(o.tp, "skipped", o.channel)
                    finals.append(self._final(o.tp, "skipped", now, reason=f"skipped: vetoed by a plugin: {res.error}"))
                elif res.error_kind is ErrorKind.PERMANENT:
                    o.notes.append(f"{o.channel}: {res.error_code}")
                    o.channel_index += 1
                    pending.append(o)
                else:
                    attempts = o.tp.attempts + 1
                    if attempts >= self.max_attempts:
                        o.notes.append(f"{o.channel}: {res.error_code} after {attempts} attempts")
                        finals.append(self._give_up(o, now, report, attempts=attempts))
                        if o.step.category is not Category.marketing:
                            tasks.append(self._fallback_task(o, now))
                    else:
                        report.add(o.tp, "retry", o.channel)
                        finals.append(self._final(o.tp, "scheduled", now, reason=f"retry: {o.channel} {res.error_code}",
                                                  due=now + self._backoff(attempts), attempts=attempts,
                                                  index=o.channel_index))
            self._write(finals, tasks, [], ctx, now, deliveries=delivery_rows)

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

    def _record_attempts(self, ready: list[_Outgoing], now: datetime) -> None:
        """The ``sending`` rows, committed before any provider is called."""
        with self.engine.db.begin() as conn:
            executemany_raw(conn, _DELIVERY_INSERT, [(o.tp.id, o.tp.attempts + 1, o.channel, "sending", now, now)
                                                     for o in ready])

    def _call_channels(self, ready: list[_Outgoing], ctx: "BatchContext") -> list[SendResult]:
        by_channel: dict[str, list[int]] = defaultdict(list)
        for i, o in enumerate(ready):
            by_channel[o.channel].append(i)
        results: list[SendResult | None] = [None] * len(ready)
        hooks = bool(self.engine.plugins.pm.hook.carepath_before_send.get_hookimpls())
        for name, idxs in by_channel.items():
            channel = self.engine.channels[name]
            messages = [Message(idempotency_key=f"{ready[i].tp.idempotency_key}:{name}", channel=name,
                                patient_id=ready[i].tp.patient_id,
                                address=ctx.patients[ready[i].tp.patient_id].addresses.get(channel.address_kind) or "",
                                title=ready[i].title, body=ready[i].body, template=ready[i].template,
                                category=ready[i].step.category.value, context=ready[i].context) for i in idxs]
            vetoes: dict[int, SendResult] = {}
            if hooks:
                for j, i in enumerate(idxs):
                    checked = self.engine.plugins.before_send(ready[i].tp, messages[j])
                    if isinstance(checked, Veto):
                        vetoes[i] = SendResult.permanent(VETOED, checked.reason)
                    else:
                        messages[j] = checked
            allowed = [(i, m) for i, m in zip(idxs, messages) if i not in vetoes]
            try:
                out = channel.send_batch([m for _, m in allowed]) if allowed else []
            except Exception as exc:  # a connector bug must not lose the batch: retry later
                out = [SendResult.retryable("connector_error", f"{type(exc).__name__}: {exc}")] * len(allowed)
            for (i, _), res in zip(allowed, out):
                results[i] = res
            for i, res in vetoes.items():
                results[i] = res
        return results  # type: ignore[return-value]

    def _give_up(self, o: _Outgoing, now: datetime, report: DispatchReport, attempts: int | None = None) -> dict:
        report.add(o.tp, "failed", o.channel)
        reason = "failed: no channel delivered (" + "; ".join(o.notes) + ")" if o.notes else "failed: no channel"
        return self._final(o.tp, "failed", now, reason=reason, index=o.channel_index, attempts=attempts)

    def _fallback_task(self, o: _Outgoing, now: datetime) -> dict:
        """The last resort: a staff member contacts the patient."""
        return dict(patient_id=o.tp.patient_id, enrollment_id=o.tp.enrollment_id, touchpoint_id=o.tp.id,
                    kind="contact_patient", team="nursing",
                    detail=f"message '{o.template}' of step {o.tp.step} undelivered: " + "; ".join(o.notes),
                    **new_task(self.engine.config.team("nursing"), now=now, sla=timedelta(hours=24)))

    def _backoff(self, attempts: int) -> timedelta:
        base = self.backoff * (2 ** (attempts - 1))
        base = min(base, timedelta(hours=1))
        return base * (0.8 + 0.4 * self._rng.random())
