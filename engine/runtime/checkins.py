"""Issue 19: check-ins (打卡). What a patient reports for a ``checkin`` prompt, stored and told to journeys.

A check-in arrives three ways: a reply (:func:`record_reply`: a keyword such as 打卡, or a number with or
without its unit, ``6.1``, ``血糖 6.1``, ``110 mg/dL``, ``150/95``), the signed check-in page
(:func:`record_checkin` with ``source="page"``) or a device reading of the prompt's measure. It is stored
with its value (encrypted) in ``checkins``: ``recorded``, or ``rejected`` with the reason when the value or
unit is impossible. A recorded one counts for its patient-local day (streaks and completion rate:
:mod:`carepath.runtime.checkins_report`), skips the ``after_step ... unless: checked_in`` nudge, and is told
to journeys as a ``checkin.recorded`` event (stored when a journey listens to it).
"""

from __future__ import annotations

import unicodedata
from collections import namedtuple
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Iterable

from sqlalchemy import Connection, bindparam, insert, select

from carepath.definition.events import EventIn
from carepath.definition.measures import (BLOOD_PRESSURE, MEASURES, canonical, parse_number, unit_factor,
                                         word_measure)
from carepath.definition.model import Checkin
from carepath.runtime.policy import zone
from carepath.store.driver import DriverQuery
from carepath.store.schema import CheckinRow, Enrollment, Patient, Touchpoint

if TYPE_CHECKING:
    from carepath.engine import Engine

RECORDED, REJECTED = "recorded", "rejected"
CHECKIN_EVENT = "checkin.recorded"
#: the ``intent`` of a ``message.replied`` event that was a check-in
CHECKIN_INTENT = "checkin"


@dataclass(frozen=True)
class CheckinTarget:
    """A check-in prompt a patient may be answering: the enrollment, the step and its last sent prompt."""

    enrollment_id: int
    patient_id: int
    journey: str
    step: str
    action: Checkin
    touchpoint_id: int | None
    sent_at: datetime | None


@dataclass(frozen=True)
class Answer:
    """What a patient reported: no ``values`` for a keyword check-in; ``values`` by measure otherwise (in each
    measure's own unit), ``problem`` when it is impossible (stored rejected)."""

    values: dict[str, float]
    unit: str | None = None
    problem: str | None = None
    shown: str | None = None  # the value as stored (``6.1``, ``150/95``)


# built once: a patient's active enrollments, the last sent touchpoint of an enrollment's step
_ACTIVE = select(Enrollment.id, Enrollment.journey, Enrollment.version).where(
    Enrollment.patient_id == bindparam("p"), Enrollment.status == "active")
_LAST_SENT = select(Touchpoint.id, Touchpoint.sent_at).where(
    Touchpoint.enrollment_id == bindparam("e"), Touchpoint.step == bindparam("s"),
    Touchpoint.sent_at.is_not(None)).order_by(Touchpoint.sent_at.desc()).limit(1)


# (both on SQLite on the driver's cursor: every reply reads them)
_ACTIVE_Q, _LAST_SENT_Q = DriverQuery(_ACTIVE), DriverQuery(_LAST_SENT)
_ActiveRow = namedtuple("_ActiveRow", ["id", "journey", "version"])


def targets(conn: Connection, engine: "Engine", patient_id: int) -> list[CheckinTarget]:
    """The check-in prompts of the patient's active enrollments, the most recently sent first."""
    found: list[CheckinTarget] = []
    for enrollment in map(_ActiveRow._make, _ACTIVE_Q.rows(conn, {"p": patient_id})):
        journey = engine.journey_version(enrollment.journey, enrollment.version)
        steps = [s for s in (journey.steps if journey else []) if isinstance(s.action, Checkin)]
        for step in steps:
            last = _LAST_SENT_Q.first(conn, {"e": enrollment.id, "s": step.id})  # (id, sent_at)
            found.append(CheckinTarget(enrollment.id, patient_id, enrollment.journey, step.id, step.action,
                                       last[0] if last else None, last[1] if last else None))
    epoch = datetime.min.replace(tzinfo=zone("UTC"))
    return sorted(found, key=lambda t: t.sent_at or epoch, reverse=True)


