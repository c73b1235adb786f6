"""Everything one dispatch batch needs, loaded with a handful of queries."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from carepath.runtime.experiments import draw, experiment_id, experiment_journeys, stored_arms

from carepath.definition.model import AfterStep, Category, Step
from carepath.store.statements import chunks, db_time, fetch, id_in, json_dict, py_time
from carepath.runtime.family import RelatedContact, load_related
from carepath.runtime.patients import PatientRecord, consent_state, load_patients
from carepath.runtime.policy import local_wall, zone
from carepath.runtime.dispatch.portrait_reads import portrait_readers
from carepath.runtime.portrait import with_portraits, with_portraits_on_read
from carepath.runtime.template_consent import template_purpose
from carepath.store.personal_data import reveal_payload
from carepath.store.schema import Delivery

if TYPE_CHECKING:
    from carepath.engine import Engine

MAX_GRACE = timedelta(days=31)  # the validator caps missed.grace at 30 days
# (journey version, step) -> (the version, the step's ``unless``, its source step), found once
_UNLESS: dict[tuple[int, str], tuple[Any, str | None, str | None]] = {}


class EnrollmentRow:
    """An enrollment as a batch reads it; its JSON columns are decoded only when a step needs them."""

    __slots__ = ("id", "version", "status", "exit_reason", "enrolled_at", "_anchors", "_context", "paused_since")

    def __init__(self, id: int, version: str, status: str, exit_reason: str | None, enrolled_at: Any,
                 anchors: Any, context: Any, paused_since: Any = None) -> None:
        self.id, self.version, self.status, self.exit_reason = id, version, status, exit_reason
        self.paused_since = paused_since  # set while a pause_on event holds the programme (only tested for None)
        self.enrolled_at = py_time(enrolled_at)
        self._anchors, self._context = anchors, context

    @property
    def anchors(self) -> dict:
        if not isinstance(self._anchors, dict):
            self._anchors = json_dict(self._anchors)
        return self._anchors

    @property
    def context(self) -> dict:
        if not isinstance(self._context, dict):
            self._context = json_dict(self._context)
        return self._context


class BatchContext:
    """Everything a batch needs, loaded with a handful of queries."""

    def __init__(self) -> None:
        self.by_id: dict[int, Any] = {}
        self.enrollments: dict[int, Any] = {}
        self.patients: dict[int, PatientRecord] = {}
        self.events: dict[int, dict] = {}
        self.consents: dict[tuple[int, str, str], bool] = {}
        self.sent_today: Counter = Counter()
        self._conn_engine: Any = None
        self.source_sent: dict[tuple[int, str, str], datetime] = {}
        self.replies: dict[int, list[datetime]] = defaultdict(list)
        self.checkins: dict[tuple[int, str], list[tuple[datetime, Any]]] = {}  # issue 19: unless: checked_in
        self.attempts: dict[int, int] = {}  # provider calls made so far, by touchpoint
        self.unresolved: dict[int, Any] = {}  # the last ``unknown`` call not yet reconciled (a deliveries row)
        self.receipts_waiting = False  # early receipts are kept, waiting for their delivery
        self._payloads: dict[tuple[str, int], dict] = {}
        # family and guardians (issue 19): related persons by patient, and what routing decided for the write
        self.related: dict[int, list[RelatedContact]] = {}
        self.copies: list[tuple[Any, RelatedContact]] = []  # (planned touchpoint, further recipient)
        self.pins: list[tuple[int, str]] = []  # (touchpoint id, recipient key) of touchpoints sent to someone else
        # experiments (issue 23): recorded arms by (journey, experiment, patient), and arms drawn but not yet written
        self.arms: dict[tuple[str, str, int], str] = {}
        self.new_arms: list[tuple] = []

    @classmethod
    def load(cls, conn: Connection, eng: "Engine", tps: list[Any], now: datetime) -> "BatchContext":
        ctx = cls()
        ctx._conn_engine = eng
        ctx.by_id = {tp.id: tp for tp in tps}
        enrollment_ids = list({tp.enrollment_id for tp in tps})
        for part in chunks(enrollment_ids):
            where, params = id_in(conn, "id", part)
            ctx.enrollments.update((row[0], EnrollmentRow(*row)) for row in fetch(
                conn, "SELECT id, version, status, exit_reason, enrolled_at, anchors, context, paused_since FROM enrollments "
                      f" WHERE {where}", params))
        pids = {tp.patient_id for tp in tps}
        ctx.patients = load_patients(conn, eng.cipher, pids, now)
        # the portraits and segments (patient.portrait, patient.in_segment) of the patients whose touchpoints may read
        # them, one bulk query per zone; the others' are read if something reads them after all
        readers = portrait_readers(eng, tps, ctx.enrollments)
        sensitive = eng.config.segments.sensitive_code
        with_portraits(conn, eng.cipher, {pid: p for pid, p in ctx.patients.items() if pid in readers}, now, sensitive)
        with_portraits_on_read(eng.db, eng.cipher, [p for pid, p in ctx.patients.items() if pid not in readers], now,
                               sensitive)
        event_ids = list({tp.event_id for tp in tps if tp.event_id})
        for part in chunks(event_ids):
            where, params = id_in(conn, "id", part)
            ctx.events.update((i, json_dict(payload)) for i, payload in fetch(
                conn, f"SELECT id, payload FROM events WHERE {where}", params))
        ctx.consents = consent_state(conn, pids)
        ctx.related = load_related(conn, eng.cipher, pids)
        ctx._load_replies(conn, tps)
        ctx._load_sent_today(conn, pids, now)
        testing = experiment_journeys(eng.journeys.values())
        if testing and any(tp.journey in testing for tp in tps):
            ctx.arms = stored_arms(conn, testing, pids)
        return ctx

    def arm(self, tp: Any, journey: Any, step: Step) -> str:
        """The patient's arm in ``step``'s experiment: the recorded one, else drawn now (written with the batch)."""
        key = (journey.name, experiment_id(step), tp.patient_id)
        found = self.arms.get(key)
        if found is None:
            found = self.arms[key] = draw(*key, step.experiment)
            self.new_arms.append((*key, found, step.id, journey.version, tp.id))
        return found

    def event_payload(self, tp: Any, enrollment: Any) -> dict:
        """``event.*`` for ``tp``: its event's payload, or the enrolling event's (the enrollment context),
        with the personal data encrypted at rest decrypted again for rendering (once per batch)."""
        key = ("event", tp.event_id) if tp.event_id else ("enrollment", tp.enrollment_id)
        if key not in self._payloads:
            stored = self.events.get(tp.event_id) if tp.event_id else enrollment.context
            self._payloads[key] = reveal_payload(stored or {}, self._conn_engine.cipher)
        return self._payloads[key]

    def _load_sent_today(self, conn: Connection, pids: set[int], now: datetime) -> None:
        """Messages each patient was sent so far on their local day (for the cap at send time).

        Counted in SQL, one query per time zone. The (patient_id, due_at) index bounds the scan:
        a sent touchpoint fell due before now and at most the longest missed grace before it was sent.
        """
        by_zone: dict[str, list[int]] = defaultdict(list)
        for pid in pids:
            if pid in self.patients:
                by_zone[self.patients[pid].view.tz].append(pid)
        urgent = Category.urgent.value
        for tz_name, ids in by_zone.items():
            tz = zone(tz_name)
            today = now.astimezone(tz).date()
            midnight = local_wall(today, time(0), tz)
            for part in chunks(ids):
                where, params = id_in(conn, "patient_id", part)
                rows = fetch(conn, f"SELECT patient_id, recipient, count(*) FROM touchpoints WHERE {where} "
                                   "AND due_at >= ? AND due_at <= ? AND sent_at >= ? "
                                   "AND coalesce(status, '') IN ('sent', 'delivered') AND action = 'send' "
                                   "AND category != ? GROUP BY patient_id, recipient",
                             [*params, db_time(conn, midnight - MAX_GRACE), db_time(conn, now),
                              db_time(conn, midnight), urgent])
                for pid, recipient, n in rows:  # each related person has a cap of their own
                    self.sent_today[(pid, today) if recipient is None else (pid, today, recipient)] = n

    def load_attempts(self, conn: Connection, ids: list[int], inconclusive_code: str) -> None:
        """Calls made so far for ``ids`` (touchpoints retried or reclaimed) and their unreconciled ``unknown`` call.

        A dead worker's calls are not in the touchpoint's ``attempts``: the deliveries rows are the record.
        A lookup that could not tell (``inconclusive_code``) leaves the unknown call unreconciled.
        """
        for tp_id, tp in self.by_id.items():
            self.attempts[tp_id] = tp.attempts
        for start in range(0, len(ids), 5000):
            rows = conn.execute(select(Delivery.touchpoint_id, Delivery.attempt, Delivery.channel, Delivery.status,
                                       Delivery.error_code, Delivery.created_at)
                                .where(Delivery.touchpoint_id.in_(ids[start:start + 5000]))
                                .order_by(Delivery.touchpoint_id, Delivery.attempt))
            for r in rows:
                self.attempts[r.touchpoint_id] = max(self.attempts.get(r.touchpoint_id, 0), r.attempt)
                if r.status == "unknown":
                    self.unresolved[r.touchpoint_id] = r
                elif r.error_code != inconclusive_code:
                    self.unresolved.pop(r.touchpoint_id, None)

    def consent(self, pid: int, purpose: str, channel: str) -> bool:
        default = purpose != "marketing"  # care notices need no opt-in; marketing does
        overall = self.consents.get((pid, purpose, "*"), default)
        return self.consents.get((pid, purpose, channel), overall)

    def channel_problem(self, eng: "Engine", tp: Any, step: Step, name: str,
                        recipient: RelatedContact | None = None) -> str | None:
        channel = eng.channels.get(name)
        if channel is None:
            return "channel not configured"
        if recipient is not None:  # a related person: their own consent (checked in decide) and addresses
            if channel.address_kind != "none" and not recipient.addresses.get(channel.address_kind):
                return f"no {channel.address_kind} of the {recipient.relationship}"
            return None
        purpose = "marketing" if step.category is Category.marketing else "clinical"
        if not self.consent(tp.patient_id, purpose, name):
            return f"no {purpose} consent"
        template = getattr(step.action, "template", None)
        if template and not self.consent(tp.patient_id, template_purpose(template), name):
            return f"template {template} refused on this channel"
        if channel.address_kind != "none" and not self.patients[tp.patient_id].addresses.get(channel.address_kind):
            return f"no {channel.address_kind}"
        return None

    def replied(self, tp: Any, step: Step) -> bool:
        """Whether the patient replied after the source step of an ``unless: replied`` trigger was sent."""
        sent_at = self.source_sent.get((tp.enrollment_id, step.trigger.step, tp.occurrence))
        return sent_at is not None and any(at >= sent_at for at in self.replies.get(tp.patient_id, ()))

    def _load_replies(self, conn: Connection, tps: list[Any]) -> None:
        """Source send times and reply times for the batch's ``unless: replied`` steps (two queries)."""
        followers = [tp for tp in tps if tp.occurrence and tp.step and self._is_unless(tp)]
        if not followers:
            return
        sources = sorted({self._unless_of(tp)[1] for tp in followers})  # only the source steps are ever looked up
        # through the driver, ids bound as one array on PostgreSQL: the same text every batch, so it is prepared
        # (Core's expanding IN lists rendered another statement for every length, parsed and planned afresh)
        enrollments, steps = id_in(conn, "enrollment_id", sorted({tp.enrollment_id for tp in followers})), \
            id_in(conn, "step", sources)
        for enrollment_id, step, occurrence, sent_at in fetch(
                conn, f"SELECT enrollment_id, step, occurrence, sent_at FROM touchpoints WHERE {enrollments[0]} "
                      f"AND {steps[0]} AND sent_at IS NOT NULL", enrollments[1] + steps[1]):
            self.source_sent[(enrollment_id, step, occurrence)] = py_time(sent_at)
        if any(self._is_unless(tp, "checked_in") for tp in followers):  # issue 19
            from carepath.runtime.checkins import checkin_times

            self.checkins = checkin_times(conn, {tp.enrollment_id for tp in followers})
        where, params = id_in(conn, "patient_id", sorted({tp.patient_id for tp in followers}))
        # an answered survey is a reply; "TD" (an unsubscribe) answers no follow-up
        for pid, at in fetch(conn, f"SELECT patient_id, occurred_at FROM events WHERE {where} "
                                   "AND type IN ('message.replied', 'survey.completed') "
                                   "AND (intent IS NULL OR intent != 'unsubscribe')", params):
            self.replies[pid].append(py_time(at))

    def checked_in(self, tp: Any, step: Step) -> bool:
        """Issue 19: whether the patient checked in for the source step (a check-in prompt) of an ``unless:
        checked_in`` trigger: after it was sent, or earlier on the same patient-local day."""
        sent_at = self.source_sent.get((tp.enrollment_id, step.trigger.step, tp.occurrence))
        if sent_at is None:
            return False
        from carepath.runtime.policy import zone

        day = sent_at.astimezone(zone(self.patients[tp.patient_id].view.tz)).date()
        return any(at >= sent_at or on == day for at, on in self.checkins.get((tp.enrollment_id, step.trigger.step), ()))

    def _is_unless(self, tp: Any, what: str | None = None) -> bool:
        unless = self._unless_of(tp)[0]
        return unless is not None and (what is None or unless == what)

    def _unless_of(self, tp: Any) -> tuple[str | None, str | None]:
        """``(unless, source step)`` of ``tp``'s ``after_step`` trigger (``None``s for other steps), found once per
        step of a journey version."""
        enrollment = self.enrollments.get(tp.enrollment_id)
        journey = self._conn_engine.journey_version(tp.journey, enrollment.version) if enrollment else None
        if journey is None:
            return None, None
        known = _UNLESS.get((id(journey), tp.step))
        if known is None or known[0] is not journey:
            from carepath.runtime.dispatch.decide import step_of

            step = step_of(journey, tp.step)
            after = step is not None and isinstance(step.trigger, AfterStep)
            if len(_UNLESS) > 10000:
                _UNLESS.clear()
            known = _UNLESS[(id(journey), tp.step)] = (journey, step.trigger.unless if after else None,
                                                       step.trigger.step if after else None)
        return known[1], known[2]
