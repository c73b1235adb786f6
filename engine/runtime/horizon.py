"""The rolling horizon (issue 19): open-ended steps are planned a window ahead, and the window moves on.

A programme that lasts until its exit (a daily medication reminder, a monthly re-check, birthday and festival
greetings) cannot be planned at enrollment: the series has no end. Its steps (:func:`~carepath.runtime.series.on_horizon`)
are planned ``horizon`` ahead (the journey's ``horizon``, else the ``CAREPATH_PLANNING_HORIZON`` setting,
default 14 days); the maintenance job :func:`extend_horizons` plans the next stretch in batches once less than
half of the window is left, so no enrollment is ever planned more than the horizon ahead, and none is forgotten.

``horizons`` keeps, per enrollment and step, the instant up to which every occurrence has its touchpoint.
When maintenance did not run for a while, the occurrences that fell due meanwhile are recorded and follow the
step's ``missed`` policy, but only the latest of them may still go out (late, within ``grace``): the others are
``skipped: missed (a later occurrence was due)``, so a patient never gets a burst of stale reminders.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from sqlalchemy import Connection, and_, delete, false, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from carepath.definition.model import Journey, Step
from carepath.runtime.pause import PAUSED
from carepath.runtime.planner import MISSED_SKIPPED, Planned, anchor_values, idempotency_key
from carepath.runtime.preferences import stored_preferences
from carepath.runtime.scheduling import ANCHOR_CANCELLED, insert_touchpoints, plan_batch, touchpoint_rows
from carepath.runtime.series import Patient, on_horizon, window
from carepath.store.schema import Delivery, Enrollment, Horizon, Patient as PatientRow, Touchpoint

if TYPE_CHECKING:
    from carepath.engine import Engine

#: the reason of an occurrence that fell due while nothing planned it, when a later one was due too
SUPERSEDED = MISSED_SKIPPED + " (a later occurrence was due)"
#: a touchpoint no provider was ever asked to send (one waiting for a retry has deliveries): safe to give back
NEVER_TRIED = ~select(Delivery.id).where(Delivery.touchpoint_id == Touchpoint.id).correlate(Touchpoint).exists()


@dataclass(frozen=True)
class Row:
    """An active enrollment as the horizon needs it (one query joins enrollment, patient and horizon)."""

    id: int
    patient_id: int
    version: str
    anchors: dict
    enrolled_at: datetime
    paused_since: datetime | None
    patient: Patient
    planned_until: datetime | None
    has_horizon: bool


def horizon_of(engine: "Engine", journey: Journey) -> timedelta:
    """How far ahead ``journey``'s open-ended steps are planned."""
    return journey.horizon or engine.settings.planning_horizon


def horizon_steps(journey: Journey) -> list[Step]:
    return [s for s in journey.steps if on_horizon(s)]


# ------------------------------------------------------------------ loading


def _query(step_id: str):  # noqa: ANN202
    return (select(Enrollment.id, Enrollment.patient_id, Enrollment.version, Enrollment.anchors,
                   Enrollment.enrolled_at, Enrollment.paused_since, PatientRow.tz, PatientRow.preferences_enc,
                   PatientRow.birth_date, PatientRow.birthday_calendar, Horizon.planned_until,
                   Horizon.enrollment_id.label("has_horizon"))
            .join(PatientRow, PatientRow.id == Enrollment.patient_id)
            .outerjoin(Horizon, and_(Horizon.enrollment_id == Enrollment.id, Horizon.step == step_id)))


def _rows(conn: Connection, engine: "Engine", query: Any) -> list[Row]:
    return [Row(r.id, r.patient_id, r.version, dict(r.anchors or {}), r.enrolled_at, r.paused_since,
                Patient(r.tz, stored_preferences(engine.cipher, r.preferences_enc), r.birth_date,
                        r.birthday_calendar == "lunar"), r.planned_until, r.has_horizon is not None)
            for r in conn.execute(query)]


# ------------------------------------------------------------------ planning


