"""Patient-chosen times (issue 19): stored encrypted on the patient, and every future occurrence re-timed.

A ``patient.preferences_updated`` event (``{"medication_time": "20:00"}``; ``null`` clears one) or a patient
record carrying ``preferences`` merges the values into the patient's (``patients.preferences_enc``) and re-times
every touchpoint of a step whose ``at`` names a changed preference and that did not go out yet: the same day,
at the new time (quiet hours, caps and the ``missed`` policy apply again). What was sent stays as it was; a
re-timed occurrence that lands past its horizon is planned again when the horizon reaches it.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Mapping

from sqlalchemy import Connection, and_, bindparam, delete, or_, select, update

from carepath.definition.preferences import check_values, format_time, parse_time
from carepath.runtime.pause import PAUSED
from carepath.runtime.planner import DayLoad, Planned, apply_policy
from carepath.runtime.series import on_horizon, preference_of, same_day_at
from carepath.store.audit import audit
from carepath.store.crypto import Cipher
from carepath.store.schema import Enrollment, Horizon, Patient, Touchpoint

if TYPE_CHECKING:
    from carepath.engine import Engine


def stored_preferences(cipher: Cipher, encrypted: str | None) -> dict[str, str]:
    """A patient's preferences as stored (decrypted)."""
    plain = cipher.decrypt(encrypted) if encrypted else None
    return json.loads(plain) if plain else {}


class PreferenceError(ValueError):
    """Preference values that cannot be applied: each problem names its field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def apply(conn: Connection, engine: "Engine", patient_id: int, values: Mapping[str, Any], now: datetime, *,
          actor: str) -> str:
    """Merge ``values`` into the patient's preferences and re-time what they move; what changed, as text.

    Raises :class:`PreferenceError` (nothing changed) for an unknown preference or a value that is no time.
    """
    if problems := check_values(values):
        raise PreferenceError(problems)
    encrypted = conn.execute(select(Patient.preferences_enc).where(Patient.id == patient_id)).scalar()
    current = stored_preferences(engine.cipher, encrypted)
    merged = dict(current)
    for name, value in values.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = format_time(parse_time(value))
    changed = sorted(n for n in set(current) | set(merged) if current.get(n) != merged.get(n))
    if not changed:
        return "preferences unchanged"
    conn.execute(update(Patient).where(Patient.id == patient_id).values(
        preferences_enc=engine.cipher.encrypt(json.dumps(merged, sort_keys=True)), updated_at=now))
    audit(conn, actor=actor, action="patient.preferences_updated", entity="patient", entity_id=patient_id, at=now,
          detail={"fields": changed})
    moved = retime(conn, engine, patient_id, set(changed), merged, now)
    return f"preferences {', '.join(changed)} updated; {moved} planned touchpoint(s) re-timed"


def retime(conn: Connection, engine: "Engine", patient_id: int, names: set[str], values: Mapping[str, str],
           now: datetime) -> int:
    """Re-time the not-yet-sent touchpoints of steps whose ``at`` names one of ``names``."""
    from carepath.definition.preferences import chosen_time
    from carepath.runtime.horizon import NEVER_TRIED
    from carepath.runtime.scheduling import day_loads

    tz = conn.execute(select(Patient.tz).where(Patient.id == patient_id)).scalar_one()
    targets: list[tuple[int, str, Any]] = []  # (enrollment, step id, step)
    for e in conn.execute(select(Enrollment.id, Enrollment.journey, Enrollment.version).where(
            Enrollment.patient_id == patient_id, Enrollment.status == "active")):
        journey = engine.journey_version(e.journey, e.version)
        for step in journey.steps if journey else []:
            if on_horizon(step) and preference_of(step) in names:
                targets.append((e.id, step.id, step))
    if not targets:
        return 0
    waiting = or_(Touchpoint.status == "scheduled",
                  and_(Touchpoint.status == "skipped", Touchpoint.reason == PAUSED, Touchpoint.planned_at >= now))
    rows = conn.execute(select(Touchpoint.id, Touchpoint.enrollment_id, Touchpoint.step, Touchpoint.occurrence,
                               Touchpoint.status, Touchpoint.planned_at, Touchpoint.anchor_at, Horizon.planned_until)
                        .outerjoin(Horizon, and_(Horizon.enrollment_id == Touchpoint.enrollment_id,
                                                 Horizon.step == Touchpoint.step))
                        .where(Touchpoint.patient_id == patient_id, waiting,
                               or_(*[and_(Touchpoint.enrollment_id == e, Touchpoint.step == s)
                                     for e, s, _ in targets]))).all()
    steps = {(e, s): step for e, s, step in targets}
    gone, updates, ids = [], [], {}
    live: dict[int, list[Planned]] = {}
    for r in rows:
        step = steps[(r.enrollment_id, r.step)]
        when = same_day_at(r.planned_at, chosen_time(preference_of(step), values), tz)
        if r.planned_until is not None and when > r.planned_until:
            gone.append(r.id)  # past the horizon now: planned again, at the new time, when the horizon gets there
        elif r.status == "skipped":
            updates.append(dict(b_id=r.id, b_status="skipped", b_reason=PAUSED, b_planned=when, b_due=when,
                                b_now=now))
        else:
            ids[(r.enrollment_id, r.step, r.occurrence)] = r.id
            live.setdefault(r.enrollment_id, []).append(Planned(step, r.occurrence, when, when, anchor_at=r.anchor_at))
    if gone:
        conn.execute(delete(Touchpoint).where(Touchpoint.id.in_(gone), NEVER_TRIED))
    load = DayLoad(tz, day_loads(conn, [patient_id], now - timedelta(days=1),
                                 exclude_ids=list(ids.values())).get(patient_id, ()))
    for enrollment_id, items in live.items():
        for p in apply_policy(items, tz_name=tz, now=now, policy=engine.policy, load=load):
            updates.append(dict(b_id=ids[(enrollment_id, p.step.id, p.occurrence)], b_status=p.status,
                                b_reason=p.reason, b_planned=p.planned_at, b_due=p.due_at, b_now=now))
    if updates:
        conn.execute(update(Touchpoint).where(Touchpoint.id == bindparam("b_id")).values(
            status=bindparam("b_status"), reason=bindparam("b_reason"), planned_at=bindparam("b_planned"),
            due_at=bindparam("b_due"), updated_at=bindparam("b_now")), updates)
    return len(updates) + len(gone)
