"""Ingest's enrollment lifecycle: enroll on a starting event, move anchors, exit, hold and release events about an
episode not yet known, and plan a journey's ``on`` steps (a part of :class:`carepath.runtime.ingest.Ingestor`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from carepath.definition.context import expression_context
from carepath.definition.events import EventIn
from carepath.definition.expressions import evaluate
from carepath.definition.model import Category, Journey, OnEvent
from carepath.runtime.held import STALE, episode_missing, held_for_episode, released
from carepath.runtime.ingest_reads import (ENROLLMENT_BY_ID_Q, ENROLLMENT_STATUSES_Q, EPISODE_KNOWN_Q,
                                           EPISODE_STATUSES_Q, STEPS_OF_IDS, ActiveEnrollment)
from carepath.runtime.ingest_result import IngestResult
from carepath.runtime.planner import Planned, anchor_values
from carepath.runtime import horizon  # issue 19
from carepath.runtime.refused import refused_episodes, supersede_refused
from carepath.runtime.scheduling import cancel_pending, plan_new_enrollments, plan_single, replan_anchor
from carepath.store.statements import insert_returning, is_postgres, update_by_id
from carepath.store.schema import Enrollment

from carepath.runtime.ingest_facts import (_anchor_time, _business_identity, _cancel_open_tasks, _fact, _utc,
                                           stored_payload)

if TYPE_CHECKING:
    from carepath.engine import Engine


def _enrollment(conn: Connection, enrollment_id: int) -> Any:
    """The enrollment's row, every column by name (``ActiveEnrollment``); read on SQLite's driver cursor."""
    (row,) = ENROLLMENT_BY_ID_Q.rows(conn, {"e": enrollment_id})  # exactly one, as ``.one()`` asked
    return ActiveEnrollment._make(row)


class EnrollmentLifecycle:
    """What an event does to the patient's enrollments; mixed into :class:`~carepath.runtime.ingest.Ingestor`."""

    engine: "Engine"

    def _hold_for_missing_episode(self, conn: Connection, ev: EventIn, patient_id: int,
                                  result: IngestResult) -> None:
        """Hold an event about an episode no enrollment exists for yet (a reschedule before its booking)."""
        for journey in self.engine.journeys.values():
            name = journey.key
            if not name or ev.payload.get(name) is None or ev.type in journey.enroll.events \
                    or ev.type not in self._reacts_to(journey):
                continue
            key = str(ev.payload[name])
            if not EPISODE_KNOWN_Q.rows(conn, {"p": patient_id, "j": journey.name, "k": key}):
                result.held.append(episode_missing(journey.name, name, key))
                result.hold_key = key

    def _release_episode(self, conn: Connection, enrollment_id: int, patient: Any, now: datetime,
                         result: IngestResult) -> None:
        """Apply, oldest first, the events that waited for this new enrollment's episode."""
        eng = self.engine
        enrollment = _enrollment(conn, enrollment_id)
        if enrollment.key is None:
            return
        journey = eng.journey_version(enrollment.journey, enrollment.version)
        for row in held_for_episode(conn, enrollment.patient_id, enrollment.key):
            fact = _fact(row, self.engine.cipher)
            if fact.type not in self._reacts_to(journey):
                continue  # it waits for another journey's episode of the same key
            sub = IngestResult("stored", row.id)
            if enrollment.status != "active":
                released(conn, row, status=STALE, summary=f"{journey.name} episode {enrollment.key} already "
                                                          f"exited; not applied", now=now)
                continue
            ctx = expression_context(patient.view, event=fact.payload, now=now)
            self._apply_to(conn, fact, row.id, enrollment, journey, patient.view.tz, ctx, now, sub, new=False)
            released(conn, row, status=sub.state, summary=sub.summary(), now=now)
            result.released += 1
            result.urgent_touchpoints += sub.urgent_touchpoints
            result.due_now += sub.due_now
            enrollment = _enrollment(conn, enrollment_id)

    def _episode_key(self, ev: EventIn) -> str | None:
        """The episode key of the first keyed journey ``ev`` enrolls on (kept on a refused event)."""
        for journey in self.engine.journeys.values():
            if ev.type in journey.enroll.events and journey.key and ev.payload.get(journey.key) is not None:
                return str(ev.payload[journey.key])
        return None

    def _starts_refused_episode(self, conn: Connection, journey: Journey, ev: EventIn, patient_id: int) -> bool:
        """Whether ``ev`` (not an enrolling event) starts an episode whose enrolling event was refused:
        it is about that episode and sets one of the journey's anchors (a reschedule with a valid start)."""
        if not journey.key or ev.payload.get(journey.key) is None \
                or not any(ev.type in rule.set_by for rule in journey.anchors.values()):
            return False
        return bool(refused_episodes(conn, patient_id, journey.enroll.events, str(ev.payload[journey.key])))

    def _enroll(self, conn: Connection, ev: EventIn, event_id: int, patient_id: int, tz: str,
                ctx: dict[str, Any], now: datetime, result: IngestResult) -> set[int]:
        eng = self.engine
        created: set[int] = set()
        for journey in eng.journeys.values():
            stands_in = ev.type not in journey.enroll.events
            if stands_in and not self._starts_refused_episode(conn, journey, ev, patient_id):
                continue
            check = evaluate(journey.enroll.condition, ctx)
            if not check.value:
                if check.error:
                    result.notes.append(f"{journey.name}: enrollment condition error {check.error}")
                continue
            key = str(ev.payload.get(journey.key)) if journey.key and ev.payload.get(journey.key) is not None else None
            if journey.reentry == "per_key" and key is None:
                result.notes.append(f"{journey.name}: not enrolled, the event has no {journey.key}")
                continue
            if not self._may_enroll(conn, journey, patient_id, key):
                continue
            anchors: dict[str, str | None] = {}
            refusals = []
            for name, rule in journey.anchors.items():
                if ev.type in rule.set_by:
                    try:
                        anchors[name] = _anchor_time(ev, rule.field).isoformat()
                    except ValueError as exc:
                        refusals.append(f"{journey.name}: not enrolled, anchor {name}: {exc}")
            if refusals:  # an episode without its clinical time would remind nobody: refuse, repairable
                result.refused += refusals
                result.hold_key = result.hold_key or key
                continue
            enrollment_id = insert_returning(conn, Enrollment, dict(
                patient_id=patient_id, journey=journey.name, version=journey.version, key=key, status="active",
                anchors=anchors, anchor_times={name: ev.occurred_at.isoformat() for name in anchors},
                context=stored_payload(ev), enrolled_at=now))
            eng.remember_version(conn, journey)
            result.planned += plan_new_enrollments(conn, [(enrollment_id, patient_id, tz,
                                                          anchor_values(anchors, now))], journey,
                                                   now=now, policy=eng.policy)
            result.planned += horizon.plan_new(conn, eng, [enrollment_id], journey, now)  # issue 19
            result.enrolled.append(journey.name)
            created.add(enrollment_id)
            if key is not None:
                repaired = supersede_refused(conn, refused_episodes(conn, patient_id, journey.enroll.events, key),
                                             by_event=event_id, by_type=ev.type, now=now)
                if stands_in or repaired:
                    result.notes.append(f"{journey.name}: episode {key} started by this {ev.type}"
                                        f"{' (its refused booking superseded)' if repaired else ''}")
        return created

    def _may_enroll(self, conn: Connection, journey: Journey, patient_id: int, key: str | None) -> bool:
        """``never``: once per patient; ``per_key``: once per episode key, an exited episode never again;
        ``after_exit``: whenever no enrollment of the journey is active."""
        if journey.reentry == "per_key":
            statuses = [r[0] for r in EPISODE_STATUSES_Q.rows(conn, {"p": patient_id, "j": journey.name, "k": key})]
        else:
            statuses = [r[0] for r in ENROLLMENT_STATUSES_Q.rows(conn, {"p": patient_id, "j": journey.name})]
        if journey.reentry in ("never", "per_key"):
            return not statuses
        return "active" not in statuses

    @staticmethod
    def _matches_key(journey: Journey, enrollment: Enrollment, ev: EventIn) -> bool:
        if not journey.key or ev.payload.get(journey.key) is None:
            return True
        return enrollment.key == str(ev.payload[journey.key])

    def _move_anchors(self, conn: Connection, ev: EventIn, enrollment: Any, journey: Journey, tz: str,
                      now: datetime, result: IngestResult) -> str | None:
        """Set, move or cancel the anchors this event names; STALE when every one had a newer change."""
        anchors = dict(enrollment.anchors or {})
        times = dict(enrollment.anchor_times or {})
        changed, applied, stale = [], 0, 0
        for name, rule in journey.anchors.items():
            if ev.type in rule.cancelled_by:
                value = None
            elif ev.type in rule.set_by:
                try:
                    value = _anchor_time(ev, rule.field).isoformat()
                except ValueError as exc:
                    result.notes.append(f"{journey.name}: anchor {name}: {exc}")
                    continue
            else:
                continue
            last = times.get(name)
            if last is not None and ev.occurred_at < datetime.fromisoformat(last):
                stale += 1
                result.stale.append(f"{journey.name}.{name} not changed: the event occurred {_utc(ev.occurred_at)}, "
                                    f"before its last change ({_utc(datetime.fromisoformat(last))})")
                continue
            applied += 1
            times[name] = ev.occurred_at.isoformat()
            if anchors.get(name) != value:
                anchors[name] = value
                changed.append(name)
        if stale and not applied:
            return STALE
        if not applied:
            return None
        update_by_id(conn, Enrollment, enrollment.id, dict(anchors=anchors, anchor_times=times))
        values = anchor_values(anchors, enrollment.enrolled_at)
        for name in changed:
            counts = replan_anchor(conn, enrollment_id=enrollment.id, patient_id=enrollment.patient_id, tz=tz,
                                   journey=journey, anchor=name, anchors=values, now=now, policy=self.engine.policy)
            state = "cancelled" if anchors[name] is None else "moved"
            again = f", {counts['resent']} planned again" if counts["resent"] else ""
            result.anchors.append(f"{journey.name}.{name} {state} ({counts['moved']} moved, "
                                  f"{counts['cancelled']} cancelled, {counts['added']} added{again})")
            horizon.anchor_changed(conn, self.engine, enrollment, journey, name, now)  # issue 19
        return None

    def _exit(self, conn: Connection, enrollment: Any, reason: str, now: datetime,
              result: IngestResult) -> None:
        update_by_id(conn, Enrollment, enrollment.id, dict(status="exited", exited_at=now, exit_reason=reason))
        cancel_pending(conn, enrollment.id, f"cancelled: {reason}", now)
        result.cancelled_tasks += _cancel_open_tasks(conn, reason, now, enrollment_id=enrollment.id)
        result.exited.append(enrollment.journey)

    def _on_event_steps(self, conn: Connection, ev: EventIn, event_id: int, enrollment: Any,
                        journey: Journey, tz: str, now: datetime, result: IngestResult) -> None:
        """Plan the ``on`` steps for this event, once per business identity (a resend plans nothing)."""
        steps = [s for s in journey.steps if isinstance(s.trigger, OnEvent) and s.trigger.event == ev.type]
        if not steps:
            return
        planned, identities = [], {}
        for s in steps:
            occurrence, identities[s.id] = _business_identity(s.trigger, journey, ev, event_id)
            when = ev.occurred_at + s.trigger.delay
            planned.append(Planned(step=s, occurrence=occurrence, planned_at=when, due_at=when, event_id=event_id))
        ids = plan_single(conn, enrollment_id=enrollment.id, patient_id=enrollment.patient_id, tz=tz,
                          journey=journey, planned=planned, now=now, policy=self.engine.policy)
        result.planned += len(ids)
        fresh = dict(STEPS_OF_IDS[is_postgres(conn)].rows(conn, {"ids": ids})) if ids else {}
        result.resent += [f"{journey.name}.{s.id} already planned for {identities[s.id]}"
                          for s in steps if s.id not in fresh.values()]
        urgent = {s.id for s in steps if s.category is Category.urgent and s.trigger.delay == timedelta(0)}
        result.urgent_touchpoints += [tid for tid, step in fresh.items() if step in urgent]
        if any(p.due_at <= now and p.step.id not in urgent and p.step.id in fresh.values() for p in planned):
            result.due_now.append(journey.name)
