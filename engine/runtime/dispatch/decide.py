"""Decisions: what each claimed touchpoint becomes, re-checked at send time, in memory.

Guarantee kept here: nothing goes out that should not at the moment it would go out. The
enrollment must still be active (or the step is the farewell of the exit that ended it), the
patient alive, the step still in the pinned journey version, quiet hours and the daily cap
respected in the patient's zone, the condition true, consent given, no reply yet for an
``unless: replied`` step, and the template must render. A decision is a dict for the fenced
write or an :class:`Outgoing` message; nothing here touches the database.

Work that is the same for every touchpoint of a batch (a step looked up in its journey
version, quiet hours for a category in a zone at the batch's instant) is done once per batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from carepath.definition.context import RecipientView
from carepath.definition.durations import format_duration
from carepath.definition.model import AfterStep, Category, Journey, Send, Step, Tag, Task, exit_reason
from carepath.runtime.planner import CAP_DROPPED, DAILY_CAP, QUIET_HOURS
from carepath.runtime.scheduling import SUPERSEDED
from carepath.runtime.pause import PAUSED, paused_step
from carepath.runtime.dispatch.message_context import MessageContext
from carepath.runtime.dispatch.recipients import consents, route
from carepath.runtime.policy import zone
from carepath.runtime.workdays import is_workday, on_workday
from carepath.runtime.clicks import tracked
from carepath.runtime.survey_links import with_survey
from carepath.runtime.checkin_links import with_checkin  # issue 19
from carepath.runtime.work_queue import new_task
from carepath.runtime.experiments import (ARM_TIME, HELD_OUT, HOLDOUT, arm_step, arm_wait,  # issue 23
                                          with_experiment)

if TYPE_CHECKING:
    from carepath.runtime.batch_context import BatchContext
    from carepath.runtime.dispatch.report import DispatchReport

#: the reason of a touchpoint waiting because its provider said when to come back (``SendResult.retry_after``):
#: such waits (and a quiet-hours deferral after one) do not use up ``max_attempts``: the operator alert, not
#: each patient's message, carries a provider outage; crash loops stay bounded by quarantine (``poison_after``)
PROVIDER_WAIT = "wait:"
NOT_WORKDAY = "deferred: not a working day"


@dataclass
class Outgoing:
    """A touchpoint on its way through the channels of its ``via`` list."""

    tp: Any
    step: Step
    title: str
    body: str
    template: str
    channel_index: int
    context: Any = field(default_factory=dict, repr=False)  # a MessageContext (a mapping)
    notes: list[str] = field(default_factory=list)
    channel: str | None = None
    recipient: Any = None  # a RelatedContact, or None for the patient (carepath.runtime.dispatch.recipients)
    attempts: int = 0  # provider calls made so far, this one included once it starts
    lookup: Any = None  # the ``unknown`` attempt to reconcile before sending again (a deliveries row)


def why_task(journey: str, step: Step) -> str:
    """What a task whose step gives no ``detail`` is about: its step, and the silence that opened it."""
    why = f"{step.action.task.replace('_', ' ')}: step {step.id} of {journey}"
    trigger = step.trigger
    if isinstance(trigger, AfterStep) and trigger.unless == "replied":
        why += f" (no reply to {trigger.step} within {format_duration(trigger.delay)})"
    return why


_STEPS: dict[int, tuple[Journey, dict[str, Step]]] = {}


def step_of(journey: Journey, step_id: str) -> Step | None:
    """``journey.step(step_id)`` through an index built once per journey version (``None`` when absent)."""
    known = _STEPS.get(id(journey))
    if known is None or known[0] is not journey:
        known = _STEPS[id(journey)] = (journey, {s.id: s for s in journey.steps})
    return known[1].get(step_id)


class Decisions:
    """The send-time re-check of each touchpoint (mixed into the dispatcher)."""

    def _farewell(self, tp: Any, enrollment: Any) -> bool:
        """Whether ``tp`` is a step on the very exit event that ended its enrollment (it still goes out)."""
        journey = self.engine.journey_version(tp.journey, enrollment.version)
        if journey is None or enrollment.status != "exited":
            return False
        step = step_of(journey, tp.step)
        if step is None:
            return False
        event = journey.farewell_event(step)
        return event is not None and enrollment.exit_reason == exit_reason(event)

    def _allowed(self, now: datetime, category: Category, tz_name: str) -> bool:
        """Quiet hours for a category in a zone at the batch's instant (the same for the whole batch)."""
        key = (now, category, tz_name)
        found = self._allowed_memo.get(key)
        if found is None:
            if len(self._allowed_memo) > 1000:
                self._allowed_memo.clear()
            found = self._allowed_memo[key] = self.engine.policy.allowed(now, category, zone(tz_name))
        return found

    def _decide(self, tp: Any, ctx: "BatchContext", now: datetime, report: "DispatchReport"):
        enrollment = ctx.enrollments.get(tp.enrollment_id)
        patient = ctx.patients.get(tp.patient_id)
        if enrollment is None or patient is None or patient.deceased or \
                (enrollment.status != "active" and not self._farewell(tp, enrollment)):
            report.add(tp, "cancelled")
            why = "patient deceased" if patient is not None and patient.deceased else "enrollment not active"
            return "final", self._final(tp, "cancelled", now, reason=f"cancelled: {why}")
        if tp.reason == SUPERSEDED:  # its time moved while a worker that died had it: the re-send tells the new one
            report.add(tp, "cancelled")
            return "final", self._final(tp, "cancelled", now, reason=SUPERSEDED)
        journey = self.engine.journey_version(tp.journey, enrollment.version)
        step = step_of(journey, tp.step) if journey else None
        if step is None:
            report.add(tp, "skipped")
            return "final", self._final(tp, "skipped", now, reason="skipped: step not in pinned journey version")
        if journey.experiment is not None:  # issue 23: the journey's experiment runs on its message steps
            step = with_experiment(journey, step)
        if enrollment.paused_since is not None and paused_step(step):  # the programme is paused (pause_on)
            report.add(tp, "skipped")
            return "final", self._final(tp, "skipped", now, reason=PAUSED)
        category = step.category
        policy = self.engine.policy
        if step.workdays_only:  # deferred onto a holiday: on to the next working day (调休 included)
            tz = zone(patient.view.tz)
            if not is_workday(now.astimezone(tz).date()):
                report.add(tp, "deferred")
                return "final", self._defer(tp, policy.next_allowed(on_workday(now, tz), category, tz), NOT_WORKDAY,
                                            now)
        # staff tasks and tags are no messages: they follow their team's working hours, not quiet hours
        if isinstance(step.action, Send) and not self._allowed(now, category, patient.view.tz):
            tz = zone(patient.view.tz)
            report.add(tp, "deferred")
            return "final", self._defer(tp, policy.next_allowed(now, category, tz), QUIET_HOURS, now)
        tz = zone(patient.view.tz)
        expr = None
        if step.condition:
            expr = self._expr(tp, ctx, enrollment, patient, journey, now)
            check = expr.evaluate(step.condition)
            if not check.value:
                report.add(tp, "skipped")
                why = f"skipped: condition error {check.error}" if check.error else "skipped: condition false"
                return "final", self._final(tp, "skipped", now, reason=why)
        if isinstance(step.trigger, AfterStep) and step.trigger.unless == "replied" and ctx.replied(tp, step):
            report.add(tp, "skipped")
            return "final", self._final(tp, "skipped", now, reason="skipped: patient replied")
        if isinstance(step.trigger, AfterStep) and step.trigger.unless == "checked_in" and ctx.checked_in(tp, step):
            report.add(tp, "skipped")  # issue 19: the one nudge of a missed check-in, not of a kept one
            return "final", self._final(tp, "skipped", now, reason="skipped: patient checked in")
        if step.experiment is not None:  # issue 23: the patient's arm (a holdout receives nothing)
            arm = ctx.arm(tp, journey, step)
            if arm == HOLDOUT:
                report.add(tp, "skipped")
                return "final", self._final(tp, "skipped", now, reason=HELD_OUT)
            wait = arm_wait(step, arm, tp.due_at, now, tz) if tp.reason is None else None  # at its planned time
            if wait is not None:  # this arm sends later that day (once: a policy deferral after it is kept)
                report.add(tp, "deferred")
                return "final", self._defer(tp, wait, ARM_TIME, now)
            step = arm_step(step, arm)
        action = step.action
        if isinstance(action, Send):
            to = route(tp, action.to, patient, ctx.related.get(tp.patient_id, ()), self.engine.settings.minor_age)
            if to.skip:
                report.add(tp, "skipped")
                return "final", self._final(tp, "skipped", now, reason=f"skipped: {to.skip}")
            recipient = to.recipient
            if to.pin:
                ctx.pins.append((tp.id, recipient.key))
            if to.copies:
                ctx.copies += [(tp, person) for person in to.copies]
            cap_key = None  # the recipient's count of today's messages, when this one counts toward the cap
            if policy.counts_toward_cap(category):
                day = now.astimezone(tz).date()
                cap_key = (tp.patient_id, day) if recipient is None else (tp.patient_id, day, recipient.key)
                if ctx.sent_today[cap_key] >= policy.daily_cap:
                    report.add(tp, "deferred" if step.over_cap == "defer" else "skipped")
                    if step.over_cap == "drop":
                        return "final", self._final(tp, "skipped", now, reason=CAP_DROPPED)
                    nxt = policy.next_allowed(policy.next_day_same_time(now, tz), category, tz)
                    return "final", self._defer(tp, nxt, DAILY_CAP, now)
            purpose = "marketing" if category is Category.marketing else "clinical"
            if recipient is not None and not consents(recipient, category):
                report.add(tp, "skipped")
                return "final", self._final(tp, "skipped", now,
                                            reason=f"skipped: no {purpose} consent of the {recipient.relationship}")
            if recipient is None and not any(ctx.consent(tp.patient_id, purpose, name) for name in action.via):
                report.add(tp, "skipped")
                return "final", self._final(tp, "skipped", now, reason=f"skipped: no {purpose} consent")
            template = journey.templates.get(action.template) or self.engine.templates.get(action.template)
            if template is None:
                report.add(tp, "failed")
                return "final", self._final(tp, "failed", now, reason=f"failed: unknown template {action.template!r}")
            try:
                if expr is None:
                    expr = self._expr(tp, ctx, enrollment, patient, journey, now)
                if recipient is not None:
                    expr = expr.with_value("recipient", RecipientView(recipient.name, recipient.relationship,
                                                                      recipient.guardian))
                # an invitation's ``survey`` or ``checkin`` (nothing for other actions)
                for name, value in with_checkin(self.engine, with_survey(self.engine, {}, tp, action), tp,
                                                action).items():
                    expr = expr.with_value(name, value)
                title, body = expr.render(template.title), expr.render(template.body)
                body = tracked(self.engine, tp.id, body)  # links go through the click redirect
            except Exception as exc:  # template bugs are configuration errors: recorded, never raised
                report.add(tp, "failed")
                return "final", self._final(tp, "failed", now, reason=f"failed: template {template.name}: {exc}")
            if cap_key is not None:
                ctx.sent_today[cap_key] += 1
            return "send", Outgoing(tp, step, title, body, template.name, tp.channel_index, expr, recipient=recipient)
        if isinstance(action, Task):
            return "task", dict(patient_id=tp.patient_id, enrollment_id=tp.enrollment_id, touchpoint_id=tp.id,
                                kind=action.task, team=action.team,
                                detail=action.detail or why_task(journey.name, step),
                                **new_task(self.engine.config.team(action.team), now=now, sla=action.sla,
                                           priority=action.priority))
        if isinstance(action, Tag):
            return "tag", action
        return None  # pragma: no cover - the model admits no other action

    @staticmethod
    def _expr(tp: Any, ctx: "BatchContext", enrollment: Any, patient: Any, journey: Journey,
              now: datetime) -> MessageContext:
        """What conditions and templates see: each name made when a condition or template reads it."""
        return MessageContext.for_touchpoint(tp, ctx, enrollment, patient, journey.name, now)

    def _final(self, tp: Any, status: str, now: datetime, *, reason: str | None, channel: str | None = None,
               due: datetime | None = None, attempts: int | None = None, index: int | None = None) -> dict:
        return dict(b_id=tp.id, b_status=status, b_reason=reason, b_now=now, b_channel=channel,
                    b_sent=now if status == "sent" else None, b_due=due or tp.due_at,
                    b_attempts=self._attempts.get(tp.id, tp.attempts) if attempts is None else attempts,
                    b_index=tp.channel_index if index is None else index)

    def _defer(self, tp: Any, when: datetime, reason: str, now: datetime) -> dict:
        return self._final(tp, "scheduled", now, reason=reason, due=when)
