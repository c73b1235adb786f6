"""Ingest: store an event once, then enroll, move anchors, exit and trigger ``on`` steps.

The enrollment lifecycle is in :mod:`carepath.runtime.ingest_enrollments`, built-in event types' effects in
:mod:`carepath.runtime.ingest_builtin`, the small shared pieces in :mod:`carepath.runtime.ingest_facts`."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Mapping

from pydantic import ValidationError
from sqlalchemy import Connection, update

from carepath.definition.catalog import payload_refusal
from carepath.definition.context import expression_context
from carepath.definition.events import EventIn, PatientIn
from carepath.definition.expressions import evaluate
from carepath.definition.model import Journey, OnEvent, exit_reason
from carepath.store.statements import execute
from carepath.runtime.held import PATIENT_MISSING, STALE, held_for_patient, lock_patients, released
from carepath.runtime.ingest_reads import (RECORD_OUTCOME, BatchReads, active_enrollments, erased_row, patient_of,
                                           patient_rows)
from carepath.runtime.ingest_result import IngestResult
from carepath.runtime.patients import load_patients, upsert_patient
from carepath.runtime.portrait import (Counted, apply_event as update_portrait, from_stored_row, record_facts,
                                       with_portraits, with_portraits_on_read)
from carepath.runtime.segments import refresh as refresh_segments
from carepath.runtime import pause  # issue 19
from carepath.runtime.pause import pause_events  # issue 19
from carepath.privacy.erase import erased_reason, strip_refused_event
from carepath.runtime.refused import REFUSED, alert_refused
from carepath.store.schema import Event
from carepath.runtime.ingest_builtin import BuiltinEffects
from carepath.runtime.ingest_enrollments import EnrollmentLifecycle
from carepath.runtime.ingest_facts import BUILTIN_TYPES, _fact, _store_event, stored_payload

if TYPE_CHECKING:
    from carepath.engine import Engine

__all__ = ["BUILTIN_TYPES", "IngestResult", "Ingestor", "stored_payload"]  # BUILTIN_TYPES, stored_payload: ingest_facts


class Ingestor(EnrollmentLifecycle, BuiltinEffects):
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
        mrn_enc = self.engine.cipher.encrypt(mrn) if mrn_hash else None
        execute(conn, RECORD_OUTCOME, (patient_id, result.state, result.summary(), mrn_hash, mrn_enc, result.hold_key,
                                       event_id))

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
        sensitive = eng.config.segments.sensitive_code
        if ev.type in BUILTIN_TYPES:  # their effects below may change the portrait: read it as it is now
            patient = with_portraits(conn, eng.cipher, records, now, sensitive)[patient_id]
        else:  # nothing below changes it before the segment refresh: read it when a condition or the refresh does
            with_portraits_on_read(eng.db, eng.cipher, records.values(), now, sensitive, conn=conn)
            patient = records[patient_id]
        touched = self._builtin_effects(conn, ev, event_id, patient_id, now, result)
        if patient.deceased or ev.type == "patient.deceased":
            if ev.type == "patient.deceased":
                self.apply_derived(conn, refresh_segments(conn, eng, [patient_id], now), now, result)
            return
        enrolled, exited = len(result.enrolled), len(result.exited)
        ctx = expression_context(patient.view, event=ev.payload, now=now)
        new_ids = self._enroll(conn, ev, event_id, patient_id, patient.view.tz, ctx, now, result)
        active = active_enrollments(conn, patient_id)
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
            unchanged = not touched and from_stored_row(patient.view.portrait)
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
