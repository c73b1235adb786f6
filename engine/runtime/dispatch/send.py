"""Provider calls: channel after channel, chunk after chunk, each recorded as it returns.

Guarantees kept here: one ``sending`` delivery row (its own attempt number) is committed before
each provider call and its result right after (:mod:`.write`); a permanent error or a missing
address falls to the next channel at once; a retryable error waits with backoff, or as long as
the provider asked (``retry_after``), without using up the attempts of a provider outage; a
message no channel delivered opens a staff task for the journey's team (not for marketing);
a batch that ran for a whole lease hands its unsent touchpoints back rather than outlive it;
a connector that raises loses nothing (the batch is retried later).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterable

from carepath.definition.model import Category
from carepath.masking import mask_text
from carepath.plugins.contracts import Channel, ErrorKind, Message, SendResult, Veto
from carepath.runtime.dispatch.decide import PROVIDER_WAIT, Outgoing
from carepath.runtime.dispatch.recipients import copy_key, is_copy
from carepath.runtime.work_queue import new_task

if TYPE_CHECKING:
    from carepath.runtime.batch_context import BatchContext
    from carepath.runtime.dispatch.report import DispatchReport

log = logging.getLogger("carepath.dispatcher")


def wants_call(o: Outgoing) -> bool:
    """Whether a message no channel delivered opens a call task: care messages to the patient or a guardian
    (a minor's), not marketing and not updates to other family members."""
    return o.step.category is not Category.marketing and (o.recipient is None or o.recipient.guardian)
VETOED = "vetoed"


class ProviderCalls:
    """Sending rounds and what each call's results become (mixed into the dispatcher)."""

    def _send_rounds(self, outgoing: list[Outgoing], ctx: "BatchContext", report: "DispatchReport",
                     decided: tuple[list, list, list, list] = ([], [], [], [])) -> None:
        """Try channels in order; a permanent error or missing address falls to the next at once.

        Each provider call (a send, a ``send_batch`` chunk or a lookup) is recorded as it returns.
        ``decided``: the batch's decisions ``(finals, tasks, tag changes, survived)``, written in the
        same transaction as the first call's ``sending`` rows (one commit fewer per batch).
        """
        carry = [decided]

        def commit(finals: list[dict], tasks: list[dict], now: datetime, deliveries: list[tuple],
                   starting: list[Outgoing] = ()) -> list[Outgoing]:
            d_finals, d_tasks, d_tags, d_survived = carry.pop() if carry else ([], [], [], [])
            return self._commit(d_finals + finals, d_tasks + tasks, d_tags, ctx, now, deliveries, starting=starting,
                                survived=d_survived)

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
            tasks = [self._fallback_task(o, now) for o in exhausted if wants_call(o)]
            calls = self._plan_calls(ready)
            pending = []
            done: tuple[list[Outgoing], list[Any], bool] | None = None
            for i, (lookup, group) in enumerate(calls):
                deliveries: list[tuple] = []
                if done is not None:
                    deliveries, finals, tasks = self._outcomes(*done, ctx, report, pending)
                now = self.engine.clock.now()
                if self._past_lease(now):
                    finals += self._release([o for _, g in calls[i:] for o in g] + pending, now, report)
                    commit(finals, tasks, now, deliveries)
                    return
                for o in group:
                    o.attempts += 1
                group = commit(finals, tasks, now, deliveries, starting=group)
                finals, tasks = [], []
                done = (group, self._lookup(group[0], ctx) if lookup and group else self._send(group, ctx), lookup)
            deliveries = []
            if done is not None:
                deliveries, more_finals, more_tasks = self._outcomes(*done, ctx, report, pending)
                finals, tasks = finals + more_finals, tasks + more_tasks
            commit(finals, tasks, self.engine.clock.now(), deliveries)

    def _pick_channels(self, pending: Iterable[Outgoing], ctx: "BatchContext") -> tuple[list[Outgoing], list[Outgoing]]:
        ready, exhausted = [], []
        for o in pending:
            via = o.step.action.via
            while o.channel_index < len(via):
                name = via[o.channel_index]
                problem = ctx.channel_problem(self.engine, o.tp, o.step, name, o.recipient)
                if problem is None:
                    o.channel = name
                    ready.append(o)
                    break
                o.notes.append(f"{name}: {problem}")
                o.channel_index += 1
            else:
                exhausted.append(o)
        return ready, exhausted

    def _release(self, rest: list[Outgoing], now: datetime, report: "DispatchReport") -> list[dict]:
        """Hand unsent touchpoints back (due at once, progress kept) for any worker to take."""
        report.released += len(rest)
        log.info("batch of %s ran for a whole lease: %d touchpoint(s) handed back unsent", self.worker_id, len(rest))
        return [self._final(o.tp, "scheduled", now, reason="released: its batch was cut short at the lease",
                            due=now, attempts=o.attempts, index=o.channel_index) for o in rest]

    def _plan_calls(self, ready: list[Outgoing]) -> list[tuple[bool, list[Outgoing]]]:
        """Provider calls in order, as ``(is_lookup, outgoing)``: a lookup per unknown attempt first, then
        one send per message, or ``send_batch`` chunks for channels that take many per call."""
        by_channel: dict[str, list[Outgoing]] = defaultdict(list)
        for o in ready:
            by_channel[o.channel].append(o)
        calls: list[tuple[bool, list[Outgoing]]] = []
        for name, group in by_channel.items():
            channel = self.engine.channels[name]
            calls += [(True, [o]) for o in group if self._reconcile(o)]
            sends = [o for o in group if not self._reconcile(o)]
            size = self.chunk if type(channel).send_batch is not Channel.send_batch else 1
            calls += [(False, sends[i:i + size]) for i in range(0, len(sends), size)]
        return calls

    def _message(self, o: Outgoing, ctx: "BatchContext", channel: Channel) -> Message:
        # the key names the recipient: a message to a guardian or a family member is its own, sent once
        to = "" if o.recipient is None or is_copy(o.tp) else copy_key("", o.recipient)
        who = ctx.patients[o.tp.patient_id].addresses if o.recipient is None else o.recipient.addresses
        return Message(idempotency_key=f"{o.tp.idempotency_key}{to}:{o.channel}", channel=o.channel,
                       patient_id=o.tp.patient_id,
                       address=who.get(channel.address_kind) or "",
                       title=o.title, body=o.body, template=o.template, category=o.step.category.value,
                       context=o.context)

    def _send(self, group: list[Outgoing], ctx: "BatchContext") -> list[SendResult]:
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

    def _outcomes(self, group: list[Outgoing], results: list[Any], lookup: bool, ctx: "BatchContext",
                  report: "DispatchReport", pending: list[Outgoing]) -> tuple[list[tuple], list[dict], list[dict]]:
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
                status = ("pending_confirmation" if res.pending else "sent") if res.ok else "failed"
                deliveries.append((status, res.provider_id,
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
                if wants_call(o):
                    tasks.append(self._fallback_task(o, now))
            else:
                report.add(o.tp, "retry", o.channel)
                wait = max(self._backoff(o.attempts), res.retry_after or timedelta(0))
                why = f"{PROVIDER_WAIT} {o.channel} {res.error_code}" if res.retry_after else \
                    f"retry: {o.channel} {res.error_code}"
                finals.append(self._final(o.tp, "scheduled", now, reason=why, due=now + wait, attempts=o.attempts,
                                          index=o.channel_index))
        return deliveries, finals, tasks

    def _give_up(self, o: Outgoing, now: datetime, report: "DispatchReport", attempts: int | None = None) -> dict:
        report.add(o.tp, "failed", o.channel)
        reason = "failed: no channel delivered (" + "; ".join(o.notes) + ")" if o.notes else "failed: no channel"
        return self._final(o.tp, "failed", now, reason=reason, index=o.channel_index,
                           attempts=o.attempts if attempts is None else attempts)

    def _fallback_task(self, o: Outgoing, now: datetime) -> dict:
        """The last resort: the journey's team contacts the patient, told what the message said and why it failed."""
        journey = self.engine.journeys.get(o.tp.journey)
        team = journey.calling_team if journey else "nursing"
        whom = "the patient" if o.recipient is None else f"the patient's {o.recipient.relationship}"
        detail = (f"Call {whom}: message '{o.template}' of step {o.tp.step} was not delivered on any "
                  f"channel.\nMessage: {mask_text(o.body)}\nWhy: " + "; ".join(o.notes))
        return dict(patient_id=o.tp.patient_id, enrollment_id=o.tp.enrollment_id, touchpoint_id=o.tp.id,
                    kind="contact_patient", team=team, detail=detail,
                    **new_task(self.engine.config.team(team), now=now, sla=timedelta(hours=24)))

    def _backoff(self, attempts: int) -> timedelta:
        base = self.backoff * (2 ** (attempts - 1))
        base = min(base, timedelta(hours=1))
        return base * (0.8 + 0.4 * self._rng.random())
