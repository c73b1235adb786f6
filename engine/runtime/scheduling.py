"""The planner's database side: day loads in, touchpoints out, in bulk.

:func:`plan_new_enrollments` plans fresh enrollments' anchored steps, :func:`plan_batch` the ad-hoc ones
(``on`` events, step outcomes). The rest lives in modules named for what they do, and every public name
stays importable from here: the bulk writes in :mod:`carepath.runtime.bulk_writes`, the daily load in
:mod:`carepath.runtime.daily_load`, re-planning after an anchor moved in :mod:`carepath.runtime.replan`.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Sequence

from sqlalchemy import Connection, String, and_, select, update

from carepath.definition.model import Journey
from carepath.runtime.bulk_writes import (KEY, executemany_raw, insert_enrollments, insert_touchpoints,
                                          touchpoint_rows)
from carepath.runtime.daily_load import (COUNTED, NON_URGENT, PENDING_COUNTED, conditional_steps, day_loads,
                                         remember_conditional)
from carepath.store.driver import DriverQuery
from carepath.store.statements import among, is_postgres
from carepath.runtime.planner import (DayLoad, Planned, apply_policy, idempotency_key, plan_anchored,
                                      takes_slot)
from carepath.runtime.policy import Policy
from carepath.runtime.replan import ALREADY_TOLD, ANCHOR_CANCELLED, SUPERSEDED, TOLD, replan_anchor
from carepath.store.schema import Touchpoint

__all__ = ["ALREADY_TOLD", "ANCHOR_CANCELLED", "COUNTED", "KEY", "NON_URGENT", "PENDING", "PENDING_COUNTED",
           "SUPERSEDED", "TOLD", "cancel_pending", "conditional_steps", "day_loads", "executemany_raw",
           "insert_enrollments", "insert_touchpoints", "plan_batch", "plan_new_enrollments", "plan_single",
           "remember_conditional", "replan_anchor", "touchpoint_rows"]

PENDING = ("scheduled",)

#: run on SQLite's driver cursor (:class:`~carepath.store.driver.DriverQuery`): once or twice per ``on`` event
_KNOWN_KEYS = {pg: DriverQuery(select(Touchpoint.idempotency_key).where(
    among(Touchpoint.idempotency_key, "keys", pg, String))) for pg in (False, True)}
_IDS_OF_KEYS = {pg: DriverQuery(select(Touchpoint.id).where(among(Touchpoint.idempotency_key, "keys", pg, String)))
                for pg in (False, True)}


def plan_new_enrollments(conn: Connection, items: Sequence[tuple[int, int, str, dict[str, datetime | None]]],
                         journey: Journey, *, now: datetime, policy: Policy) -> int:
    """Plan anchor-based steps for freshly created enrollments.

    ``items`` are ``(enrollment_id, patient_id, tz, anchors)``; writes all rows
    in one bulk insert and returns how many touchpoints were written.
    """
    loads = day_loads(conn, (i[1] for i in items), now - timedelta(days=1))
    anchored = [s for s in journey.steps if s.anchor is not None]
    rows: list[tuple] = []
    per_patient: dict[int, DayLoad] = {}
    # A patient with nothing counted yet gets the plan of any other such patient with the same zone and anchors
    # (the planner is a function of those, ``now`` and the policy): appointment slots repeat across a batch, so
    # each distinct (zone, anchors) is planned once, and the day counts it left are copied only for a patient
    # who comes again in the batch.
    same: dict[tuple, tuple[list[Planned], DayLoad]] = {}
    borrowed: dict[int, DayLoad] = {}
    for enrollment_id, patient_id, tz, anchors in items:
        load = per_patient.get(patient_id)
        if load is None and patient_id in borrowed:
            load = per_patient[patient_id] = borrowed.pop(patient_id).copy()
        if load is None and patient_id not in loads:
            key = (tz, *anchors.items())
            found = same.get(key)
            if found is None:
                first = DayLoad(tz)
                found = same[key] = (plan_anchored(anchored, anchors, tz_name=tz, now=now, policy=policy,
                                                   load=first), first)
            planned, borrowed[patient_id] = found
        else:
            if load is None:
                load = per_patient[patient_id] = DayLoad(tz, loads[patient_id])
            planned = plan_anchored(anchored, anchors, tz_name=tz, now=now, policy=policy, load=load)
        rows.extend(touchpoint_rows(enrollment_id, patient_id, journey, planned, now))
    return insert_touchpoints(conn, rows)


def plan_batch(conn: Connection, entries: Sequence[tuple[int, int, str, Journey, list[Planned]]], *,
               now: datetime, policy: Policy, return_ids: bool = True) -> list[int]:
    """Apply policy to ad-hoc touchpoints (``on`` events, step outcomes) and insert them.

    ``entries`` are ``(enrollment_id, patient_id, tz, journey, planned)``.
    Already-existing idempotency keys are left alone, so a replayed trigger
    plans nothing twice. Returns the ids of the new touchpoints.
    """
    keyed = [(e, p, idempotency_key(e[0], p.step.id, p.occurrence)) for e in entries for p in e[4]]
    if not keyed:
        return []
    existing: set[str] = set()
    keys = [k for _, _, k in keyed]
    for start in range(0, len(keys), 5000):
        existing.update(r[0] for r in _KNOWN_KEYS[is_postgres(conn)].rows(conn, {"keys": keys[start:start + 5000]}))
    fresh: dict[tuple[int, int, str, str], list[Planned]] = defaultdict(list)
    journeys: dict[str, Journey] = {}
    for (enrollment_id, patient_id, tz, journey, _), p, key in keyed:
        if key not in existing:
            existing.add(key)
            fresh[(enrollment_id, patient_id, tz, journey.name)].append(p)
            journeys[journey.name] = journey
    if not fresh:
        return []
    # only a patient with a step that takes a day's slot needs the day's load read (the follow-up tasks and
    # conditional steps planned while dispatching read none)
    capped = {k[1] for k, planned in fresh.items() if any(takes_slot(p.step, policy) for p in planned)}
    loads_raw = day_loads(conn, capped, now - timedelta(days=1))
    loads: dict[int, DayLoad] = {}
    rows: list[dict] = []
    for (enrollment_id, patient_id, tz, name), planned in fresh.items():
        load = loads.setdefault(patient_id, DayLoad(tz, loads_raw.get(patient_id, ())))
        rows.extend(touchpoint_rows(enrollment_id, patient_id, journeys[name],
                                    apply_policy(planned, tz_name=tz, now=now, policy=policy, load=load), now))
    insert_touchpoints(conn, rows)
    if not return_ids:
        return []
    new_keys = [r[KEY] for r in rows]
    ids: list[int] = []
    for start in range(0, len(new_keys), 5000):
        ids.extend(r[0] for r in _IDS_OF_KEYS[is_postgres(conn)].rows(conn, {"keys": new_keys[start:start + 5000]}))
    return ids


def plan_single(conn: Connection, *, enrollment_id: int, patient_id: int, tz: str, journey: Journey,
                planned: list[Planned], now: datetime, policy: Policy) -> list[int]:
    """:func:`plan_batch` for one enrollment."""
    return plan_batch(conn, [(enrollment_id, patient_id, tz, journey, planned)], now=now, policy=policy)


def cancel_pending(conn: Connection, enrollment_id: int, reason: str, now: datetime) -> int:
    """Cancel every scheduled touchpoint of an enrollment (exit); returns how many."""
    result = conn.execute(update(Touchpoint).where(
        and_(Touchpoint.enrollment_id == enrollment_id, Touchpoint.status.in_(PENDING))).values(
        status="cancelled", reason=reason, updated_at=now))
    return result.rowcount or 0
