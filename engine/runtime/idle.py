"""Idle triggers: plan a step once per idle period of each enrolled patient (a maintenance job).

An idle period is identified by the portrait's ``interaction_seq`` (it moves forward with
each newer interaction): the touchpoint's occurrence is ``idle:<seq>``, so the step runs
once per period and re-arms after the patient's next interaction. Silence is counted from
the last interaction, or from enrollment for a patient who never interacted. Admitted and
deceased patients, and patients without consent for the step's category on any of its
channels, are left alone; an interaction or an admission before the message goes out
cancels it (:func:`carepath.runtime.portrait.cancel_idle`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import String, and_, cast, false, func, literal, select

from carepath.definition.model import Category, Idle, Journey, Send
from carepath.runtime.patients import consent_state
from carepath.runtime.planner import Planned
from carepath.runtime.portrait import IDLE_PREFIX
from carepath.runtime.scheduling import plan_batch
from carepath.store.schema import Enrollment, Patient, Portrait, Touchpoint

if TYPE_CHECKING:
    from carepath.engine import Engine


def _consents(state: dict, pid: int, purpose: str, via: list[str]) -> bool:
    default = purpose != "marketing"
    overall = state.get((pid, purpose, "*"), default)
    return any(state.get((pid, purpose, name), overall) for name in via)


def plan_idle(engine: "Engine", limit: int = 5000) -> int:
    """Plan the idle steps now due for every running journey that has one; returns touchpoints planned."""
    now = engine.clock.now()
    planned = 0
    for journey in engine.journeys.values():
        for step in [s for s in journey.steps if isinstance(s.trigger, Idle)]:
            planned += _plan_step(engine, journey, step, now, limit)
    return planned


def _plan_step(engine: "Engine", journey: Journey, step, now, limit: int) -> int:
    seq = func.coalesce(Portrait.interaction_seq, 0)
    occurrence = literal(IDLE_PREFIX, String) + cast(seq, String)
    since = func.coalesce(Portrait.last_interaction_at, Enrollment.enrolled_at)
    done = (select(Touchpoint.id).where(Touchpoint.enrollment_id == Enrollment.id, Touchpoint.step == step.id,
                                        Touchpoint.occurrence == occurrence).correlate(Enrollment, Portrait).exists())
    q = (select(Enrollment.id, Enrollment.patient_id, Enrollment.version, Patient.tz, seq.label("seq"))
         .join(Patient, Patient.id == Enrollment.patient_id)
         .outerjoin(Portrait, Portrait.patient_id == Enrollment.patient_id)
         .where(Enrollment.journey == journey.name, Enrollment.status == "active", Patient.deceased == false(),
                func.coalesce(Portrait.admitted, false()) == false(),
                since <= now - timedelta(days=step.trigger.days), ~done)
         .order_by(Enrollment.id).limit(limit))
    with engine.db.begin() as conn:
        rows = conn.execute(q).all()
        if not rows:
            return 0
        purpose = "marketing" if step.category is Category.marketing else "clinical"
        via = step.action.via if isinstance(step.action, Send) else ["*"]
        consents = consent_state(conn, [r.patient_id for r in rows])
        entries = []
        for r in rows:
            pinned = engine.journey_version(journey.name, r.version)
            if pinned is None or step.id not in {s.id for s in pinned.steps} or \
                    not _consents(consents, r.patient_id, purpose, via):
                continue
            entries.append((r.id, r.patient_id, r.tz, pinned,
                            [Planned(step=pinned.step(step.id), occurrence=f"{IDLE_PREFIX}{r.seq}", planned_at=now,
                                     due_at=now)]))
        return len(plan_batch(conn, entries, now=now, policy=engine.policy))
