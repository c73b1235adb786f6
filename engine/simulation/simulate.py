"""``carepath simulate``: journeys on a synthetic population over virtual days, without Prefect.

The same engine as production — ingest, planner, policy (quiet hours, caps, consent), the
dispatcher and the daily maintenance jobs that move journeys on — runs against a scratch SQLite
database in a temporary folder (never the configured one), with sandbox ``outbox`` channels in
place of every channel the journeys name. The virtual clock moves in 30-minute ticks: the HIS
events of the tick are ingested, everything due is dispatched, and the patients' replies, clicks
and survey answers to what was just sent are scheduled (see :mod:`carepath.simulation.population`).
Everything random is drawn from the seed, so a seed gives the same figures every run.
"""

from __future__ import annotations

import hashlib
import heapq
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Callable, Iterable

from sqlalchemy import select

from carepath.connectors.outbox import OutboxChannel, OutboxConfig
from carepath.definition.events import EventIn
from carepath.definition.model import Journey
from carepath.runtime.clock import VirtualClock
from carepath.simulation.costs import Prices
from carepath.simulation.figures import collect_figures
from carepath.simulation.population import Population, generate_population
from carepath.store.schema import OutboxMessage, Touchpoint

TICK = timedelta(minutes=30)
#: maintenance jobs that change what journeys do, run once a virtual day (the others keep the store tidy)
DAILY_JOBS = ("task_sla", "delivery_fallback", "segments", "idle", "horizon", "conversations")
ADDRESS_KINDS = {"wechat": "openid", "sms": "phone"}
DEFAULT_START = date(2026, 3, 2)  # a Monday; fixed so that a seed gives the same figures on any day


class SimulationError(ValueError):
    """A simulation that cannot run as asked (an unknown journey, a bad file)."""


def journey_channels(journeys: Iterable[Journey]) -> list[str]:
    """Every channel a step of these journeys may send through, in a stable order."""
    names: set[str] = set()
    for journey in journeys:
        for step in journey.steps:
            names.update(getattr(step.action, "via", None) or [])
    return sorted(names)


def sandbox_channels(names: Iterable[str]) -> dict[str, OutboxChannel]:
    """An outbox channel per name: WeChat-like names need an openid, SMS-like ones a phone."""
    out = {}
    for name in names:
        kind = next((k for fragment, k in ADDRESS_KINDS.items() if fragment in name.lower()), "none")
        out[name] = OutboxChannel(name, OutboxConfig(address=kind))
    return out


