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

from sqlalchemy import String, bindparam, event as sa_event, select

from carepath.connectors.outbox import OutboxChannel, OutboxConfig
from carepath.definition.events import EventIn
from carepath.definition.model import Journey
from carepath.runtime.clock import VirtualClock
from carepath.simulation.costs import Prices
from carepath.simulation.figures import Rows, figures_from, read_rows
from carepath.simulation.population import Population, generate_population
from carepath.store.schema import OutboxMessage, Touchpoint
from carepath.store.driver import DriverQuery
from carepath.store.sqlite_gate import reading
from carepath.store.statements import among, db_time, fetch

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
        self.sent: dict[tuple[str, str, str, str], int] = {}  # messages so far per patient, journey, step, channel

    def schedule(self, now: datetime) -> None:
        with reading(self.engine.db) as conn:  # type: ignore[attr-defined]
            rows = _SENT_SINCE.rows(conn, {"last": self.last_outbox_id})
            if not rows:
                return
            self.last_outbox_id = rows[-1][0]
            keys = {row[1]: row[1].rsplit(":", 1)[0] for row in rows}
            tps = {k: (tid, journey, step) for tid, k, journey, step in _SENT_STEPS.rows(
                conn, {"keys": sorted(set(keys.values()))})}
        for _, key, channel, patient_id in rows:
            tp = tps.get(keys[key])
            if tp is None or patient_id not in self.mrns:  # a copy to a family member: they do not answer here
                continue
            # drawn from who got what, the how-many-th time, never from database ids: a patient's answers
            # are the same whichever other patients share the database (a shard, see carepath.simulation.shards)
            mrn = self.mrns[patient_id]
            nth = self.sent[(mrn, tp[1], tp[2], channel)] = self.sent.get((mrn, tp[1], tp[2], channel), 0) + 1
            self._react(now, f"{mrn}|{tp[1]}|{tp[2]}|{channel}|{nth}", channel, mrn, tp)

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
                   progress: Callable[[int, int], None] | None = None, workers: int | None = None) -> dict:
    """Run ``journeys`` for ``patients`` synthetic patients over ``days`` virtual days; the figures as a dict.

    ``keep``: leave the scratch database at this path (a new SQLite file) instead of deleting it (one process).
    ``progress`` is called with (day done, days) after each virtual day. ``workers``: processes sharing the
    patients (default: two from :data:`~carepath.simulation.shards.SHARD_FROM` patients on, when there are
    two cores); the figures are the same for any number of them.
    """
    from carepath.simulation.shards import default_workers, run_sharded

    population = population or Population()
    prices = prices or Prices()
    job = ShardJob(journeys, population, patients, days, seed, start)
    workers = 1 if keep else (workers or default_workers(patients))
    if workers > 1:
        outcome = run_sharded(job, workers, progress)
    else:
        outcome = run_shard(job, 0, 1, keep=keep, progress=progress)
    figures = figures_from(outcome.rows, datetime.combine(start, datetime.min.time()), days, prices)
    figures["run"] = {"journeys": [j.name for j in journeys], "patients": patients, "days": days, "seed": seed,
                      "start": start.isoformat(), "events": outcome.events, "patient_events": outcome.patient_events}
    return figures


@dataclass(frozen=True)
class ShardJob:
    """What a simulation is asked, as handed to each shard's process."""

    journeys: list[Journey]
    population: Population
    patients: int
    days: int
    seed: int
    start: date


@dataclass
class ShardOutcome:
    """What a shard (or the whole run) leaves for the figures: rows, HIS events and patients' answers."""

    rows: Rows
    events: int
    patient_events: int

    def add(self, other: "ShardOutcome") -> None:
        self.rows.extend(other.rows)
        self.events += other.events
        self.patient_events += other.patient_events


