"""``carepath report outcomes JOURNEY``: what each arm of a journey's experiments achieved, with intervals.

The population is the patients assigned to an arm (``experiment_assignments``, issue 23) within the
report's days; each patient's outcomes count from the moment of assignment. Per arm: the share of
patients with a delivered message of the journey, a click, a reply, a survey answer, a follow-up
visit (``visit.checked_in`` within 90 days), a re-visit within 30 and 90 days (HIS visit events:
``appointment.booked``, ``visit.checked_in``, ``encounter.admitted``/``discharged``; only patients
whose window has passed count), check-in participation and, for a check-in step that declares a
clinical ``target``, the share of its check-ins' patients whose latest value is on target — each with its
count, denominator and a 95 % Wilson interval; mean satisfaction (t interval) and NPS of the survey answers. Each variant is
compared with the holdout (or, without one, with the first arm) as a difference of proportions with
a 95 % Newcomb (Wilson-based) interval. Statistics come from ``statsmodels``; figures are aggregate.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable

from sqlalchemy import Connection, select

from carepath.definition.experiment_checks import HOLDOUT
from carepath.definition.measures import BLOOD_PRESSURE
from carepath.definition.model import Checkin, Journey, Threshold
from carepath.store.statements import chunks
from carepath.store.schema import Event, JourneyVersion, SurveyResponse, Touchpoint
from carepath.store.schema_checkins import CheckinRow
from carepath.store.schema_experiments import ExperimentAssignment

#: events that show the patient came back to the hospital
VISIT_EVENTS = ("appointment.booked", "visit.checked_in", "encounter.admitted", "encounter.discharged")
FOLLOW_UP_EVENT = "visit.checked_in"
#: the proportions reported, in order: (key, label)
MEASURES = (("delivered", "delivery"), ("clicked", "click"), ("replied", "reply"), ("surveyed", "survey response"),
            ("follow_up", "follow-up visit within 90 days"), ("revisit_30d", "re-visit within 30 days"),
            ("revisit_90d", "re-visit within 90 days"), ("checked_in", "check-in participation"))
#: fewer patients than this in a group, or fewer than MIN_EVENTS with (or without) the outcome: too few to conclude
MIN_GROUP = 30
MIN_EVENTS = 5


@dataclass
class Proportion:
    """``count`` of ``n`` patients, as a percentage with its 95 % Wilson interval."""

    count: int
    n: int
    rate: float | None = None
    low: float | None = None
    high: float | None = None


@dataclass
class Mean:
    """A mean of ``n`` values with its 95 % t interval."""

    n: int
    mean: float | None = None
    low: float | None = None
    high: float | None = None


@dataclass
class Arm:
    name: str
    patients: int
    rates: dict[str, Proportion] = field(default_factory=dict)
    satisfaction: Mean = field(default_factory=lambda: Mean(0))
    nps: float | None = None
    nps_answers: int = 0


@dataclass
class Comparison:
    """A variant against the reference arm on one measure: the difference in points and its 95 % interval."""

    measure: str
    arm: str
    versus: str
    difference: float
    low: float
    high: float
    shown: bool  # the interval excludes zero
    too_small: bool
    text: str


@dataclass
class ExperimentOutcomes:
    experiment: str
    arms: list[Arm]
    comparisons: list[Comparison]
    warnings: list[str]


@dataclass
class OutcomesReport:
    journey: str
    since: datetime
    until: datetime
    experiments: list[ExperimentOutcomes]
    #: every measure's label, the fixed ones and one per check-in target (``on_target:<step>``), in order
    labels: dict[str, str] = field(default_factory=lambda: dict(MEASURES))

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["since"], data["until"] = self.since.isoformat(), self.until.isoformat()
        return data


def wilson(count: int, n: int) -> Proportion:
    """``count`` of ``n`` with its 95 % Wilson score interval, in percent."""
    from statsmodels.stats.proportion import proportion_confint

    if n == 0:
        return Proportion(count, n)
    low, high = (float(x) for x in proportion_confint(count, n, alpha=0.05, method="wilson"))
    return Proportion(count, n, round(100 * count / n, 1), round(100 * low, 1), round(100 * high, 1))


def difference(a: Proportion, b: Proportion) -> tuple[float, float, float]:
    """``a - b`` in points with its 95 % Newcomb (hybrid Wilson score) interval."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    low, high = confint_proportions_2indep(a.count, a.n, b.count, b.n, method="newcomb", compare="diff", alpha=0.05)
    return 100 * (a.count / a.n - b.count / b.n), 100 * float(low), 100 * float(high)


def mean_interval(values: list[float]) -> Mean:
    """The mean of ``values`` with its 95 % t interval (none below two values)."""
    if not values:
        return Mean(0)
    if len(values) < 2:
        return Mean(1, round(values[0], 2))
    from statsmodels.stats.weightstats import DescrStatsW

    stats = DescrStatsW(values)
    low, high = stats.tconfint_mean(alpha=0.05)
    return Mean(len(values), round(float(stats.mean), 2), round(float(low), 2), round(float(high), 2))


