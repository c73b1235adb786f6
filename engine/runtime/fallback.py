"""The end of the fallback chain for messages sent but never confirmed delivered.

The dispatcher falls through a step's channels when a provider refuses a
message. A provider that accepts a message and then never confirms it (no
delivery receipt, or a failure receipt) is caught here: a step with
``confirm_within`` whose message is not confirmed delivered within that
window falls back to the next channel of its ``via`` list, and after the
last one a staff member is asked to call the patient (a ``call_patient``
task for the journey's team, with the message text and every attempt).
A channel whose messages wait for a person's confirmation (WeCom mass
messages, ``Channel.confirmation_window``) is watched the same way on every
step, with its own window where the step sets none.

:func:`unconfirmed_fallback` is a maintenance job: run it every few minutes
(the maintenance flow of ``carepath serve`` does).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, insert, or_, select, update

from carepath.definition.context import expression_context
from carepath.definition.durations import format_duration
from carepath.definition.expressions import render
from carepath.definition.model import Category, Journey, Send, Step
from carepath.masking import mask_text
from carepath.runtime.patients import load_patients
from carepath.runtime.planner import anchor_values
from carepath.runtime.survey_links import with_survey
from carepath.runtime.checkin_links import with_checkin  # issue 19
from carepath.runtime.experiments import as_assigned  # issue 23
from carepath.runtime.work_queue import new_task
from carepath.store.personal_data import reveal_payload
from carepath.store.schema import Delivery, Enrollment, Event, StaffTask, Touchpoint

if TYPE_CHECKING:
    from carepath.engine import Engine

log = logging.getLogger(__name__)

CALL_PATIENT = "call_patient"
CALL_SLA = timedelta(hours=4)
_BATCH = 500


def unconfirmed_fallback(engine: "Engine", *, limit: int = _BATCH) -> int:
    """Move on every message not confirmed delivered within its step's window (or, without one, its
    channel's ``confirmation_window``); returns how many moved."""
    watched = _watched_steps(engine)
    confirming = _confirming_channels(engine)
    if not watched and not confirming:
        return 0
    now = engine.clock.now()
    shortest = min([*watched.values(), *confirming.values()])
    moved = 0
    with engine.db.connect() as conn:
        rows = conn.execute(select(Touchpoint.id, Touchpoint.enrollment_id, Touchpoint.patient_id, Touchpoint.journey,
                                   Touchpoint.step, Touchpoint.status, Touchpoint.reason, Touchpoint.sent_at,
                                   Touchpoint.channel, Touchpoint.channel_index, Touchpoint.event_id,
                                   Touchpoint.category, Enrollment.version)
                            .join(Enrollment, Enrollment.id == Touchpoint.enrollment_id)
                            .where(or_(Touchpoint.step.in_({s for _, s in watched})
                                       & Touchpoint.journey.in_({j for j, _ in watched}),
                                       Touchpoint.channel.in_(set(confirming))),
                                   Touchpoint.sent_at.is_not(None),
                                   or_((Touchpoint.status == "sent") & (Touchpoint.sent_at <= now - shortest),
                                       # a failure receipt; the dispatcher's own failures carry a "failed:" reason
                                       (Touchpoint.status == "failed")
                                       & ~func.coalesce(Touchpoint.reason, "").startswith("failed")))
                            .order_by(Touchpoint.sent_at).limit(limit)).all()
    for tp in rows:
        journey = engine.journey_version(tp.journey, tp.version)
        step = _step(journey, tp.step)
        window = (step.confirm_within or confirming.get(tp.channel)) if step is not None else None
        if window is None or not isinstance(step.action, Send):
            continue
        if tp.status == "sent" and tp.sent_at > now - window:
            continue
        with engine.db.begin() as conn:
            moved += _move_on(engine, conn, tp, journey, step, window, now)
    return moved


def _confirming_channels(engine: "Engine") -> dict[str, timedelta]:
    """Channels whose sends wait for a person's confirmation, with how long they may wait."""
    return {name: ch.confirmation_window for name, ch in engine.channels.items()
            if getattr(ch, "confirmation_window", None) is not None}


def _watched_steps(engine: "Engine") -> dict[tuple[str, str], timedelta]:
    return {(j.name, s.id): s.confirm_within for j in engine.journeys.values() for s in j.steps
            if s.confirm_within is not None and isinstance(s.action, Send)}