def _fraction(seed: int, key: str, what: str) -> float:
    digest = hashlib.blake2b(f"{seed}|{what}|{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class _Reactions:
    """Patients' answers to the messages just sent, as events scheduled on a heap by time."""

    engine: object
    population: Population
    seed: int
    mrns: dict[int, str]
    surveys: dict[tuple[str, str], str]  # (journey, step) -> survey name
    last_outbox_id: int = 0
    counter: int = 0

    def __post_init__(self) -> None:
        self.heap: list[tuple[datetime, int, EventIn]] = []

    def schedule(self, now: datetime) -> None:
        with self.engine.db.connect() as conn:  # type: ignore[attr-defined]
            rows = conn.execute(select(OutboxMessage.id, OutboxMessage.idempotency_key, OutboxMessage.channel,
                                       OutboxMessage.patient_id).where(OutboxMessage.id > self.last_outbox_id)
                                .order_by(OutboxMessage.id)).all()
            if not rows:
                return
            self.last_outbox_id = rows[-1][0]
            keys = {row[1]: row[1].rsplit(":", 1)[0] for row in rows}
            tps = {k: (tid, journey, step) for tid, k, journey, step in conn.execute(
                select(Touchpoint.id, Touchpoint.idempotency_key, Touchpoint.journey, Touchpoint.step)
                .where(Touchpoint.idempotency_key.in_(set(keys.values()))))}
        for _, key, channel, patient_id in rows:
            tp = tps.get(keys[key])
            if tp is None or patient_id not in self.mrns:  # a copy to a family member: they do not answer here
                continue
            self._react(now, key, channel, self.mrns[patient_id], tp)

    def _react(self, now: datetime, key: str, channel: str, mrn: str, tp: tuple[int, str, str]) -> None:
        b = self.population.behaviour
        low, high = b.delay_hours
        later = now + timedelta(hours=low + (high - low) * _fraction(self.seed, key, "delay"))
        survey = self.surveys.get((tp[1], tp[2]))
        if survey is not None:
            if _fraction(self.seed, key, "answer") < b.survey_answer:
                detractor = _fraction(self.seed, key, "nps") < b.detractor
                nps = int(_fraction(self.seed, key, "score") * (7 if detractor else 4)) + (0 if detractor else 7)
                category = "detractor" if nps <= 6 else "passive" if nps <= 8 else "promoter"
                flags = ["simulated_red_flag"] if _fraction(self.seed, key, "flag") < b.red_flag else []
                self._add(later, "survey.completed", mrn, survey=survey, nps=nps, nps_category=category,
                          satisfaction=round(1 + nps * 0.4, 1), red_flags=flags)
            return
        if _fraction(self.seed, key, "reply") < b.reply:
            self._add(later, "message.replied", mrn, text="好多了，谢谢", channel=channel)
        if _fraction(self.seed, key, "click") < b.click:
            self._add(later, "message.clicked", mrn, touchpoint_id=tp[0], journey=tp[1], step=tp[2])

    def _add(self, at: datetime, kind: str, mrn: str, **payload: object) -> None:
        self.counter += 1
        event = EventIn(type=kind, source="simulate-patient", source_id=f"{kind}:{self.counter}", patient_mrn=mrn,
                        occurred_at=at, payload=payload)
        heapq.heappush(self.heap, (at, self.counter, event))


def run_simulation(journeys: list[Journey], *, patients: int, days: int, seed: int,
                   population: Population | None = None, prices: Prices | None = None,
                   start: date = DEFAULT_START, keep: Path | None = None,
                   progress: Callable[[int, int], None] | None = None) -> dict:
    """Run ``journeys`` for ``patients`` synthetic patients over ``days`` virtual days; the figures as a dict.

    ``keep``: leave the scratch database at this path (a new SQLite file) instead of deleting it.
    ``progress`` is called with (day done, days) after each virtual day.
    """
    from carepath.config import CarepathConfig
    from carepath.engine import Engine
    from carepath.runtime.maintenance import jobs
    from carepath.settings import Settings

    population = population or Population()
    prices = prices or Prices()
    synthetic = generate_population(population, patients, days, start, seed)
    with tempfile.TemporaryDirectory(prefix="carepath-simulate-") as scratch:
        db_path = keep.resolve() if keep else Path(scratch) / "simulate.db"
        if keep and keep.exists():
            raise SimulationError(f"{keep} already exists: --keep writes a new database file")
        clock = VirtualClock(synthetic.start)
        # its own journeys, channels, configuration and key: nothing of this installation is read or written
        channels = sandbox_channels(journey_channels(journeys))
        engine = Engine(f"sqlite:///{db_path}", journeys=journeys, channels=channels, connectors={}, templates={}, clock=clock, settings=Settings(home=Path(scratch)),
                        config=CarepathConfig())
        try:
            ids = engine.upsert_patients(synthetic.patients)
            reactions = _Reactions(engine, population, seed, {pid: p.mrn for pid, p in zip(ids, synthetic.patients)},
                                   {(j.name, s.id): s.action.survey for j in journeys for s in j.steps
                                    if hasattr(s.action, "survey")})
            _run_ticks(engine, clock, synthetic.events, reactions, days, synthetic.start,
                       [job for name, job in jobs().items() if name in DAILY_JOBS], progress)
            figures = collect_figures(engine, synthetic.start, days, prices)
        finally:
            engine.close()
    figures["run"] = {"journeys": [j.name for j in journeys], "patients": patients, "days": days, "seed": seed,
                      "start": start.isoformat(), "events": len(synthetic.events),
                      "patient_events": reactions.counter}
    return figures


def _anything_due(engine, now: datetime) -> bool:  # noqa: ANN001 - an Engine
    """Whether a touchpoint is due (or a claim lapsed): an empty tick costs one indexed query, not a claim."""
    with engine.db.connect() as conn:
        return conn.execute(select(Touchpoint.id).where(Touchpoint.status.in_(("scheduled", "claimed")),
                                                        Touchpoint.due_at <= now).limit(1)).first() is not None


def _run_ticks(engine, clock: VirtualClock, events: list[EventIn], reactions: _Reactions, days: int,  # noqa: ANN001
               start: datetime, daily: list, progress: Callable[[int, int], None] | None) -> None:
    his = iter(events)
    pending = next(his, None)
    for day in range(days):
        day_start = start + timedelta(days=day)
        clock.set(day_start)
        for job in daily:
            job(engine)
        for tick in range(int(timedelta(days=1) / TICK)):
            now = day_start + tick * TICK
            sent = False
            while True:  # HIS events and patients' answers up to now, in time order
                nxt = reactions.heap[0][0] if reactions.heap else None
                if pending is not None and pending.occurred_at <= now and (nxt is None or pending.occurred_at <= nxt):
                    event, pending = pending, next(his, None)
                elif nxt is not None and nxt <= now:
                    at, _, event = heapq.heappop(reactions.heap)
                else:
                    break
                clock.set(event.occurred_at)
                sent = bool(engine.ingest(event, received_via="simulate").urgent_touchpoints) or sent
            clock.set(now)
            if _anything_due(engine, now):
                sent = engine.dispatch_due().claimed > 0 or sent
            if sent:  # only what was handed to a channel can be answered
                reactions.schedule(now)
        if progress:
            progress(day + 1, days)
    clock.set(start + timedelta(days=days))