def nps_of(scores: list[int]) -> float | None:
    """Net promoter score: promoters (9-10) minus detractors (0-6), in points."""
    if not scores:
        return None
    return round(100 * (sum(s >= 9 for s in scores) - sum(s <= 6 for s in scores)) / len(scores), 1)


def _too_small(a: Proportion, b: Proportion) -> bool:
    return min(a.n, b.n) < MIN_GROUP or any(min(p.count, p.n - p.count) < MIN_EVENTS for p in (a, b))


def _points(value: float) -> str:
    return f"{value:+.0f}"


def compare(measure: str, label: str, arm: str, a: Proportion, versus: str, b: Proportion) -> Comparison:
    """One comparison with its plain-language line."""
    diff, low, high = difference(a, b)
    shown = low > 0 or high < 0
    small = _too_small(a, b)
    text = (f"{arm}: {label} {a.rate:.0f} % vs {versus} {b.rate:.0f} %, {_points(diff)} points, "
            f"95 % CI {_points(low)} to {_points(high)}")
    if not shown:
        text += " — no difference shown"
    if small:
        text += f" (too few patients to conclude: {a.n} and {b.n})"
    return Comparison(measure, arm, versus, round(diff, 1), round(low, 1), round(high, 1), shown, small, text)


def _by_patient(conn: Connection, query, pids: list[int]) -> dict[int, list]:
    found: dict[int, list] = defaultdict(list)
    for part in chunks(pids):
        for pid, *rest in conn.execute(query(part)):
            found[pid].append(rest[0] if len(rest) == 1 else tuple(rest))
    return found


def _aware(value: datetime) -> datetime:
    from datetime import timezone

    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Target:
    """A check-in step's clinical target: its thresholds, all of which hold for a value on target."""

    step: str
    thresholds: tuple[Threshold, ...]

    @property
    def key(self) -> str:
        return f"on_target:{self.step}"

    @property
    def label(self) -> str:
        return f"on target at the latest check-in of {self.step} ({' and '.join(t.text() for t in self.thresholds)})"

    def met(self, values: dict[str, Any]) -> bool | None:
        """Whether a check-in's values are on target; ``None`` when a value the target names is missing."""
        numbers = {t.measure: values.get(t.measure) for t in self.thresholds}
        if any(not isinstance(v, (int, float)) for v in numbers.values()):
            return None
        return all(t.holds(float(numbers[t.measure])) for t in self.thresholds)


def journey_targets(conn: Connection, journey: str) -> list[Target]:
    """The clinical targets of ``journey``'s check-in steps, as its newest stored version declares them."""
    definition = conn.execute(select(JourneyVersion.definition).where(JourneyVersion.journey == journey)
                              .order_by(JourneyVersion.created_at.desc(), JourneyVersion.id.desc()).limit(1)).scalar()
    if not definition:
        return []
    steps = Journey.model_validate(definition).steps
    return [Target(s.id, tuple(s.action.target)) for s in steps if isinstance(s.action, Checkin) and s.action.target]


def _checkin_values(conn: Connection, cipher: Any, journey: str, pids: list[int]) -> dict[int, list]:
    """Per patient, ``(time, step, values by measure)`` of each recorded check-in of ``journey`` with a value
    (decrypted: ``6.1``, or ``150/95`` for both numbers of a blood pressure, in the measures' own units)."""
    found = _by_patient(conn, lambda part: select(CheckinRow.patient_id, CheckinRow.at, CheckinRow.step,
                                                  CheckinRow.measure, CheckinRow.value_enc).where(
        CheckinRow.patient_id.in_(part), CheckinRow.journey == journey, CheckinRow.status == "recorded",
        CheckinRow.value_enc.is_not(None)), pids)
    out: dict[int, list] = {}
    for pid, rows in found.items():
        for when, step, measure, token in rows:
            names = ["systolic_bp", "diastolic_bp"] if measure == BLOOD_PRESSURE else [measure]
            try:
                numbers = [float(part) for part in (cipher.decrypt(token) or "").split("/")]
            except ValueError:
                continue
            if len(numbers) == len(names):
                out.setdefault(pid, []).append((_aware(when), step, dict(zip(names, numbers))))
    return out