def plan_new(conn: Connection, engine: "Engine", enrollment_ids: Sequence[int], journey: Journey,
             now: datetime) -> int:
    """Plan the first window of ``journey``'s horizon steps for freshly created enrollments (from each
    series' start: an anchor in the past catches up by the ``missed`` policy); returns touchpoints planned."""
    steps = horizon_steps(journey)
    if not steps or not enrollment_ids:
        return 0
    planned = 0
    for step in steps:
        for start in range(0, len(enrollment_ids), 5000):
            rows = _rows(conn, engine, _query(step.id).where(Enrollment.id.in_(enrollment_ids[start:start + 5000])))
            planned += _plan(conn, engine, journey, step, rows, now, from_start=True)
    return planned


def extend_horizons(engine: "Engine", batch: int = 2000) -> int:
    """The maintenance job: plan the next stretch of every horizon step that has less than half its window
    planned (and of enrollments that never had one: a version migrated to, a step added); returns how many
    touchpoints it planned."""
    now = engine.clock.now()
    total = 0
    for journey in engine.journeys.values():
        ahead = horizon_of(engine, journey)
        for step in horizon_steps(journey):
            last_id = 0
            while True:
                with engine.db.begin() as conn:
                    q = (_query(step.id).where(
                        Enrollment.journey == journey.name, Enrollment.status == "active", Enrollment.id > last_id,
                        PatientRow.deceased == false(),
                        or_(Horizon.enrollment_id.is_(None), Horizon.planned_until < now + ahead / 2))
                         .order_by(Enrollment.id).limit(batch))
                    rows = _rows(conn, engine, q)
                    if rows:
                        total += _plan(conn, engine, journey, step, rows, now, from_start=False)
                if len(rows) < batch:
                    break
                last_id = rows[-1].id
    return total


def _plan(conn: Connection, engine: "Engine", journey: Journey, step: Step, rows: list[Row], now: datetime, *,
          from_start: bool) -> int:
    """Plan ``step`` for ``rows`` up to ``now + horizon`` and move their horizon on."""
    until = now + horizon_of(engine, journey)
    live: list[tuple[int, int, str, Journey, list[Planned]]] = []
    decided: dict[tuple[int, int, str], list[Planned]] = defaultdict(list)
    horizons: list[dict] = []
    candidates: dict[int, tuple[Row, Journey, Step, list[tuple[str, datetime]]]] = {}
    for row in rows:
        pinned = engine.journey_version(journey.name, row.version)
        own = next((s for s in pinned.steps if s.id == step.id), None) if pinned else None
        if own is None or not on_horizon(own):  # the enrollment's version has no such step: nothing to plan
            horizons.append(_horizon(row, step.id, None, now))
            continue
        after = None if from_start else (row.planned_until if row.has_horizon else now)
        found = window(own, anchor_values(row.anchors, row.enrolled_at), row.patient, after=after, until=until)
        candidates[row.id] = (row, pinned, own, found.occurrences)
        horizons.append(_horizon(row, step.id, None if found.ended else until, now))
    existing = _existing(conn, [(row.id, own.id, key) for row, _, own, occ in candidates.values() for key, _ in occ])
    for row, pinned, own, occurrences in candidates.values():
        fresh = [(k, w) for k, w in occurrences if idempotency_key(row.id, own.id, k) not in existing]
        past = [w for k, w in occurrences if w <= now]
        latest_past = max(past) if past else None
        anchor_at = row.anchors.get(own.anchor) if own.anchor else None
        anchor_at = datetime.fromisoformat(anchor_at) if isinstance(anchor_at, str) else None
        keep: list[Planned] = []
        for key, when in fresh:
            item = Planned(own, key, when, when, anchor_at=anchor_at)
            if row.paused_since is not None and when >= row.paused_since:
                decided[(row.id, row.patient_id, row.patient.tz)].append(_as(item, PAUSED))
            elif when <= now and when != latest_past:
                decided[(row.id, row.patient_id, row.patient.tz)].append(_as(item, SUPERSEDED))
            else:
                keep.append(item)
        if keep:
            live.append((row.id, row.patient_id, row.patient.tz, pinned, keep))
    planned = len(plan_batch(conn, live, now=now, policy=engine.policy)) if live else 0
    rows_out = [r for (eid, pid, _), items in decided.items()
                for r in touchpoint_rows(eid, pid, candidates[eid][1], items, now)]
    planned += insert_touchpoints(conn, rows_out)
    _save_horizons(conn, horizons)
    return planned


def _as(item: Planned, reason: str) -> Planned:
    return Planned(item.step, item.occurrence, item.planned_at, item.due_at, "skipped", reason, None, item.anchor_at)


