"""Issue 23: which arm of an experiment a patient is in, and what that arm sends.

A patient's arm is drawn once from a hash of (journey name, experiment id, patient id) — no
version in it, so a new journey version draws the same — and recorded in
``experiment_assignments`` the first time the patient reaches the step. A stored arm wins over
the hash afterwards (weights changed in a later version do not move anyone). The ``holdout``
arm receives nothing: its touchpoint is skipped with :data:`HELD_OUT` as the reason.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, tzinfo
from typing import Iterable

from sqlalchemy import Connection, select

from carepath.definition.experiment_checks import HOLDOUT

__all__ = ["ARM_TIME", "HELD_OUT", "HOLDOUT", "arm_step", "arm_wait", "as_assigned", "draw", "experiment_id",
           "experiment_journeys", "record_arms", "stored_arms", "with_experiment"]
from carepath.definition.model import Experiment, Journey, Send, Step
from carepath.store.statements import chunks
from carepath.runtime.policy import local_wall
from carepath.store.schema_experiments import ExperimentAssignment

#: the reason on a held-out touchpoint
HELD_OUT = "skipped: held out (experiment)"
#: the reason on a touchpoint waiting for its arm's time of day
ARM_TIME = "deferred: experiment arm's time"


def experiment_id(step: Step) -> str:
    """The experiment's name: its ``id``, or the step's."""
    assert step.experiment is not None
    return step.experiment.id or step.id


def draw(journey: str, experiment: str, patient_id: int, spec: Experiment) -> str:
    """The arm the hash gives ``patient_id``: ``holdout`` for the first ``spec.holdout`` of the unit
    interval, then the variants by weight (the step itself, ``control``, when there are none)."""
    digest = hashlib.sha256(f"{journey}\x1f{experiment}\x1f{patient_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2 ** 64
    if u < spec.holdout:
        return HOLDOUT
    if not spec.variants:
        return "control"
    point = (u - spec.holdout) / (1 - spec.holdout) * sum(v.weight for v in spec.variants)
    for variant in spec.variants:
        point -= variant.weight
        if point < 0:
            return variant.name
    return spec.variants[-1].name


#: memo bound: journey versions × steps × arms of a deployment fit many times over; a server that reloads its
#: journey files for weeks starts the memo again instead of keeping every old version's steps alive
_MEMO_LIMIT = 4096
_VARIANTS: dict[tuple[int, str], tuple[Step, Step]] = {}


def _remember(memo: dict, key: tuple, value: tuple) -> None:
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    memo[key] = value


def arm_step(step: Step, arm: str) -> Step:
    """``step`` as ``arm`` sends it: the variant's template and channels in place of the step's (memoized)."""
    key = (id(step), arm)
    known = _VARIANTS.get(key)
    if known is not None and known[0] is step:
        return known[1]
    variant = next((v for v in step.experiment.variants if v.name == arm), None) if step.experiment else None
    result = step
    if variant is not None and isinstance(step.action, Send) and (variant.template or variant.via):
        changes = {k: v for k, v in (("template", variant.template), ("via", variant.via)) if v}
        result = step.model_copy(update={"action": step.action.model_copy(update=changes)})
    _remember(_VARIANTS, key, (step, result))
    return result


def arm_wait(step: Step, arm: str, due: datetime, now: datetime, tz: tzinfo) -> datetime | None:
    """When ``arm`` sends at its own time of day (``variants[].at``): that time on the local day ``due`` falls
    on, if it is still ahead of ``now``; else ``None`` (send now)."""
    variant = next((v for v in step.experiment.variants if v.name == arm), None) if step.experiment else None
    if variant is None or variant.at is None:
        return None
    target = local_wall(due.astimezone(tz).date(), variant.at, tz)
    return target if target > now else None


_WITH_JOURNEY: dict[tuple[int, int], tuple[Journey, Step, Step]] = {}


def with_experiment(journey: Journey, step: Step) -> Step:
    """``step`` carrying the experiment it runs: its own, or the journey's (``Journey.experiment``) for a message
    step without one (memoized per journey version and step)."""
    if journey.experiment is None or step.experiment is not None:
        return step
    key = (id(journey), id(step))
    known = _WITH_JOURNEY.get(key)
    if known is not None and known[0] is journey and known[1] is step:
        return known[2]
    experiment = journey.experiment_of(step)
    result = step if experiment is None else step.model_copy(update={"experiment": experiment})
    _remember(_WITH_JOURNEY, key, (journey, step, result))
    return result


def as_assigned(conn: Connection, journey: Journey, step: Step, patient_id: int) -> Step:
    """``step`` as the patient's recorded arm sends it (its template and channels), or as written when the
    step has no experiment or the patient has no arm yet (for work after the send: fallback, re-sends)."""
    step = with_experiment(journey, step)
    if step.experiment is None:
        return step
    arm = stored_arms(conn, {journey.name}, [patient_id]).get((journey.name, experiment_id(step), patient_id))
    return step if arm is None or arm == HOLDOUT else arm_step(step, arm)


def experiment_journeys(journeys: Iterable[Journey]) -> set[str]:
    """Names of the journeys with an experiment on any step."""
    return {j.name for j in journeys if j.experiment is not None or any(s.experiment for s in j.steps)}


def stored_arms(conn: Connection, journeys: set[str], patient_ids: Iterable[int]) -> dict[tuple[str, str, int], str]:
    """Recorded arms of ``patient_ids`` in the experiments of ``journeys``, by (journey, experiment, patient)."""
    found: dict[tuple[str, str, int], str] = {}
    ids = list(set(patient_ids))
    if not journeys or not ids:
        return found
    for part in chunks(ids):
        rows = conn.execute(select(ExperimentAssignment.journey, ExperimentAssignment.experiment,
                                   ExperimentAssignment.patient_id, ExperimentAssignment.arm)
                            .where(ExperimentAssignment.patient_id.in_(part),
                                   ExperimentAssignment.journey.in_(sorted(journeys))))
        found.update(((j, e, p), arm) for j, e, p, arm in rows)
    return found


_INSERT = ("INSERT INTO experiment_assignments (journey, experiment, patient_id, arm, step, version, touchpoint_id, "
           "assigned_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (journey, experiment, patient_id) DO NOTHING")


def record_arms(conn: Connection, rows: list[tuple], now: datetime) -> None:
    """Record new assignments ``(journey, experiment, patient id, arm, step, version, touchpoint id)``; a row
    already there (from another worker, or a re-run of the same write) is kept."""
    from carepath.runtime.scheduling import executemany_raw

    executemany_raw(conn, _INSERT, [(*row, now) for row in rows], time_positions=(7,))