def _plain(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip().rstrip("。.!！~～ ").casefold()


def read_answer(action: Checkin, text: str) -> Answer | None:
    """What ``text`` reports for the prompt ``action``, or ``None`` when it is no answer to it."""
    plain = _plain(text)
    if plain in {_plain(k) for k in action.keywords}:
        return Answer({})
    number = parse_number(unicodedata.normalize("NFKC", text))
    if number is None or action.measure is None:
        return None
    named = word_measure(number.word)
    own = "systolic_bp" if action.measure == BLOOD_PRESSURE else action.measure
    if number.unit and unit_factor(own, number.unit) is None:
        return None  # another measure's number (6.1 kg to a glucose prompt): no answer to this prompt
    if action.measure == BLOOD_PRESSURE:
        if number.second is None or (number.word and named is None and number.word not in ("血压", "bp")):
            return None
        return checked_answer({"systolic_bp": number.value, "diastolic_bp": number.second}, number.unit,
                              f"{number.value:g}/{number.second:g}")
    if number.second is not None or (number.word and named != action.measure):
        return None
    return checked_answer({action.measure: number.value}, number.unit, f"{number.value:g}")


def checked_answer(values: dict[str, float], unit: str | None, shown: str) -> Answer:
    """``values`` (by measure, in ``unit`` or each measure's own) range-checked and converted to own units."""
    converted: dict[str, float] = {}
    for measure, value in values.items():
        ok, problem = canonical(measure, value, unit or None)
        if problem:
            return Answer(values, unit or None, problem, shown)
        converted[measure] = ok  # type: ignore[assignment]
    own = MEASURES[next(iter(values))].unit
    shown = "/".join(f"{v:g}" for v in converted.values())
    return Answer(converted, own, None, shown)


def record_reply(conn: Connection, engine: "Engine", patient_id: int, text: str, at: datetime, *,
                 event_id: int | None = None) -> bool:
    """Record the patient's reply ``text`` (received ``at``) as a check-in when it answers one of their
    check-in prompts; returns whether it was a check-in (stored recorded, or rejected with the reason).

    The reply must be the whole answer: a keyword of the prompt (打卡), or a number of its measure with or
    without its unit. It goes to the prompt sent most recently among those it fits. Runs in the caller's
    transaction (ingest of ``message.replied``, or conversation routing); ``event_id`` is the reply's event,
    so a reply is never counted twice.
    """
    if not text or len(text) > 64:
        return False
    for target in targets(conn, engine, patient_id):
        answer = read_answer(target.action, text)
        if answer is not None:
            record_checkin(conn, engine, target, answer, at, source="reply", event_id=event_id)
            return True
    return False


def record_checkin(conn: Connection, engine: "Engine", target: CheckinTarget, answer: Answer, at: datetime, *,
                   source: str, event_id: int | None = None, touchpoint_id: int | None = None) -> int | None:
    """Store one check-in for ``target`` (``recorded``, or ``rejected`` with ``answer.problem``) and, when
    recorded, tell journeys with a ``checkin.recorded`` event. Returns the row id (``None``: the event was
    already recorded as a check-in)."""
    if event_id is not None and conn.execute(select(CheckinRow.id).where(CheckinRow.event_id == event_id)).first():
        return None
    tz = conn.execute(select(Patient.tz).where(Patient.id == target.patient_id)).scalar() or "Asia/Shanghai"
    day = at.astimezone(zone(tz)).date()
    status = REJECTED if answer.problem else RECORDED
    measure = target.action.measure if answer.values else None
    row_id = conn.execute(insert(CheckinRow).values(
        patient_id=target.patient_id, enrollment_id=target.enrollment_id, journey=target.journey, step=target.step,
        checkin=target.action.checkin, day=day, status=status, reason=answer.problem, measure=measure,
        value_enc=engine.cipher.encrypt(answer.shown) if answer.shown else None, unit=answer.unit, source=source,
        touchpoint_id=touchpoint_id or target.touchpoint_id, event_id=event_id, at=at).returning(CheckinRow.id)
    ).scalar_one()
    if status == RECORDED:
        _tell_journeys(conn, engine, target, answer, day, source, row_id, at)
    return row_id


def _tell_journeys(conn: Connection, engine: "Engine", target: CheckinTarget, answer: Answer, day: date,
                   source: str, row_id: int, at: datetime) -> None:
    payload: dict[str, Any] = {"checkin": target.action.checkin, "journey": target.journey, "step": target.step,
                               "day": day.isoformat(), "source": source, "measure": target.action.measure,
                               "unit": answer.unit, **{k: v for k, v in answer.values.items()}}
    if len(answer.values) == 1:
        payload["value"] = next(iter(answer.values.values()))
    mrn = engine.cipher.decrypt(conn.execute(select(Patient.mrn_enc).where(Patient.id == target.patient_id)).scalar())
    event = EventIn(type=CHECKIN_EVENT, source="carepath", source_id=f"checkin:{row_id}", patient_mrn=mrn or "?",
                    occurred_at=at, payload=payload)
    engine.ingestor.apply_derived(conn, [(target.patient_id, event)], engine.clock.now())


def checkin_times(conn: Connection, enrollment_ids: Iterable[int]) -> dict[tuple[int, str], list[tuple[datetime, date]]]:
    """Recorded check-ins of these enrollments by ``(enrollment, step)``: ``(time, patient-local day)``
    (for ``after_step ... unless: checked_in``)."""
    found: dict[tuple[int, str], list[tuple[datetime, date]]] = {}
    ids = list(enrollment_ids)
    if not ids:
        return found
    for enrollment_id, step, at, day in conn.execute(select(
            CheckinRow.enrollment_id, CheckinRow.step, CheckinRow.at, CheckinRow.day).where(
            CheckinRow.enrollment_id.in_(ids), CheckinRow.status == RECORDED)):
        found.setdefault((enrollment_id, step), []).append((at, day))
    return found


def record_device_reading(conn: Connection, engine: "Engine", patient_id: int, measure: str, measured_at: datetime,
                          event_id: int) -> bool:
    """A device's accepted reading of a check-in prompt's measure counts as that day's check-in (the first one
    of the day; a blood-pressure check-in once both numbers of the moment are in). Returns whether it did."""
    from carepath.store.schema import ReadingRow

    for target in targets(conn, engine, patient_id):
        wanted = target.action.measure
        names = ["systolic_bp", "diastolic_bp"] if wanted == BLOOD_PRESSURE else [wanted]
        if measure not in names:
            continue
        rows = dict(conn.execute(select(ReadingRow.measure, ReadingRow.value_enc).where(
            ReadingRow.patient_id == patient_id, ReadingRow.measured_at == measured_at,
            ReadingRow.status == "accepted", ReadingRow.measure.in_(names))).all())
        if set(rows) != set(names):
            continue
        tz = conn.execute(select(Patient.tz).where(Patient.id == patient_id)).scalar() or "Asia/Shanghai"
        day = measured_at.astimezone(zone(tz)).date()
        if conn.execute(select(CheckinRow.id).where(CheckinRow.enrollment_id == target.enrollment_id,
                                                    CheckinRow.step == target.step, CheckinRow.day == day,
                                                    CheckinRow.status == RECORDED)).first():
            continue
        values = {n: float(engine.cipher.decrypt(rows[n])) for n in names}
        record_checkin(conn, engine, target, checked_answer(values, None, ""), measured_at, source="device",
                       event_id=event_id)
        return True
    return False