def _step(journey: Journey | None, step_id: str) -> Step | None:
    try:
        return journey.step(step_id) if journey else None
    except KeyError:
        return None


def _move_on(engine: "Engine", conn: Connection, tp: Any, journey: Journey, step: Step, within: timedelta,
             now: datetime) -> int:
    """Next channel, or the call task; guarded so a receipt or another worker that got there first wins."""
    window = format_duration(within)
    why = "a failure receipt" if tp.status == "failed" else f"no delivery receipt within {window}"
    step = as_assigned(conn, journey.name, step, tp.patient_id)  # issue 23: an arm's own channels
    via = step.action.via
    guard = (Touchpoint.id == tp.id, Touchpoint.status == tp.status)
    if tp.channel_index + 1 < len(via):
        done = conn.execute(update(Touchpoint).where(*guard).values(
            status="scheduled", due_at=now, channel_index=tp.channel_index + 1, lease_until=None, updated_at=now,
            reason=f"fallback: {tp.channel} unconfirmed ({why})")).rowcount
        return _give_up_pending(conn, tp.id, now, done)
    done = conn.execute(update(Touchpoint).where(*guard).values(
        status="failed", updated_at=now, reason=f"failed: not confirmed delivered on any channel ({why})")).rowcount
    _give_up_pending(conn, tp.id, now, done)
    if done and tp.category != Category.marketing.value:
        detail = (f"Call the patient: message '{step.action.template}' of step {tp.step} was not confirmed "
                  f"delivered.\nMessage: {mask_text(_message_text(engine, conn, tp, journey, step, now))}\n"
                  f"Attempts:\n{_attempts(conn, tp.id)}")
        team = journey.calling_team
        conn.execute(insert(StaffTask).values(patient_id=tp.patient_id, enrollment_id=tp.enrollment_id,
                                              touchpoint_id=tp.id, kind=CALL_PATIENT, team=team, detail=detail,
                                              **new_task(engine.config.team(team), now=now, sla=CALL_SLA)))
    return done


def _give_up_pending(conn: Connection, touchpoint_id: int, now: datetime, moved: int) -> int:
    """A message still held for a person's confirmation is given up once its touchpoint moved on
    (``unconfirmed``): the channel stops asking about it, and a late confirmation changes nothing."""
    if moved:
        conn.execute(update(Delivery).where(Delivery.touchpoint_id == touchpoint_id,
                                            Delivery.status == "pending_confirmation")
                     .values(status="unconfirmed", updated_at=now))
    return moved


def _message_text(engine: "Engine", conn: Connection, tp: Any, journey: Journey, step: Step, now: datetime) -> str:
    """The message as the patient would have read it (rendered again, same context as the dispatcher)."""
    template = journey.templates.get(step.action.template) or engine.templates.get(step.action.template)
    if template is None:
        return f"(template {step.action.template!r} not found)"
    patient = load_patients(conn, engine.cipher, [tp.patient_id], now, with_addresses=False).get(tp.patient_id)
    enrollment = conn.execute(select(Enrollment.anchors, Enrollment.context, Enrollment.enrolled_at)
                              .where(Enrollment.id == tp.enrollment_id)).one()
    stored = (conn.execute(select(Event.payload).where(Event.id == tp.event_id)).scalar() if tp.event_id
              else enrollment.context)
    event = reveal_payload(stored or {}, engine.cipher)
    try:
        context = with_checkin(engine, with_survey(engine, expression_context(
            patient.view, event=event, anchors=anchor_values(enrollment.anchors or {}, enrollment.enrolled_at),
            journey=journey.name, now=now), tp, step.action), tp, step.action)
        return render(template.body, context)
    except Exception as exc:  # the template changed or lost a field: the nurse still gets the task
        return f"(could not render template {template.name!r}: {exc})"


def _attempts(conn: Connection, touchpoint_id: int) -> str:
    rows = conn.execute(select(Delivery.created_at, Delivery.channel, Delivery.attempt, Delivery.status,
                               Delivery.error_code, Delivery.provider_id)
                        .where(Delivery.touchpoint_id == touchpoint_id).order_by(Delivery.id)).all()
    return "\n".join(f"- {r.created_at:%Y-%m-%d %H:%M} UTC {r.channel} attempt {r.attempt}: {r.status}"
                     + (f" ({r.error_code})" if r.error_code else "")
                     + (f" id {r.provider_id}" if r.provider_id else "") for r in rows) or "- none recorded"
