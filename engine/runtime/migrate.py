"""Moving running enrollments to another version of their journey.

Only unsent work moves. For each active enrollment pinned to another version,
every ``scheduled`` touchpoint is compared with what the target version plans
from the same anchors and events:

- **kept**: the step is unchanged and due at the same time; the row is left alone;
- **re-timed**: the step exists in the target version with another time (or another
  definition); the row keeps its idempotency key and gets the new due time, after
  quiet hours, caps and the missed policy;
- **dropped**: the step (or that occurrence of it) is not in the target version, or
  its new time was missed; the row is cancelled (or skipped) with the reason;
- **added**: an anchored occurrence of the target version that the enrollment has
  no touchpoint for yet and whose time has not passed (under the step's missed policy).

Claimed, sent and final touchpoints are history and never change. A dry run does
the same work in a transaction that is rolled back, so the preview is exactly
what the real run does.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import Connection, Engine as SAEngine, bindparam, select, update

from carepath.definition.model import AfterStep, Journey, OnEvent, Step
from carepath.runtime.horizon import migrated as horizon_migrated  # issue 19
from carepath.runtime.planner import (DayLoad, Planned, anchor_values, apply_policy, idempotency_key, occurrences,
                                      revision)
from carepath.runtime.policy import Policy
from carepath.runtime.scheduling import day_loads, insert_touchpoints, touchpoint_rows
from carepath.runtime.versions import resolve_version, store_version
from carepath.store.audit import audit
from carepath.store.schema import Enrollment, JourneyVersion, Patient, Touchpoint

OUTCOMES = ("kept", "retimed", "dropped", "added")


@dataclass
class MigrationReport:
    """What a migration did (or, for a dry run, would do), per step and in total."""

    journey: str
    to_version: str
    dry_run: bool
    enrollments: int = 0
    from_versions: Counter[str] = field(default_factory=Counter)
    steps: dict[str, Counter[str]] = field(default_factory=dict)

    def count(self, step: str, outcome: str, n: int = 1) -> None:
        self.steps.setdefault(step, Counter())[outcome] += n

    @property
    def totals(self) -> dict[str, int]:
        return {o: sum(c[o] for c in self.steps.values()) for o in OUTCOMES}

    def to_json(self) -> dict[str, Any]:
        return {"journey": self.journey, "to_version": self.to_version, "dry_run": self.dry_run,
                "enrollments": self.enrollments, "from_versions": dict(self.from_versions),
                "steps": {s: {o: c[o] for o in OUTCOMES} for s, c in sorted(self.steps.items())},
                "totals": self.totals}


def migrate_enrollments(db: SAEngine, name: str, to: str, *, now: datetime, policy: Policy | None = None,
                        current: Journey | None = None, from_version: str | None = None, dry_run: bool = False,
                        actor: str = "cli", progress: Callable[[int, int], None] | None = None) -> MigrationReport:
    """Move the active enrollments of journey ``name`` to version ``to`` (a hash or a unique prefix).

    ``current`` is the installed definition (a valid target before anything enrolled on it);
    ``from_version`` limits the move to enrollments pinned to that version. Audited as
    ``journey.migrated`` unless ``dry_run``. Raises :class:`~carepath.runtime.versions.VersionError`.
    """
    with db.connect() as conn:
        transaction = conn.begin()
        try:
            report = _Migration(conn, policy or Policy(), now).run(name, to, current, from_version, dry_run,
                                                                   actor, progress)
        except BaseException:
            transaction.rollback()
            raise
        if dry_run:
            transaction.rollback()
        else:
            transaction.commit()
    return report


class _Migration:
    def __init__(self, conn: Connection, policy: Policy, now: datetime) -> None:
        self.conn, self.policy, self.now = conn, policy, now
        self._journeys: dict[str, Journey | None] = {}

    def run(self, name: str, to: str, current: Journey | None, from_version: str | None, dry_run: bool,
            actor: str, progress: Callable[[int, int], None] | None) -> MigrationReport:
        conn = self.conn
        target = resolve_version(conn, name, to, current)
        source = resolve_version(conn, name, from_version, current).version if from_version else None
        store_version(conn, target, self.now, actor=actor)
        report = MigrationReport(name, target.version, dry_run)
        query = (select(Enrollment.id, Enrollment.patient_id, Enrollment.version, Enrollment.anchors,
                        Enrollment.enrolled_at, Patient.tz)
                 .join(Patient, Patient.id == Enrollment.patient_id)
                 .where(Enrollment.journey == name, Enrollment.status == "active",
                        Enrollment.version != target.version).order_by(Enrollment.id))
        if source is not None:
            query = query.where(Enrollment.version == source)
        enrollments = conn.execute(query).all()
        for n, enrollment in enumerate(enrollments, 1):
            self._move(enrollment, self._pinned(name, enrollment.version), target, report)
            report.from_versions[enrollment.version] += 1
            if progress is not None:
                progress(n, len(enrollments))
        if enrollments:
            conn.execute(update(Enrollment).where(Enrollment.id.in_([e.id for e in enrollments]))
                         .values(version=target.version))
        report.enrollments = len(enrollments)
        audit(conn, actor=actor, action="journey.migrated", entity="journey", entity_id=f"{name}@{target.version}",
              at=self.now, detail={"from_versions": dict(report.from_versions), "enrollments": report.enrollments,
                                   **report.totals})
        return report

    def _pinned(self, name: str, version: str) -> Journey | None:
        """The version an enrollment runs now; None when its stored definition does not load."""
        if version not in self._journeys:
            definition = self.conn.execute(select(JourneyVersion.definition).where(
                JourneyVersion.journey == name, JourneyVersion.version == version)).scalar()
            try:
                self._journeys[version] = Journey.model_validate(definition) if definition is not None else None
            except ValueError:
                self._journeys[version] = None
        return self._journeys[version]

    def _move(self, enrollment: Any, old: Journey | None, target: Journey, report: MigrationReport) -> None:
        conn = self.conn
        rows = conn.execute(select(Touchpoint.id, Touchpoint.step, Touchpoint.occurrence, Touchpoint.status,
                                   Touchpoint.planned_at, Touchpoint.due_at, Touchpoint.idempotency_key,
                                   Touchpoint.event_id).where(Touchpoint.enrollment_id == enrollment.id)).all()
        known = {r.idempotency_key for r in rows}
        pending = {r.idempotency_key: r for r in rows if r.status == "scheduled"}
        latest: dict[tuple[str, str], tuple[int, str]] = {}  # an anchored occurrence's latest re-planned revision
        anchored = {s.id for s in target.steps if s.anchor}  # only their occurrences carry ``@<revision>``
        for r in rows:
            if r.step not in anchored:
                continue
            base, rev = revision(r.occurrence)
            if latest.get((r.step, base), (-1, ""))[0] < rev:
                latest[(r.step, base)] = (rev, r.idempotency_key)
        old_steps = {s.id: s for s in old.steps} if old is not None else {}
        new_steps = {s.id: s for s in target.steps}
        anchors = anchor_values(enrollment.anchors or {}, enrollment.enrolled_at)
        kept: set[str] = set()
        kept, given_back = horizon_migrated(conn, enrollment.id, pending, old_steps, new_steps)  # issue 19
        for key, step_id in given_back.items():
            pending.pop(key)
            report.count(step_id, "retimed")
        replan: list[Planned] = []
        for step in target.steps:  # anchored occurrences of the target version
            for occurrence, when in occurrences(step, anchors, enrollment.tz):
                key = latest.get((step.id, occurrence), (0, idempotency_key(enrollment.id, step.id, occurrence)))[1]
                row = pending.get(key)
                if row is not None and old_steps.get(step.id) == step and row.planned_at == when:
                    kept.add(key)
                elif row is not None or key not in known:
                    replan.append(Planned(step=step, occurrence=row.occurrence if row is not None else occurrence,
                                          planned_at=when, due_at=when, anchor_at=anchors[step.anchor]))
        for key, row in pending.items():  # event- and outcome-triggered touchpoints
            step, before = new_steps.get(row.step), old_steps.get(row.step)
            if step is None or step.anchor is not None or key in kept:
                continue
            if before == step:
                kept.add(key)
            elif before is not None and type(before.trigger) is type(step.trigger) \
                    and isinstance(step.trigger, (OnEvent, AfterStep)):
                when = row.planned_at - before.trigger.delay + step.trigger.delay
                replan.append(Planned(step=step, occurrence=row.occurrence, planned_at=when, due_at=when,
                                      event_id=row.event_id))
        moving = [pending[k].id for k in pending if k not in kept]
        load = DayLoad(enrollment.tz, day_loads(conn, [enrollment.patient_id], self.now - timedelta(days=1),
                                                exclude_ids=moving).get(enrollment.patient_id, ()))
        decided = apply_policy(replan, tz_name=enrollment.tz, now=self.now, policy=self.policy, load=load)
        updates, fresh, placed = [], [], set(kept)
        for p in decided:
            key = idempotency_key(enrollment.id, p.step.id, p.occurrence)
            row = pending.get(key)
            if row is None:
                if p.status == "scheduled":  # a new occurrence whose time has passed is not added
                    fresh.append(p)
                    report.count(p.step.id, "added")
                continue
            placed.add(key)
            updates.append(_retimed(row.id, p, self.now))
            report.count(p.step.id, "retimed" if p.status == "scheduled" else "dropped")
        for key in kept:
            report.count(pending[key].step, "kept")
        dropped = [row for key, row in pending.items() if key not in placed]
        for row in dropped:
            report.count(row.step, "dropped")
        if updates:
            # status still scheduled: a row a dispatcher claimed meanwhile is in flight and stays as it is
            conn.execute(update(Touchpoint).where(Touchpoint.id == bindparam("b_id"),
                                                  Touchpoint.status == "scheduled").values(
                due_at=bindparam("b_due"), planned_at=bindparam("b_planned"), status=bindparam("b_status"),
                reason=bindparam("b_reason"), stage=bindparam("b_stage"), category=bindparam("b_category"),
                action=bindparam("b_action"), anchor=bindparam("b_anchor"), updated_at=bindparam("b_now")), updates)
        if dropped:
            conn.execute(update(Touchpoint).where(Touchpoint.id.in_([r.id for r in dropped]),
                                                  Touchpoint.status == "scheduled").values(
                status="cancelled", reason=f"cancelled: migrated to {target.name}@{target.version}",
                updated_at=self.now))
        insert_touchpoints(conn, touchpoint_rows(enrollment.id, enrollment.patient_id, target, fresh, self.now))


def _retimed(row_id: int, p: Planned, now: datetime) -> dict[str, Any]:
    step: Step = p.step
    return dict(b_id=row_id, b_due=p.due_at, b_planned=p.planned_at, b_status=p.status, b_reason=p.reason,
                b_stage=step.stage.value, b_category=step.category.value, b_action=step.action.kind,
                b_anchor=step.anchor, b_now=now)
