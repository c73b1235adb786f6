"""Ingest: store an event once, then enroll, move anchors, exit and trigger ``on`` steps."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Mapping

from pydantic import ValidationError
from sqlalchemy import Connection, insert, select, update

from carepath.store.audit import audit
from carepath.definition.catalog import payload_refusal
from carepath.definition.context import expression_context
from carepath.definition.events import EventIn, PatientIn
from carepath.definition.expressions import evaluate
from carepath.definition.model import Category, Journey, OnEvent, exit_reason
from carepath.runtime.held import (PATIENT_MISSING, STALE, episode_missing, held_for_episode, held_for_patient,
                                   lock_patients, released)
from carepath.runtime.ingest_reads import (ACTIVE_ENROLLMENTS, ENROLLMENT_BY_ID, ENROLLMENT_STATUSES, EPISODE_KNOWN,
                                            EPISODE_STATUSES, RECORD_OUTCOME, STEPS_OF, STORE_EVENT, BatchReads, erased_row,
                                            patient_of, patient_rows)
from carepath.runtime.ingest_result import IngestResult
from carepath.runtime.merge import merge_patients
from carepath.runtime.work_queue import OPEN_STATUSES
from carepath.runtime.patients import find_patient_id, load_patients, record_consent, upsert_patient
from carepath.runtime.portrait import (Counted, apply_event as update_portrait, from_stored_row, record_facts,
                                       with_portraits)
from carepath.runtime.segments import refresh as refresh_segments
from carepath.runtime.planner import Planned, anchor_values
from carepath.runtime import horizon, pause  # issue 19
from carepath.runtime.pause import pause_events  # issue 19
from carepath.runtime.family import apply_family_event  # issue 19: family and guardians
from carepath.runtime.receipts import RECEIPT_STATUSES, apply_receipt, receipt_status
from carepath.runtime.complaints import open_from_survey  # issue 21
from carepath.runtime.conversations.turns import record_turn  # issue 21
from carepath.runtime.unsubscribe import UNSUBSCRIBE, apply_reply
from carepath.runtime.checkins import CHECKIN_INTENT, record_device_reading, record_reply  # issue 19
from carepath.runtime.readings import record_reading  # issue 19
from carepath.runtime.reading_alerts import evaluate as evaluate_readings  # issue 19
from carepath.privacy.erase import erased_reason, strip_refused_event
from carepath.runtime.refused import REFUSED, alert_refused, refused_episodes, reopen_refused, supersede_refused
from carepath.runtime.scheduling import cancel_pending, plan_new_enrollments, plan_single, replan_anchor
from carepath.store.crypto import Cipher
from carepath.store.personal_data import reveal_payload
from carepath.store.schema import Enrollment, Event, Patient, StaffTask

if TYPE_CHECKING:
    from carepath.engine import Engine


#: event types with an effect of the engine's own (``Ingestor._builtin_effects``, which acts on no other): the
#: only ones that may change a patient's record, portrait or consent once the event's patient has been read
BUILTIN_TYPES = frozenset({"patient.deceased", "patient.merged", "consent.changed", "patient.related_person_added",
                           "patient.related_person_removed", "message.replied", "survey.completed", "vitals.reading",
                           "patient.preferences_updated", *RECEIPT_STATUSES})


def _store_event(conn: Connection, ev: EventIn, patient_id: int | None, now: datetime,
                 received_via: str | None = None) -> int | None:
    values = dict(source=ev.source, source_id=ev.source_id, type=ev.type, patient_id=patient_id,
                  occurred_at=ev.occurred_at, received_at=now, payload=stored_payload(ev),
                  received_via=received_via[:128] if received_via else None)
    stored = conn.execute(STORE_EVENT, values).scalar()
    if stored is None:  # seen before: changes nothing, unless it was refused (the source sends it corrected)
        stored = reopen_refused(conn, ev, values)
    return stored


def stored_payload(ev: EventIn) -> dict[str, Any]:
    """The payload as kept in events and enrollment context (see ``EventIn.stored_payload``)."""
    return ev.stored_payload()


def _anchor_time(ev: EventIn, field_name: str | None) -> datetime:
    if field_name is None:
        return ev.occurred_at
    raw = ev.payload.get(field_name)
    if raw is None:
        raise ValueError(f"payload has no {field_name!r}")
    value = raw if isinstance(raw, datetime) else datetime.fromisoformat(str(raw))
    if value.tzinfo is None:
        raise ValueError(f"payload {field_name!r} has no time zone offset: {raw!r}")
    return value


def _fact(row: Any, cipher: Cipher) -> EventIn:
    """A stored event as the ingestor applies it (its patient is already resolved, its personal data decrypted)."""
    return EventIn.model_construct(type=row.type, source=row.source, source_id=row.source_id, patient_mrn="",
                                   occurred_at=row.occurred_at, payload=reveal_payload(dict(row.payload or {}), cipher))


def _business_identity(trigger: OnEvent, journey: Journey, ev: EventIn, event_id: int) -> tuple[str, str]:
    """The occurrence an ``on`` step gets for this event, and how to say it: one per business identity.

    The identity is the payload field ``once_per`` (default: the journey's key); without one, the event itself.
    """
    name = trigger.once_per or journey.key
    value = ev.payload.get(name) if name else None
    if value is None:
        return f"e{event_id}", f"event {event_id}"
    text = str(value)
    occurrence = f"k:{text}" if len(text) <= 60 else "h:" + hashlib.sha256(text.encode()).hexdigest()[:40]
    return occurrence, f"{name} {text}"


def _cancel_open_tasks(conn: Connection, reason: str, now: datetime, *, enrollment_id: int | None = None,
                       patient_id: int | None = None) -> int:
    """Cancel the open staff tasks of an enrollment (or of every journey of a patient), with the reason."""
    q = update(StaffTask).where(StaffTask.status.in_(OPEN_STATUSES))
    q = q.where(StaffTask.enrollment_id == enrollment_id) if enrollment_id is not None else \
        q.where(StaffTask.patient_id == patient_id)
    return conn.execute(q.values(status="cancelled", closed_at=now, resolution=f"cancelled: {reason}")).rowcount or 0


class Ingestor:
    """Applies events for one engine inside a single transaction per event."""

    def __init__(self, engine: "Engine") -> None:
        self.engine = engine
        self._reactions: dict[tuple[str, str], frozenset[str]] = {}
        self._depth = 0  # derived events applying derived events (segments entered because of an enrollment)

    def ingest(self, ev: EventIn, received_via: str | None = None) -> IngestResult:
        """Store ``ev`` once and apply it; ``received_via`` names who delivered it (kept on the event)."""
        with self.engine.db.begin() as conn:
            return self.ingest_in(conn, ev, received_via)

    def ingest_in(self, conn: Connection, ev: EventIn, received_via: str | None = None,
                  reads: BatchReads | None = None) -> IngestResult:
        """Store and apply ``ev`` in the caller's transaction (:mod:`carepath.runtime.batch_ingest` runs many
        events in one transaction, each under its own savepoint, with ``reads`` done once for all of them)."""
        eng = self.engine
        now = eng.clock.now()
        event_id = _store_event(conn, ev, None, now, received_via)
        if event_id is None:
            return IngestResult("duplicate", None)
        result = IngestResult("stored", event_id)
        mrn_hashes = eng.cipher.lookup_hashes(ev.patient_mrn)  # held under any key of the ring (issue 22)
        mrn_hash = mrn_hashes[0] if mrn_hashes else None  # under the active key
        lock_patients(conn, mrn_hashes)
        known = reads.patients(mrn_hashes) if reads is not None else None
        rows = known if known is not None else patient_rows(conn, mrn_hashes)
        if erased := erased_row(rows):  # issue 22: nothing of an erased patient is applied or kept
            result.refused.append(erased_reason(erased.erased_at))
            self._record(conn, event_id, result, erased.id)
            strip_refused_event(conn, event_id)
            return result
        if refusal := payload_refusal(ev.type, ev.payload):  # kept for operators; nothing of it applied,
            result.refused.append(refusal)                  # not even a patient record it carries
            result.hold_key = self._episode_key(ev)
            self._record(conn, event_id, result, patient_of(rows), mrn_hash=mrn_hash, mrn=ev.patient_mrn)
            alert_refused(conn, ev, event_id, result.refused, now)
            return result
        if reads is not None and (isinstance(ev.payload.get("patient"), dict) or ev.type == "patient.merged"):
            reads.changed_all() if ev.type == "patient.merged" else reads.changed(mrn_hashes)
        patient_id = self._resolve_patient(conn, ev, now, result, patient_of(rows))
        if patient_id is None:
            result.held.append(PATIENT_MISSING)
            self._record(conn, event_id, result, None, mrn_hash=mrn_hash, mrn=ev.patient_mrn)
            if reads is not None:
                reads.changed(mrn_hashes)
            return result
        # events that waited for this patient, and this one, in the order they happened
        waiting = [] if reads is not None and reads.none_held(mrn_hashes) else held_for_patient(conn, mrn_hashes)
        if waiting and reads is not None:
            reads.changed(mrn_hashes)
        earlier = [r for r in waiting if (r.occurred_at, r.id) < (ev.occurred_at, event_id)]
        for row in earlier:
            self._apply_held(conn, row, patient_id, now, result)
        self._apply(conn, ev, event_id, patient_id, now, result)
        for row in waiting[len(earlier):]:
            self._apply_held(conn, row, patient_id, now, result)
        self._record(conn, event_id, result, patient_id)
        if result.state == REFUSED:
            alert_refused(conn, ev, event_id, result.refused, now)
        return result

    def release_for_patients(self, conn: Connection, patients: Mapping[str, int], now: datetime) -> IngestResult:
        """Apply the events held for patients just registered (``{mrn hash: patient id}``), oldest first."""
        total = IngestResult("stored", None)
        lock_patients(conn, list(patients))
        for row in held_for_patient(conn, list(patients)):
            self._apply_held(conn, row, patients[row.mrn_hash], now, total)
        return total

    # -- steps of applying an event -------------------------------------------------

    def _record(self, conn: Connection, event_id: int, result: IngestResult, patient_id: int | None,
                mrn_hash: str | None = None, mrn: str | None = None) -> None:
        # the MRN is kept encrypted beside its hash, so a key rotation can recompute the hash (issue 22)
        conn.execute(RECORD_OUTCOME, dict(
            r_id=event_id, r_patient=patient_id, r_status=result.state, r_outcome=result.summary(), r_hash=mrn_hash,
            r_enc=self.engine.cipher.encrypt(mrn) if mrn_hash else None, r_key=result.hold_key))

    def _apply_held(self, conn: Connection, row: Any, patient_id: int, now: datetime, total: IngestResult) -> None:
        """Apply an event that waited for its patient's record."""
        sub = IngestResult("stored", row.id)
        self._apply(conn, _fact(row, self.engine.cipher), row.id, patient_id, now, sub)
        conn.execute(update(Event).where(Event.id == row.id).values(patient_id=patient_id))
        total.urgent_touchpoints += sub.urgent_touchpoints
        total.due_now += sub.due_now
        total.turns += sub.turns  # issue 21: a reply that waited for its patient
        if sub.held:  # the patient is known now, but its episode is not enrolled yet
            conn.execute(update(Event).where(Event.id == row.id).values(
                mrn_hash=None, hold_key=sub.hold_key, outcome=f"{row.outcome}; patient registered; {sub.summary()}"))
            return
        released(conn, row, status=sub.state, summary=sub.summary(), now=now)
        if sub.state == REFUSED:  # waited for its patient, and does not fit its type: as if refused on arrival
            conn.execute(update(Event).where(Event.id == row.id).values(hold_key=sub.hold_key))
            alert_refused(conn, _fact(row, self.engine.cipher), row.id, sub.refused, now)
        total.released += 1

    def _resolve_patient(self, conn: Connection, ev: EventIn, now: datetime, result: IngestResult,
                         found: int | None) -> int | None:
        """The patient the event is about (``found``: the one its MRN names now); a carried record updates it,
        a bad one is reported, not fatal."""
        record = ev.payload.get("patient")
        if isinstance(record, dict):
            try:
                patient = PatientIn(mrn=ev.patient_mrn, **record)
            except ValidationError as exc:
                fields = ", ".join(f"patient.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                result.notes.append(f"patient record not applied ({fields})")
            else:
                patient_id = upsert_patient(conn, self.engine.cipher, patient, now, actor=f"event:{ev.source}")
                if patient.preferences:  # issue 19: merged, and what they move re-timed
                    self._preferences(conn, patient_id, patient.preferences, now, f"event:{ev.source}", result,
                                      refuse=False)
                return patient_id
        return found

    def _preferences(self, conn: Connection, patient_id: int, values: Mapping[str, Any], now: datetime, actor: str,
                     result: IngestResult, *, refuse: bool = True) -> None:
        """Issue 19: apply preference values (carepath.runtime.preferences). Bad ones change nothing and are named:
        a ``patient.preferences_updated`` event is refused (repairable), a patient record gets a note."""
        from carepath.runtime.preferences import PreferenceError, apply as apply_preferences

        try:
            result.notes.append(apply_preferences(conn, self.engine, patient_id, values, now, actor=actor))
        except PreferenceError as exc:
            if refuse:
                result.refused += [f"stored, not applied: payload field {p}" for p in exc.problems]
            else:
                result.notes.append(f"patient record preferences not applied ({'; '.join(exc.problems)})")

    def _apply(self, conn: Connection, ev: EventIn, event_id: int, patient_id: int, now: datetime,
               result: IngestResult) -> None:
        eng = self.engine
        if refusal := payload_refusal(ev.type, ev.payload):
            result.refused.append(refusal)
            result.hold_key = self._episode_key(ev)
            return
        records = load_patients(conn, eng.cipher, [patient_id], now, with_addresses=False)
        counted = Counted()  # facts counted in the patient's zone, written together
        portrait_changed = update_portrait(conn, eng.cipher, patient_id, ev, now, counted, records[patient_id].view.tz)
        record_facts(conn, counted, now)
        patient = with_portraits(conn, eng.cipher, records, now, eng.config.segments.sensitive_code)[patient_id]
        self._builtin_effects(conn, ev, event_id, patient_id, now, result)
        if patient.deceased or ev.type == "patient.deceased":
            if ev.type == "patient.deceased":
                self.apply_derived(conn, refresh_segments(conn, eng, [patient_id], now), now, result)
            return
        enrolled, exited = len(result.enrolled), len(result.exited)
        ctx = expression_context(patient.view, event=ev.payload, now=now)
        new_ids = self._enroll(conn, ev, event_id, patient_id, patient.view.tz, ctx, now, result)
        active = conn.execute(ACTIVE_ENROLLMENTS, {"p": patient_id}).all()
        for enrollment in active:
            journey = eng.journey_version(enrollment.journey, enrollment.version)
            if journey is None or not self._matches_key(journey, enrollment, ev):
                continue
            self._apply_to(conn, ev, event_id, enrollment, journey, patient.view.tz, ctx, now, result,
                           new=enrollment.id in new_ids)
        self._hold_for_missing_episode(conn, ev, patient_id, result)
        for enrollment_id in sorted(new_ids):
            self._release_episode(conn, enrollment_id, patient, now, result)
        if portrait_changed or len(result.enrolled) > enrolled or len(result.exited) > exited:
            # the patient and portrait read above are still current unless a built-in effect may have changed them
            unchanged = ev.type not in BUILTIN_TYPES and from_stored_row(patient.view.portrait)
            self.apply_derived(conn, refresh_segments(conn, eng, [patient_id], now,
                                                      loaded=records if unchanged else None), now, result)

    def apply_derived(self, conn: Connection, derived: list[tuple[int, EventIn]], now: datetime,
                      result: IngestResult | None = None) -> IngestResult:
        """Store and apply events the engine derived (``segment.entered`` / ``segment.left``) in the caller's
        transaction, so a journey enrolls or exits on them with the change that caused them.

        A derived event may enroll a patient, which changes their segments again: that goes three levels
        deep at most (a cycle of segments and journeys stops there, with a note)."""
        total = result if result is not None else IngestResult("stored", None)
        derived = [(pid, ev) for pid, ev in derived if ev.type in self.listened()]
        if self._depth >= 3 and derived:
            total.notes.append(f"{len(derived)} segment change(s) recorded but not applied to journeys: "
                               "segments and journeys changing each other three levels deep")
            return total
        self._depth += 1
        try:
            for patient_id, ev in derived:
                event_id = _store_event(conn, ev, patient_id, now)
                if event_id is None:  # stored by an earlier run of the same change
                    continue
                sub = IngestResult("stored", event_id)
                self._apply(conn, ev, event_id, patient_id, now, sub)
                self._record(conn, event_id, sub, patient_id)
                total.urgent_touchpoints += sub.urgent_touchpoints
                total.enrolled += sub.enrolled
                total.exited += sub.exited
                total.notes.append(f"{ev.type} {ev.payload.get('segment') or ev.payload.get('checkin', '')}")
        finally:
            self._depth -= 1
        return total

    def _apply_to(self, conn: Connection, ev: EventIn, event_id: int, enrollment: Any, journey: Journey, tz: str,
                  ctx: dict[str, Any], now: datetime, result: IngestResult, *, new: bool) -> None:
        """Move anchors, exit, or run ``on`` steps for one enrollment; a stale event does none of it."""
        if not new and self._move_anchors(conn, ev, enrollment, journey, tz, now, result) == STALE:
            return
        if ev.type in journey.exit.events and evaluate(journey.exit.condition, ctx).value:
            self._exit(conn, enrollment, exit_reason(ev.type), now, result)
            # ``on`` steps of the exit event itself (a cancellation notice) are planned after the exit
            # cancelled everything else; the dispatcher still sends them.
        elif ev.type in pause_events(journey):  # issue 19: an admission pauses, a discharge resumes
            outcome = pause.apply(conn, enrollment, journey, ev.type, ev.occurred_at, now, self.engine.policy, tz)
            if outcome:
                result.notes.append(outcome)
        self._on_event_steps(conn, ev, event_id, enrollment, journey, tz, now, result)

    def listened(self) -> frozenset[str]:
        """Event types some running journey enrolls, exits or triggers on (derived events of other types are
        not stored: the segment history is in ``segment_members`` all the same)."""
        if getattr(self, "_listened_for", None) is not self.engine.journeys:
            types = {t for j in self.engine.journeys.values() for t in (*j.enroll.events, *self._reacts_to(j))}
            self._listened_types, self._listened_for = frozenset(types), self.engine.journeys
        return self._listened_types

    def _reacts_to(self, journey: Journey) -> frozenset[str]:
        """Event types that change an enrollment of ``journey`` (other than enrolling)."""
        key = (journey.name, journey.version)
        if key not in self._reactions:
            types = {*journey.exit.events}
            for rule in journey.anchors.values():
                types.update(rule.set_by, rule.cancelled_by)
            types.update(s.trigger.event for s in journey.steps if isinstance(s.trigger, OnEvent))
            types.update(pause_events(journey))  # issue 19
            self._reactions[key] = frozenset(types)
        return self._reactions[key]

    def _hold_for_missing_episode(self, conn: Connection, ev: EventIn, patient_id: int,
                                  result: IngestResult) -> None:
        """Hold an event about an episode no enrollment exists for yet (a reschedule before its booking)."""
        for journey in self.engine.journeys.values():
            name = journey.key
            if not name or ev.payload.get(name) is None or ev.type in journey.enroll.events \
                    or ev.type not in self._reacts_to(journey):
                continue
            key = str(ev.payload[name])
            known = conn.execute(EPISODE_KNOWN, {"p": patient_id, "j": journey.name, "k": key}).first()
            if known is None:
                result.held.append(episode_missing(journey.name, name, key))
                result.hold_key = key

    def _release_episode(self, conn: Connection, enrollment_id: int, patient: Any, now: datetime,
                         result: IngestResult) -> None:
        """Apply, oldest first, the events that waited for this new enrollment's episode."""
        eng = self.engine
        enrollment = conn.execute(ENROLLMENT_BY_ID, {"e": enrollment_id}).one()
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
            enrollment = conn.execute(ENROLLMENT_BY_ID, {"e": enrollment_id}).one()

    def _builtin_effects(self, conn: Connection, ev: EventIn, event_id: int, patient_id: int, now: datetime,
                         result: IngestResult) -> None:
        if ev.type not in BUILTIN_TYPES:
            return
        if ev.type == "patient.deceased":
            conn.execute(update(Patient).where(Patient.id == patient_id).values(deceased=True, updated_at=now))
            audit(conn, actor=f"event:{ev.source}", action="patient.deceased", entity="patient", entity_id=patient_id,
                  at=now)
            for enrollment in conn.execute(select(Enrollment.__table__).where(
                    Enrollment.patient_id == patient_id, Enrollment.status == "active")).all():
                self._exit(conn, enrollment, "patient deceased", now, result)
            # nobody is asked to contact a deceased patient, whatever opened the task
            result.cancelled_tasks += _cancel_open_tasks(conn, "patient deceased", now, patient_id=patient_id)
        elif ev.type == "patient.merged":
            merged = find_patient_id(conn, self.engine.cipher, str(ev.payload.get("merged_mrn") or ""))
            if merged is None:
                result.notes.append("patient.merged: no patient with merged_mrn; nothing moved")
                return
            merge_patients(conn, survivor=patient_id, merged=merged, now=now, actor=f"event:{ev.source}")
            result.notes.append("merged record's history moved to this patient")
        elif ev.type == "consent.changed":
            purpose, granted = ev.payload.get("purpose"), ev.payload.get("granted")
            if not isinstance(purpose, str) or not isinstance(granted, bool):
                result.notes.append("consent.changed needs payload purpose (text) and granted (true/false)")
                return
            extra = {k: ev.payload[k] if isinstance(ev.payload.get(k), str) else None
                     for k in ("via", "recorded_by", "reason")}
            record_consent(conn, patient_id, purpose, granted, channel=str(ev.payload.get("channel", "*")),
                           source=ev.source, at=ev.occurred_at, **extra)
            result.notes.append(f"consent {purpose} {'granted' if granted else 'withdrawn'}")
        elif note := apply_family_event(conn, self.engine, ev, patient_id, now):  # issue 19: family
            if ev.payload.get("related_person") and "unsubscribe" in note:
                conn.execute(update(Event).where(Event.id == event_id).values(intent=UNSUBSCRIBE))
            result.notes.append(note)
        elif ev.type == "message.replied":
            withdrawal = apply_reply(conn, self.engine, ev, patient_id, ev.occurred_at)
            if withdrawal is not None:
                conn.execute(update(Event).where(Event.id == event_id).values(intent=UNSUBSCRIBE))
                result.notes.append(withdrawal.summary())
            elif record_reply(conn, self.engine, patient_id, str(ev.payload.get("text") or ""), ev.occurred_at,
                              event_id=event_id):  # issue 19: 打卡, 6.1 ...
                conn.execute(update(Event).where(Event.id == event_id).values(intent=CHECKIN_INTENT))
                result.notes.append("check-in recorded")
            # issue 21: the text becomes a conversation turn, routed right after the commit
            result.turns.append(record_turn(conn, self.engine, ev, event_id, patient_id))
        elif ev.type == "survey.completed":  # issue 21: a detractor answer opens a complaint case
            if open_from_survey(conn, self.engine, patient_id, event_id, dict(ev.payload), now) is not None:
                result.notes.append("detractor answer: complaint case opened")
        elif ev.type == "vitals.reading":  # issue 19: stored (or rejected with the reason), then alerts
            reading = record_reading(conn, self.engine, ev, event_id, patient_id, now)
            result.notes.append(f"reading {reading.status}" + (f": {reading.reason}" if reading.reason else ""))
            evaluate_readings(conn, self.engine, patient_id, reading, event_id, now, result)
            if reading.status == "accepted" and record_device_reading(conn, self.engine, patient_id, reading.measure,
                                                                      reading.measured_at, event_id):
                result.notes.append("check-in recorded")
        elif ev.type == "patient.preferences_updated":  # issue 19
            values = {k: v for k, v in ev.payload.items() if k != "patient"}
            self._preferences(conn, patient_id, values, now, f"event:{ev.source}", result)
        elif ev.type in RECEIPT_STATUSES:
            provider_id = ev.payload.get("provider_id")
            if not provider_id:
                result.notes.append("receipt without provider_id: not applied")
            elif not apply_receipt(conn, str(provider_id), receipt_status(ev.type, ev.payload), now):
                result.notes.append(f"no delivery with provider id {provider_id!r} yet: "
                                    "the receipt is kept and applied when it is recorded")

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
            enrollment_id = conn.execute(insert(Enrollment).values(
                patient_id=patient_id, journey=journey.name, version=journey.version, key=key, status="active",
                anchors=anchors, anchor_times={name: ev.occurred_at.isoformat() for name in anchors},
                context=stored_payload(ev), enrolled_at=now).returning(Enrollment.id)).scalar_one()
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
            statuses = list(conn.execute(EPISODE_STATUSES, {"p": patient_id, "j": journey.name, "k": key}).scalars())
        else:
            statuses = list(conn.execute(ENROLLMENT_STATUSES, {"p": patient_id, "j": journey.name}).scalars())
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
        conn.execute(update(Enrollment).where(Enrollment.id == enrollment.id).values(anchors=anchors,
                                                                                     anchor_times=times))
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
        conn.execute(update(Enrollment).where(Enrollment.id == enrollment.id).values(
            status="exited", exited_at=now, exit_reason=reason))
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
        fresh = dict(conn.execute(STEPS_OF, {"ids": ids}).all()) if ids else {}
        result.resent += [f"{journey.name}.{s.id} already planned for {identities[s.id]}"
                          for s in steps if s.id not in fresh.values()]
        urgent = {s.id for s in steps if s.category is Category.urgent and s.trigger.delay == timedelta(0)}
        result.urgent_touchpoints += [tid for tid, step in fresh.items() if step in urgent]
        if any(p.due_at <= now and p.step.id not in urgent and p.step.id in fresh.values() for p in planned):
            result.due_now.append(journey.name)


def _utc(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
