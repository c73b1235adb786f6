"""Each patient's daily load: the counted non-urgent touchpoints the daily cap weighs a new one against.

A pending touchpoint of a conditional step takes no day's slot (its condition may be false when it falls
due), so the conditional steps of every stored journey version are read here too.
``carepath.runtime.scheduling`` re-exports every public name here.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Iterable, Sequence

from sqlalchemy import Connection, String, bindparam, select

from carepath.definition.model import Category, Journey
from carepath.store.driver import DriverQuery
from carepath.store.statements import among, is_postgres
from carepath.store.schema import Enrollment, JourneyVersion, Touchpoint

COUNTED = ("scheduled", "claimed", "sent", "delivered")
PENDING_COUNTED = ("scheduled", "claimed")  # not sent yet
NON_URGENT = [c.value for c in Category if c is not Category.urgent]


#: (journey, version) -> its conditional steps (``when``), read from the stored definition that enrollments are
#: pinned to. A version is the hash of one definition, so an entry never goes stale; a fresh process reads it
#: again from the database (nothing here depends on what this process planned before).
_CONDITIONAL: dict[tuple[str, str], frozenset[str]] = {}
# built once: the stored versions of some journeys, their definitions, the versions enrollments are pinned to
# (the two read on every day load: the names / ids one list, see ``among``, by whether the database is PostgreSQL;
# on SQLite run on the driver's cursor)
_STORED = {pg: DriverQuery(select(JourneyVersion.journey, JourneyVersion.version).where(
    among(JourneyVersion.journey, "names", pg, String))) for pg in (False, True)}
_DEFINITIONS = select(JourneyVersion.journey, JourneyVersion.version, JourneyVersion.definition).where(
    JourneyVersion.journey.in_(bindparam("names", expanding=True)),
    JourneyVersion.version.in_(bindparam("versions", expanding=True)))
_PINNED = {pg: DriverQuery(select(Enrollment.id, Enrollment.version).where(among(Enrollment.id, "ids", pg)))
           for pg in (False, True)}


def conditional_steps(conn: Connection, journeys: Iterable[str]) -> dict[str, dict[str, frozenset[str]]]:
    """journey -> version -> the steps with a condition, for every stored version of ``journeys``.

    Their pending touchpoints take no day's slot (carepath.runtime.planner.apply_policy): the condition may be
    false when they fall due.
    """
    names = set(journeys)
    if not names:
        return {}
    stored = _STORED[is_postgres(conn)].rows(conn, {"names": sorted(names)})
    missing = {(j, v) for j, v in stored if (j, v) not in _CONDITIONAL}
    if missing:
        for journey, version, definition in conn.execute(_DEFINITIONS, {
                "names": list({j for j, _ in missing}), "versions": list({v for _, v in missing})}):
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
        pinned.update(_PINNED[is_postgres(conn)].rows(conn, {"ids": enrollments[start:start + 5000]}))
    return found | {tid for tid, eid, journey, step in ask
                    if step in by_journey[journey].get(pinned.get(eid, ""), ())}


def remember_conditional(journey: Journey) -> None:
    """Deprecated: :func:`day_loads` reads the conditional steps from the pinned journey version itself."""
    import warnings

    warnings.warn("carepath.runtime.scheduling.remember_conditional is no longer needed (day_loads reads the "
                  "conditional steps from the enrollment's pinned journey version); it is kept for this release only",
                  DeprecationWarning, stacklevel=2)


# built once; on PostgreSQL its text is the same for every number of patients (prepared once per connection)
# (on SQLite run on the driver's cursor: carepath.store.driver.DriverQuery)
_DAY_LOADS = {pg: DriverQuery(select(Touchpoint.id, Touchpoint.patient_id, Touchpoint.due_at, Touchpoint.status,
                         Touchpoint.category, Touchpoint.action, Touchpoint.journey, Touchpoint.step,
                         Touchpoint.enrollment_id).where(
    among(Touchpoint.patient_id, "ids", pg), Touchpoint.due_at >= bindparam("since"))) for pg in (False, True)}


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
        rows = [r for r in _DAY_LOADS[conn.dialect.name == "postgresql"].rows(
                    conn, {"ids": ids[start:start + 5000], "since": since})
                if r[0] not in excluded and r[3] in counted and r[4] in non_urgent and r[5] == "send"]
        skipped = _pending_conditional(conn, [(r[0], r[8], r[6], r[7]) for r in rows if r[3] in pending])
        for tid, pid, due, *_ in rows:
            if tid not in skipped:
                out[pid].append(due)
    return out
