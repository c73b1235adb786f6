"""The planner's database side: day loads in, touchpoints out, in bulk."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Iterable, Sequence

from sqlalchemy import Connection, String, and_, bindparam, select, update

from carepath.definition.model import Category, Journey
from carepath.runtime.planner import (CAP_DROPPED, MISSED_SKIPPED, DayLoad, Planned, apply_policy, idempotency_key,
                                      plan_anchored, revised, revision)
from carepath.runtime.dispatch.statements import among
from carepath.runtime.policy import Policy
from carepath.runtime.series import on_horizon  # issue 19
from carepath.store.schema import Enrollment, JourneyVersion, Touchpoint

PENDING = ("scheduled",)
ANCHOR_CANCELLED = "anchor cancelled"
COUNTED = ("scheduled", "claimed", "sent", "delivered")
PENDING_COUNTED = ("scheduled", "claimed")  # not sent yet
NON_URGENT = [c.value for c in Category if c is not Category.urgent]


#: (journey, version) -> its conditional steps (``when``), read from the stored definition that enrollments are
#: pinned to. A version is the hash of one definition, so an entry never goes stale; a fresh process reads it
#: again from the database (nothing here depends on what this process planned before).
_CONDITIONAL: dict[tuple[str, str], frozenset[str]] = {}


def conditional_steps(conn: Connection, journeys: Iterable[str]) -> dict[str, dict[str, frozenset[str]]]:
    """journey -> version -> the steps with a condition, for every stored version of ``journeys``.

    Their pending touchpoints take no day's slot (carepath.runtime.planner.apply_policy): the condition may be
    false when they fall due.
    """
    names = set(journeys)
    if not names:
        return {}
    stored = conn.execute(select(JourneyVersion.journey, JourneyVersion.version).where(
        JourneyVersion.journey.in_(names))).all()
    missing = {(j, v) for j, v in stored if (j, v) not in _CONDITIONAL}
    if missing:
        for journey, version, definition in conn.execute(
                select(JourneyVersion.journey, JourneyVersion.version, JourneyVersion.definition).where(
                    JourneyVersion.journey.in_({j for j, _ in missing}),
                    JourneyVersion.version.in_({v for _, v in missing}))):
            _CONDITIONAL[(journey, version)] = frozenset(
                s["id"] for s in (definition or {}).get("steps", ()) if s.get("condition"))
    out: dict[str, dict[str, frozenset[str]]] = defaultdict(dict)
    for journey, version in stored:
        out[journey][version] = _CONDITIONAL.get((journey, version), frozenset())
    return out


def _pending_conditional(conn: Connection, rows: Sequence[tuple[int, int, str, str]]) -> set[int]:
    """The ids among ``rows`` (pending touchpoints: id, enrollment id, journey, step) whose step has a condition
    in the journey version their enrollment is pinned to.

    A step conditional in every stored version of its journey (or in none) needs no look-up; only a step whose
    versions disagree asks which version its enrollment is pinned to.
    """
    by_journey = conditional_steps(conn, {r[2] for r in rows})
    always: dict[str, frozenset[str]] = {}
    sometimes: dict[str, frozenset[str]] = {}
    for journey, versions in by_journey.items():
        sets = list(versions.values())
        always[journey] = frozenset.intersection(*sets)
        sometimes[journey] = frozenset.union(*sets) - always[journey]
    found = {r[0] for r in rows if r[3] in always.get(r[2], ())}
    ask = [r for r in rows if r[3] in sometimes.get(r[2], ())]
    enrollments = list({r[1] for r in ask})
    pinned: dict[int, str] = {}
    for start in range(0, len(enrollments), 5000):
        pinned.update(conn.execute(select(Enrollment.id, Enrollment.version).where(
            Enrollment.id.in_(enrollments[start:start + 5000]))).all())
    return found | {tid for tid, eid, journey, step in ask
                    if step in by_journey[journey].get(pinned.get(eid, ""), ())}


def remember_conditional(journey: Journey) -> None:
    """Deprecated: :func:`day_loads` reads the conditional steps from the pinned journey version itself."""
    import warnings

    warnings.warn("carepath.runtime.scheduling.remember_conditional is no longer needed (day_loads reads the "
                  "conditional steps from the enrollment's pinned journey version); it is kept for this release only",
                  DeprecationWarning, stacklevel=2)


# statements of the hot path, built once; the text is the same for every list length on PostgreSQL (prepared once
# per connection) is the same for every number of patients on PostgreSQL (prepared once per connection)
_DAY_LOADS = {pg: select(Touchpoint.id, Touchpoint.patient_id, Touchpoint.due_at, Touchpoint.status,
                         Touchpoint.category, Touchpoint.action, Touchpoint.journey, Touchpoint.step,
                         Touchpoint.enrollment_id).where(
    among(Touchpoint.patient_id, "ids", pg), Touchpoint.due_at >= bindparam("since")) for pg in (False, True)}
_KNOWN_KEYS = {pg: select(Touchpoint.idempotency_key).where(among(Touchpoint.idempotency_key, "keys", pg, String))
               for pg in (False, True)}
_IDS_OF_KEYS = {pg: select(Touchpoint.id).where(among(Touchpoint.idempotency_key, "keys", pg, String))
                for pg in (False, True)}


def day_loads(conn: Connection, patient_ids: Iterable[int], since: datetime,
              exclude_ids: Sequence[int] = ()) -> dict[int, list[datetime]]:
    """Due times of each patient's counted non-urgent touchpoints from ``since`` on.

    A pending touchpoint of a conditional step (in the journey version its enrollment is pinned to,
    :func:`conditional_steps`) does not count: its condition may be false when it falls due; once sent it
    counts like any message.
    """
    ids = list(set(patient_ids))
    out: dict[int, list[datetime]] = defaultdict(list)
    excluded = set(exclude_ids)
    counted, non_urgent, pending = set(COUNTED), set(NON_URGENT), set(PENDING_COUNTED)
    for start in range(0, len(ids), 5000):
        # Only patient and time in SQL, so that the (patient_id, due_at) index is the one used:
        # with status in the WHERE clause SQLite may prefer the status index and scan every row.
        rows = [r for r in conn.execute(_DAY_LOADS[conn.dialect.name == "postgresql"],
                                        {"ids": ids[start:start + 5000], "since": since})
                if r[0] not in excluded and r[3] in counted and r[4] in non_urgent and r[5] == "send"]
        skipped = _pending_conditional(conn, [(r[0], r[8], r[6], r[7]) for r in rows if r[3] in pending])
        for tid, pid, due, *_ in rows:
            if tid not in skipped:
                out[pid].append(due)
    return out


_COLUMNS = ("enrollment_id", "patient_id", "journey", "step", "stage", "category", "action", "occurrence",
            "idempotency_key", "anchor", "anchor_at", "status", "planned_at", "due_at", "reason", "attempts", "channel_index",
            "event_id", "created_at", "updated_at")
KEY = _COLUMNS.index("idempotency_key")
_INSERT = f"INSERT INTO touchpoints ({', '.join(_COLUMNS)}) VALUES ({', '.join(['?'] * len(_COLUMNS))})"


def touchpoint_rows(enrollment_id: int, patient_id: int, journey: Journey, planned: Iterable[Planned],
                    now: datetime) -> list[tuple]:
    """Rows for :func:`insert_touchpoints`, in ``_COLUMNS`` order (the idempotency key at ``KEY``)."""
    rows = []
    for p in planned:
        step_id, stage, category, action, anchor = _step_columns(p.step)
        rows.append((enrollment_id, patient_id, journey.name, step_id, stage, category, action, p.occurrence,
                     f"{enrollment_id}:{step_id}:{p.occurrence}", anchor, p.anchor_at, p.status, p.planned_at,
                     p.due_at, p.reason, 0, 0, p.event_id, now, now))
    return rows


_STEP_COLUMNS: dict[int, tuple] = {}  # id(step) -> (step, columns): the step object kept, so an id is never reused


def _step_columns(step) -> tuple:
    """A step's constant columns (id, stage, category, action, anchor), worked out once per step object
    (the key is the same as :func:`~carepath.runtime.planner.idempotency_key` makes)."""
    found = _STEP_COLUMNS.get(id(step))
    if found is None or found[0] is not step:
        found = _STEP_COLUMNS[id(step)] = (step, (step.id, step.stage.value, step.category.value,
                                                  step.touchpoint_action, step.anchor))
    return found[1]


class _SqliteTimes(dict):
    """Datetimes in the text form SQLAlchemy's SQLite DateTime writes (naive UTC), memoized:
    many rows share the same instants (slots, ``now``)."""

    def __missing__(self, value: datetime) -> str:
        text = value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(" ", "microseconds")
        self[value] = text
        return text


def _sqlite_values(row: tuple, times: _SqliteTimes, positions: tuple[int, ...] | None) -> tuple:
    if positions is None:
        return tuple(times[v] if isinstance(v, datetime) else v for v in row)
    values = list(row)
    for i in positions:
        if values[i] is not None:
            values[i] = times[values[i]]
    return tuple(values)


_TIME_POSITIONS = tuple(_COLUMNS.index(c)
                        for c in ("anchor_at", "planned_at", "due_at", "created_at", "updated_at"))


def insert_touchpoints(conn: Connection, rows: list[tuple]) -> int:
    """Bulk insert straight through the driver (COPY on PostgreSQL): the planner's hot path."""
    if not rows:
        return 0
    if conn.dialect.name == "postgresql":
        cursor = conn.connection.driver_connection.cursor()
        with cursor.copy(f"COPY touchpoints ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:
        executemany_raw(conn, _INSERT, rows, time_positions=_TIME_POSITIONS)
    return len(rows)


def executemany_raw(conn: Connection, sql: str, rows: list[tuple],
                    time_positions: tuple[int, ...] | None = None) -> None:
    """Run ``sql`` (with ``?`` marks) for many rows straight through the driver.

    Datetimes (at ``time_positions`` when given, else wherever found) are written in the
    same form SQLAlchemy uses, so the ORM reads them back alike.
    """
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        times = _SqliteTimes()
        rows = [_sqlite_values(r, times, time_positions) for r in rows]
    else:
        sql = sql.replace("?", "%s")
    conn.exec_driver_sql(sql, rows)


_ENROLLMENT_INSERT = ("INSERT INTO enrollments (patient_id, journey, version, key, status, anchors, context, "
                      "enrolled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")


def insert_enrollments(conn: Connection, rows: list[tuple]) -> list[int]:
    """Insert enrollments in bulk (JSON columns given as JSON text); returns their ids in order."""
    if conn.dialect.name == "sqlite":
        # Inside our write transaction (BEGIN IMMEDIATE) nobody else inserts, and SQLite gives
        # an INTEGER PRIMARY KEY the next rowids in order: the ids are the last n.
        executemany_raw(conn, _ENROLLMENT_INSERT, rows, time_positions=(7,))
        last = conn.exec_driver_sql("SELECT last_insert_rowid()").scalar_one()
        return list(range(last - len(rows) + 1, last + 1))
    sql = _ENROLLMENT_INSERT.replace("?", "%s") + " RETURNING id"
    cursor = conn.connection.driver_connection.cursor()
    cursor.executemany(sql, rows, returning=True)
    ids = []
    while True:
        ids.append(cursor.fetchone()[0])
        if not cursor.nextset():
            return ids


def plan_new_enrollments(conn: Connection, items: Sequence[tuple[int, int, str, dict[str, datetime | None]]],
                         journey: Journey, *, now: datetime, policy: Policy) -> int:
    """Plan anchor-based steps for freshly created enrollments.

    ``items`` are ``(enrollment_id, patient_id, tz, anchors)``; writes all rows
    in one bulk insert and returns how many touchpoints were written.
    """
    loads = day_loads(conn, (i[1] for i in items), now - timedelta(days=1))
    anchored = [s for s in journey.steps if s.anchor is not None]
    rows: list[dict] = []
    per_patient: dict[int, DayLoad] = {}
    for enrollment_id, patient_id, tz, anchors in items:
        load = per_patient.get(patient_id) or DayLoad(tz, loads.get(patient_id, ()))
        per_patient[patient_id] = load
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
        existing.update(conn.execute(_KNOWN_KEYS[conn.dialect.name == "postgresql"],
                                     {"keys": keys[start:start + 5000]}).scalars())
    fresh: dict[tuple[int, int, str, str], list[Planned]] = defaultdict(list)
    journeys: dict[str, Journey] = {}
    for (enrollment_id, patient_id, tz, journey, _), p, key in keyed:
        if key not in existing:
            existing.add(key)
            fresh[(enrollment_id, patient_id, tz, journey.name)].append(p)
            journeys[journey.name] = journey
    if not fresh:
        return []
    loads_raw = day_loads(conn, {k[1] for k in fresh}, now - timedelta(days=1))
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
        ids.extend(conn.execute(_IDS_OF_KEYS[conn.dialect.name == "postgresql"], {"keys": new_keys[start:start + 5000]}).scalars())
    return ids


def plan_single(conn: Connection, *, enrollment_id: int, patient_id: int, tz: str, journey: Journey,
                planned: list[Planned], now: datetime, policy: Policy) -> list[int]:
    """:func:`plan_batch` for one enrollment."""
    return plan_batch(conn, [(enrollment_id, patient_id, tz, journey, planned)], now=now, policy=policy)


# a touchpoint in one of these states told (or is telling) the patient about the anchor's old value
TOLD = ("claimed", "sent", "delivered", "failed")


ALREADY_TOLD = "cancelled: the patient was already told this time"
#: a touchpoint whose anchor moved while a worker had it claimed: its re-send (the next revision) tells the new
#: time, so if that worker died it is not sent after its lease runs out (with the new time, it would say it twice)
SUPERSEDED = "cancelled: the time moved while it was in flight; its re-send tells the new one"


def _movable(row) -> bool:
    return (row.status == "scheduled" or (row.status == "cancelled" and row.reason in (ANCHOR_CANCELLED, ALREADY_TOLD))
            or (row.status == "skipped" and row.reason in (MISSED_SKIPPED, CAP_DROPPED)))


def replan_anchor(conn: Connection, *, enrollment_id: int, patient_id: int, tz: str, journey: Journey,
                  anchor: str, anchors: dict[str, datetime | None], now: datetime, policy: Policy) -> dict[str, int]:
    """Recompute the touchpoints hanging on ``anchor`` after it moved or was cancelled.

    Per occurrence, only its latest revision counts. A pending one (scheduled,
    or cancelled by the anchor, or skipped as missed or over the cap) is
    re-timed in place. One that was already sent for another anchor value is
    history and stays; unless its step says ``resend_on_move: false``, the
    occurrence is planned again under a new revision (a new idempotency key).
    A pending revision is cancelled when the anchor moves back to the value
    the patient was last told.
    A cancelled anchor cancels the pending ones. Returns counts of moved,
    cancelled, added and resent (planned again) touchpoints.
    """
    counts = {"moved": 0, "cancelled": 0, "added": 0, "resent": 0}
    steps = [s for s in journey.steps if s.anchor == anchor and not on_horizon(s)]  # issue 19: horizon.anchor_changed
    if not steps:
        return counts
    latest: dict[tuple[str, str], tuple[int, object]] = {}
    told: dict[tuple[str, str], tuple[int, object]] = {}  # the latest revision that reached the patient
    for row in conn.execute(select(Touchpoint.id, Touchpoint.step, Touchpoint.occurrence, Touchpoint.status,
                                   Touchpoint.reason, Touchpoint.anchor_at).where(
            Touchpoint.enrollment_id == enrollment_id, Touchpoint.step.in_([s.id for s in steps]))):
        base, rev = revision(row.occurrence)
        for seen, keep in ((latest, True), (told, row.status in TOLD)):
            if keep and ((row.step, base) not in seen or seen[(row.step, base)][0] < rev):
                seen[(row.step, base)] = (rev, row)
    movable = {k: row for k, (_, row) in latest.items() if _movable(row)}
    load = DayLoad(tz, day_loads(conn, [patient_id], now - timedelta(days=1),
                                 exclude_ids=[r.id for r in movable.values()]).get(patient_id, ()))
    planned = plan_anchored(steps, anchors, tz_name=tz, now=now, policy=policy, load=load)
    updates, new, superseded = [], [], []
    for p in planned:
        k = (p.step.id, p.occurrence)
        if k in movable and k in told and told[k][1].anchor_at == p.anchor_at:
            # moved back to the time the patient was last told: the pending re-send is not needed
            updates.append(dict(b_id=movable[k].id, b_due=p.due_at, b_planned=p.planned_at, b_status="cancelled",
                                b_reason=ALREADY_TOLD, b_anchor=p.anchor_at, b_now=now))
        elif k in movable:
            updates.append(dict(b_id=movable[k].id, b_due=p.due_at, b_planned=p.planned_at, b_status=p.status,
                                b_reason=p.reason, b_anchor=p.anchor_at, b_now=now))
        elif k not in latest:
            new.append(p)
            counts["added"] += 1
        else:
            rev, row = latest[k]
            if p.step.resend_on_move and row.status in TOLD and row.anchor_at != p.anchor_at:
                new.append(_decided_again(p, rev + 1))
                counts["resent"] += 1
                if row.status == "claimed":
                    superseded.append(row.id)
    if superseded:  # still claimed: the worker holding it finishes as it would; a dead one's is not re-sent
        conn.execute(update(Touchpoint).where(Touchpoint.id.in_(superseded), Touchpoint.status == "claimed")
                     .values(reason=SUPERSEDED))
    if updates:
        conn.execute(update(Touchpoint).where(Touchpoint.id == bindparam("b_id")).values(
            due_at=bindparam("b_due"), planned_at=bindparam("b_planned"), status=bindparam("b_status"),
            reason=bindparam("b_reason"), anchor_at=bindparam("b_anchor"), updated_at=bindparam("b_now")),
            updates)
        counts["moved"] = len(updates)
    seen = {(p.step.id, p.occurrence) for p in planned}
    stale = [r.id for k, r in movable.items() if k not in seen and r.status == "scheduled"]
    if stale:
        conn.execute(update(Touchpoint).where(Touchpoint.id.in_(stale)).values(
            status="cancelled", reason=ANCHOR_CANCELLED, updated_at=now))
        counts["cancelled"] = len(stale)
    insert_touchpoints(conn, touchpoint_rows(enrollment_id, patient_id, journey, new, now))
    return counts


def _decided_again(p: Planned, rev: int) -> Planned:
    return Planned(p.step, revised(p.occurrence, rev), p.planned_at, p.due_at, p.status, p.reason, p.event_id,
                   p.anchor_at)


def cancel_pending(conn: Connection, enrollment_id: int, reason: str, now: datetime) -> int:
    """Cancel every scheduled touchpoint of an enrollment (exit); returns how many."""
    result = conn.execute(update(Touchpoint).where(
        and_(Touchpoint.enrollment_id == enrollment_id, Touchpoint.status.in_(PENDING))).values(
        status="cancelled", reason=reason, updated_at=now))
    return result.rowcount or 0