def _horizon(row: Row, step_id: str, until: datetime | None, now: datetime) -> dict:
    return dict(enrollment_id=row.id, step=step_id, patient_id=row.patient_id, planned_until=until, updated_at=now)


def _existing(conn: Connection, keys: Iterable[tuple[int, str, str]]) -> set[str]:
    wanted = [idempotency_key(*k) for k in keys]
    found: set[str] = set()
    for start in range(0, len(wanted), 5000):
        found.update(conn.execute(select(Touchpoint.idempotency_key).where(
            Touchpoint.idempotency_key.in_(wanted[start:start + 5000]))).scalars())
    return found


def _save_horizons(conn: Connection, values: list[dict]) -> None:
    if not values:
        return
    dialect = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[conn.dialect.name]
    stmt = dialect(Horizon)
    conn.execute(stmt.on_conflict_do_update(index_elements=["enrollment_id", "step"], set_={
        "planned_until": stmt.excluded.planned_until, "updated_at": stmt.excluded.updated_at}), values)


# ------------------------------------------------------------------ anchors


def anchor_changed(conn: Connection, engine: "Engine", enrollment: Any, journey: Journey, anchor: str,
                   now: datetime) -> int:
    """Re-plan the horizon steps on ``anchor`` after it moved, was set or was cancelled.

    Their touchpoints that did not happen yet (scheduled ones, and future ones cancelled with the anchor or
    paused) give way to the series of the new value; what was sent is history and is not sent again for the
    same day. A cancelled anchor cancels the scheduled ones (``anchor cancelled``).
    """
    steps = [s for s in horizon_steps(journey) if s.anchor == anchor]
    if not steps:
        return 0
    ids = [s.id for s in steps]
    mine = and_(Touchpoint.enrollment_id == enrollment.id, Touchpoint.step.in_(ids))
    values = anchor_values(
        conn.execute(select(Enrollment.anchors).where(Enrollment.id == enrollment.id)).scalar() or {},
        enrollment.enrolled_at)
    if values.get(anchor) is None:
        return conn.execute(update(Touchpoint).where(mine, Touchpoint.status == "scheduled").values(
            status="cancelled", reason=ANCHOR_CANCELLED, updated_at=now)).rowcount or 0
    future = Touchpoint.planned_at >= now
    conn.execute(delete(Touchpoint).where(mine, NEVER_TRIED, or_(
        Touchpoint.status == "scheduled",
        and_(future, Touchpoint.status == "cancelled", Touchpoint.reason == ANCHOR_CANCELLED),
        and_(future, Touchpoint.status == "skipped", Touchpoint.reason == PAUSED))))
    planned = 0
    for step in steps:
        rows = _rows(conn, engine, _query(step.id).where(Enrollment.id == enrollment.id))
        planned += _plan(conn, engine, journey, step, rows, now, from_start=True)
    return planned


# ------------------------------------------------------------------ migration


def migrated(conn: Connection, enrollment_id: int, pending: dict[str, Any], old_steps: dict[str, Step],
             new_steps: dict[str, Step]) -> tuple[set[str], dict[str, str]]:
    """``journeys migrate`` for horizon steps: ``(keys kept, {key given back: step})``.

    A horizon step unchanged in the target version keeps its scheduled touchpoints; a changed one gives them
    back (deleted: they were never sent) and its horizon restarts, so the maintenance job plans it again
    from now by the new definition.
    """
    kept: set[str] = set()
    given_back: dict[str, str] = {}
    for key, row in pending.items():
        step = new_steps.get(row.step)
        if step is None or not on_horizon(step):
            continue
        if old_steps.get(row.step) == step:
            kept.add(key)
        else:
            given_back[key] = row.step
    if given_back:
        ids = [pending[k].id for k in given_back]
        tried = set(conn.execute(select(Touchpoint.id).where(Touchpoint.id.in_(ids), ~NEVER_TRIED)).scalars())
        for key in [k for k in given_back if pending[k].id in tried]:  # waiting for a retry: it goes out as it is
            kept.add(key)
            del given_back[key]
        conn.execute(delete(Touchpoint).where(Touchpoint.id.in_([pending[k].id for k in given_back])))
        conn.execute(delete(Horizon).where(Horizon.enrollment_id == enrollment_id,
                                           Horizon.step.in_(set(given_back.values()))))
    return kept, given_back