def outcomes_report(conn: Connection, journey: str, since: datetime, until: datetime,
                    now: datetime, cipher: Any = None) -> OutcomesReport:
    """Outcomes per arm of each experiment of ``journey`` for the patients assigned in ``[since, until)``;
    ``cipher`` (the store's) reads check-in values for clinical targets (without it, targets are left out)."""
    rows = conn.execute(select(ExperimentAssignment.experiment, ExperimentAssignment.patient_id,
                               ExperimentAssignment.arm, ExperimentAssignment.assigned_at)
                        .where(ExperimentAssignment.journey == journey, ExperimentAssignment.assigned_at >= since,
                               ExperimentAssignment.assigned_at < until)).all()
    pids = sorted({r.patient_id for r in rows})
    events = _by_patient(conn, lambda part: select(Event.patient_id, Event.type, Event.occurred_at).where(
        Event.patient_id.in_(part), Event.status == "applied",
        Event.type.in_(("message.clicked", "message.replied", *VISIT_EVENTS))), pids)
    delivered = _by_patient(conn, lambda part: select(Touchpoint.patient_id, Touchpoint.updated_at).where(
        Touchpoint.patient_id.in_(part), Touchpoint.journey == journey, Touchpoint.status == "delivered"), pids)
    surveys = _by_patient(conn, lambda part: select(SurveyResponse.patient_id, SurveyResponse.received_at,
                                                    SurveyResponse.satisfaction, SurveyResponse.nps).where(
        SurveyResponse.patient_id.in_(part), SurveyResponse.journey == journey), pids)
    checkins = _by_patient(conn, lambda part: select(CheckinRow.patient_id, CheckinRow.at).where(
        CheckinRow.patient_id.in_(part), CheckinRow.journey == journey, CheckinRow.status == "recorded"), pids)
    targets = journey_targets(conn, journey) if cipher is not None else []
    values = _checkin_values(conn, cipher, journey, pids) if targets else {}
    by_experiment: dict[str, list] = defaultdict(list)
    for r in rows:
        by_experiment[r.experiment].append(r)
    now = _aware(now)
    labels = {**dict(MEASURES), **{t.key: t.label for t in targets}}
    return OutcomesReport(journey, since, until, [
        _experiment(name, members, events, delivered, surveys, checkins, now, targets, values)
        for name, members in sorted(by_experiment.items())], labels)


def _on_target(target: Target, checkins: list, since: datetime) -> bool | None:
    """Whether the patient's latest check-in of ``target.step`` since ``since`` is on target (``None``: none)."""
    mine = sorted((when, vals) for when, step, vals in checkins if step == target.step and when >= since)
    return target.met(mine[-1][1]) if mine else None


def _experiment(name: str, members: list, events: dict, delivered: dict, surveys: dict, checkins: dict,
                now: datetime, targets: list[Target] = (), values: dict | None = None) -> ExperimentOutcomes:
    counts: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    satisfaction: dict[str, list[float]] = defaultdict(list)
    nps: dict[str, list[int]] = defaultdict(list)
    sizes: dict[str, int] = defaultdict(int)
    any_checkins = False
    for m in members:
        at, arm = _aware(m.assigned_at), m.arm
        sizes[arm] += 1
        seen = [(t, _aware(when)) for t, when in events.get(m.patient_id, ()) if _aware(when) >= at]
        answers = [(s, n) for when, s, n in surveys.get(m.patient_id, ()) if _aware(when) >= at]
        mine = [w for w in checkins.get(m.patient_id, ()) if _aware(w) >= at]
        any_checkins = any_checkins or bool(checkins.get(m.patient_id))

        def within(days: int, types: Iterable[str]) -> bool:
            return any(t in types and when < at + timedelta(days=days) for t, when in seen)

        outcome = {"delivered": any(_aware(w) >= at for w in delivered.get(m.patient_id, ())),
                   "clicked": any(t == "message.clicked" for t, _ in seen),
                   "replied": any(t == "message.replied" for t, _ in seen),
                   "surveyed": bool(answers), "checked_in": bool(mine)}
        for days, key in ((30, "revisit_30d"), (90, "revisit_90d"), (90, "follow_up")):
            if at + timedelta(days=days) <= now:  # only patients whose window has passed
                outcome[key] = within(days, (FOLLOW_UP_EVENT,) if key == "follow_up" else VISIT_EVENTS)
        for target in targets:  # among the patients with a check-in of the step since assignment
            met = _on_target(target, (values or {}).get(m.patient_id, ()), at)
            if met is not None:
                outcome[target.key] = met
        for key, value in outcome.items():
            counts[arm][key][0] += int(value)
            counts[arm][key][1] += 1
        satisfaction[arm] += [s for s, _ in answers if s is not None]
        nps[arm] += [n for _, n in answers if n is not None]
    measures = [(k, label) for k, label in MEASURES if k != "checked_in" or any_checkins]
    measures += [(t.key, t.label) for t in targets if any(counts[a][t.key][1] for a in sizes)]
    arms = []
    for arm in sorted(sizes, key=lambda a: (a == HOLDOUT, a)):
        arms.append(Arm(arm, sizes[arm], {k: wilson(*counts[arm][k]) for k, _ in measures},
                        mean_interval(satisfaction[arm]), nps_of(nps[arm]), len(nps[arm])))
    reference = next((a for a in arms if a.name == HOLDOUT), arms[0] if arms else None)
    comparisons, warnings = [], []
    for arm in arms:
        if arm is reference:
            continue
        for key, label in measures:
            a, b = arm.rates[key], reference.rates[key]
            if a.n and b.n and (a.count or b.count):  # nothing happened in either group: nothing to compare
                comparisons.append(compare(key, label, arm.name, a, reference.name, b))
    for arm in arms:
        if arm.patients < MIN_GROUP:
            warnings.append(f"{arm.name}: only {arm.patients} patients — too few to conclude (at least {MIN_GROUP} "
                            f"per group)")
    if len(arms) < 2:
        warnings.append("only one group: nothing to compare")
    return ExperimentOutcomes(name, arms, comparisons, warnings)