def run_shard(job: ShardJob, shard: int, shards: int, *, keep: Path | None = None,
              progress: Callable[[int, int], None] | None = None) -> ShardOutcome:
    """Run the patients ``shard``, ``shard + shards``, ... of the population (all of it for one shard)."""
    from carepath.config import CarepathConfig
    from carepath.engine import Engine
    from carepath.runtime.maintenance import jobs
    from carepath.settings import Settings

    synthetic = generate_population(job.population, job.patients, job.days, job.start, job.seed)
    people, events = synthetic.patients, synthetic.events
    if shards > 1:  # patients are independent: each shard runs its own with their events
        people = people[shard::shards]
        mine = {p.mrn for p in people}
        events = [e for e in events if e.patient_mrn in mine]
    with tempfile.TemporaryDirectory(prefix="carepath-simulate-") as scratch:
        db_path = keep.resolve() if keep else Path(scratch) / "simulate.db"
        if keep and keep.exists():
            raise SimulationError(f"{keep} already exists: --keep writes a new database file")
        clock = VirtualClock(synthetic.start)
        # its own journeys, channels, configuration and key: nothing of this installation is read or written
        channels = sandbox_channels(journey_channels(job.journeys))
        engine = Engine(f"sqlite:///{db_path}", journeys=job.journeys, channels=channels, connectors={},
                        templates={}, clock=clock, settings=Settings(home=Path(scratch)), config=CarepathConfig())
        if not keep:
            _scratch_only(engine)
        try:
            ids = engine.upsert_patients(people)
            reactions = _Reactions(engine, job.population, job.seed, {pid: p.mrn for pid, p in zip(ids, people)},
                                   {(j.name, s.id): s.action.survey for j in job.journeys for s in j.steps
                                    if hasattr(s.action, "survey")})
            _run_ticks(engine, clock, events, reactions, job.days, synthetic.start,
                       [j for name, j in jobs().items() if name in DAILY_JOBS], progress)
            rows = read_rows(engine)
        finally:
            engine.close()
    return ShardOutcome(rows, len(events), reactions.counter)


def _no_sync(dbapi_conn, _record) -> None:  # noqa: ANN001 - a sqlite3 connection
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.close()


def _scratch_only(engine) -> None:  # noqa: ANN001 - an Engine
    """A scratch database that no one reads after the run and that is deleted with it: commits need not reach the
    disk (``synchronous=OFF``; production's WAL with ``synchronous=NORMAL`` is kept for ``--keep``). What is
    read and written is the same, so are the figures."""
    sa_event.listen(engine.db, "connect", _no_sync)
    engine.db.dispose()  # the connections opened so far are opened again, with it


# the simulation's own reads, once per tick or per tick that sent something: run on the driver's cursor (the scratch
# database is SQLite; see carepath.store.driver)
_DUE = "SELECT id FROM touchpoints WHERE status IN (?, ?) AND due_at <= ? LIMIT 1"
_SENT_SINCE = DriverQuery(select(OutboxMessage.id, OutboxMessage.idempotency_key, OutboxMessage.channel,
                                 OutboxMessage.patient_id).where(OutboxMessage.id > bindparam("last"))
                          .order_by(OutboxMessage.id))
_SENT_STEPS = DriverQuery(select(Touchpoint.id, Touchpoint.idempotency_key, Touchpoint.journey, Touchpoint.step).where(
    among(Touchpoint.idempotency_key, "keys", False, String)))


def _anything_due(engine, now: datetime) -> bool:  # noqa: ANN001 - an Engine
    """Whether a touchpoint is due (or a claim lapsed): an empty tick costs one indexed query, not a claim."""
    with reading(engine.db) as conn:  # no write lock taken for a look
        return bool(fetch(conn, _DUE, ("scheduled", "claimed", db_time(conn, now))))


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
            batch: list[EventIn] = []
            while True:  # HIS events and patients' answers up to now, in time order
                nxt = reactions.heap[0][0] if reactions.heap else None
                if pending is not None and pending.occurred_at <= now and (nxt is None or pending.occurred_at <= nxt):
                    event, pending = pending, next(his, None)
                elif nxt is not None and nxt <= now:
                    at, _, event = heapq.heappop(reactions.heap)
                else:
                    break
                batch.append(event)
            # one transaction for the tick's events, each applied at its own time
            # (without a savepoint per event: a synthetic event the engine refuses is a bug of the simulation, and
            # raises, ending the run)
            outcomes = engine.ingest_many(batch, received_via="simulate", before=lambda ev: clock.set(ev.occurred_at),
                                          isolated=False)
            sent = any(outcome.urgent_touchpoints for outcome in outcomes)
            clock.set(now)
            if _anything_due(engine, now):
                sent = engine.dispatch_due().claimed > 0 or sent
            if sent:  # only what was handed to a channel can be answered
                reactions.schedule(now)
        if progress:
            progress(day + 1, days)
    clock.set(start + timedelta(days=days))
