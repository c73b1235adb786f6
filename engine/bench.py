"""``carepath bench``: planning and dispatch rates, against the naive one-task-per-touchpoint way.

Each (size, database) run happens in a fresh process so that its peak RSS is
its own. Dispatch sweeps a virtual clock hour by hour over the journey's
horizon, so quiet hours and daily caps apply as in production.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import resource
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time as dtime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

BENCH_JOURNEY = "outpatient-visit"
CHUNK = 5000
BOOKING = {"department": "内分泌科", "fasting": False}  # what the booking event would have carried


@dataclass
class RunFigures:
    patients: int
    touchpoints: int
    plan_per_s: float
    dispatch_per_s: float
    dispatched: int
    peak_rss_mib: float


def _journey():
    from carepath.definition.journey_files import load_journey_file
    from carepath.journeys import HERE

    return load_journey_file(HERE / f"{BENCH_JOURNEY}.yaml")


def _channels():
    from carepath.connectors.outbox import OutboxChannel, OutboxConfig

    return {"wechat": OutboxChannel("wechat", OutboxConfig(address="openid")),
            "sms": OutboxChannel("sms", OutboxConfig(address="phone"))}


def _engine(url: str, home: Path, clock):
    from carepath.engine import Engine
    from carepath.settings import Settings

    return Engine(url, journeys=[_journey()], channels=_channels(), templates={}, clock=clock,
                  settings=Settings(home=home))


def _patients(n: int, first: int = 0):
    """``n`` distinct synthetic patients numbered from ``first`` (MRNs never repeat across calls)."""
    from carepath.definition.events import PatientIn

    rng = random.Random(first)
    return [PatientIn(mrn=f"B{i}", name="测试患者", phone=f"13{rng.randrange(10**9):09d}",
                      openid=f"oBENCH{i:08d}" if i % 3 else None, birth_date=date(1950 + i % 60, 1 + i % 12, 1),
                      conditions=["E11.9"] if i % 4 == 0 else []) for i in range(first, first + n)]


def _one_run(size: int, url: str, home: str) -> RunFigures:
    """Plan and dispatch ``size`` enrollments on one database (runs in a child process)."""
    from zoneinfo import ZoneInfo

    from carepath.runtime.clock import VirtualClock

    tz = ZoneInfo("Asia/Shanghai")
    start = datetime(2026, 6, 1, 0, 0, tzinfo=tz)
    clock = VirtualClock(start)
    engine = _engine(url, Path(home), clock)
    rng = random.Random(size)
    ids: list[int] = []
    for i in range(0, size, CHUNK):  # distinct patients: the cap and the indexes see real sizes
        ids += engine.upsert_patients(_patients(min(CHUNK, size - i), first=i))
    items = []
    for pid in ids:
        appt = datetime.combine(date(2026, 6, 3) + timedelta(days=rng.randrange(0, 10)),
                                dtime(8 + rng.randrange(0, 9), rng.choice([0, 15, 30, 45])), tzinfo=tz)
        items.append((pid, {"appointment": appt, "visit_end": appt + timedelta(hours=1)}))
    t0 = time.perf_counter()
    touchpoints = 0
    for i in range(0, len(items), CHUNK):
        touchpoints += engine.enroll_many(BENCH_JOURNEY, items[i:i + CHUNK], context=BOOKING)
    plan_s = time.perf_counter() - t0
    dispatched = 0
    t0 = time.perf_counter()
    end = start + timedelta(days=50)
    while clock.now() < end:
        clock.advance(timedelta(hours=1))
        dispatched += engine.dispatch_due(batch=1000).claimed
    dispatch_s = time.perf_counter() - t0
    engine.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return RunFigures(size, touchpoints, touchpoints / plan_s, dispatched / dispatch_s, dispatched, rss)


def _in_child(size: int, url: str, home: str) -> RunFigures:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_one_run, (size, url, home))


def _scratch_postgres(server_url: str) -> tuple[str, callable] | None:
    """Create a scratch database on the server; returns its URL and a dropper, or None if unreachable."""
    from sqlalchemy import create_engine, text

    name = f"carepath_bench_{uuid.uuid4().hex[:8]}"
    url = server_url.replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception:
        return None
    base = server_url.rsplit("/", 1)[0]

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return f"{base}/{name}", drop


def naive_prefect_rate(sample: int, home: Path) -> float:
    """Touchpoints per second when each one is its own Prefect task run (the way not to do it)."""
    from zoneinfo import ZoneInfo

    from carepath.runtime.clock import VirtualClock
    from carepath.flows import ephemeral_defaults, quiet_ephemeral_shutdown

    ephemeral_defaults()
    from prefect import flow, task

    tz = ZoneInfo("Asia/Shanghai")
    clock = VirtualClock(datetime(2026, 6, 1, 10, 0, tzinfo=tz))
    engine = _engine(f"sqlite:///{home / 'naive.db'}", home, clock)
    ids = engine.upsert_patients(_patients(sample))
    appt = datetime(2026, 6, 3, 10, 0, tzinfo=tz)
    engine.enroll_many(BENCH_JOURNEY, [(pid, {"appointment": appt, "visit_end": appt}) for pid in ids], context=BOOKING)
    clock.set(datetime(2026, 6, 2, 19, 0, tzinfo=tz))  # after the preparation guides fall due
    from sqlalchemy import select

    from carepath.store.schema import Touchpoint

    with engine.db.connect() as conn:
        due = list(conn.execute(select(Touchpoint.id).where(Touchpoint.status == "scheduled",
                                                            Touchpoint.due_at <= clock.now()).limit(sample)).scalars())

    @task(cache_policy=None)
    def one(tp_id: int) -> int:
        return engine.dispatcher.run_batch(ids=[tp_id], limit=1).claimed

    @flow(name="naive-one-task-per-touchpoint")
    def naive(tp_ids: list[int]) -> int:
        return sum(one(t) for t in tp_ids)

    naive([])  # pay the ephemeral server start-up outside the measurement
    quiet_ephemeral_shutdown()
    t0 = time.perf_counter()
    done = naive(due)
    rate = done / (time.perf_counter() - t0)
    engine.close()
    return rate


def run_bench(sizes: list[int], postgres: str | None, naive_sample: int, as_json: bool, console: Console) -> dict:
    """Run every size on SQLite (and PostgreSQL when reachable) plus the naive sample; print the figures."""
    out_sizes = []
    with tempfile.TemporaryDirectory(prefix="carepath-bench-") as tmp:
        home = Path(tmp)
        for size in sizes:
            entry = {"patients": size, "touchpoints": 0, "plan_per_s": {}, "dispatch_per_s": {}, "peak_rss_mib": {}}
            targets = [("sqlite", f"sqlite:///{home / f'bench-{size}.db'}", None)]
            scratch = _scratch_postgres(postgres) if postgres else None
            if scratch:
                targets.append(("postgresql", scratch[0], scratch[1]))
            elif postgres and not as_json:
                console.print(f"PostgreSQL at {postgres} not reachable: SQLite only", style="yellow", markup=False)
            for name, url, drop in targets:
                if not as_json:
                    console.print(f"{size} patients on {name}…")
                try:
                    fig = _in_child(size, url, str(home))
                finally:
                    if drop:
                        drop()
                entry["touchpoints"] = fig.touchpoints
                entry["plan_per_s"][name] = round(fig.plan_per_s)
                entry["dispatch_per_s"][name] = round(fig.dispatch_per_s)
                entry["peak_rss_mib"][name] = round(fig.peak_rss_mib, 1)
            out_sizes.append(entry)
        if not as_json:
            console.print(f"naive Prefect sample ({naive_sample} touchpoints, one task each)…")
        naive = naive_prefect_rate(naive_sample, home)
        if not as_json:
            console.print(f"portrait updates for {PORTRAIT_EVENTS:,} events…")
        portrait_s = portrait_update_seconds(home)  # issue 20
    biggest = max(out_sizes, key=lambda e: e["patients"])
    result = {"sizes": out_sizes, "naive_prefect_per_s": round(naive, 2),
              "ratio_vs_naive": round(biggest["dispatch_per_s"]["sqlite"] / naive, 1) if naive else None,
              "portrait_updates_100k_events_s": round(portrait_s, 1)}
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        table = Table(title="carepath bench")
        for col in ["patients", "touchpoints", "database", "plan/s", "dispatch/s", "peak RSS MiB"]:
            table.add_column(col, justify="right")
        for e in out_sizes:
            for db in e["plan_per_s"]:
                table.add_row(str(e["patients"]), str(e["touchpoints"]), db, str(e["plan_per_s"][db]),
                              str(e["dispatch_per_s"][db]), str(e["peak_rss_mib"][db]))
        console.print(table)
        console.print(f"naive one-task-per-touchpoint: {result['naive_prefect_per_s']}/s; "
                      f"ratio at {biggest['patients']} on SQLite: {result['ratio_vs_naive']}×")
        console.print(f"portrait updates for {PORTRAIT_EVENTS:,} events (SQLite): {portrait_s:.1f} s")
    return result


# ------------------------------------------------------------------ portrait (issue 20)

PORTRAIT_EVENTS = 100_000
_PORTRAIT_MIX = (("message.replied", {"text": "好的"}), ("message.replied", {"text": "收到"}),
                 ("message.clicked", {"touchpoint_id": 1, "link": 1}), ("visit.checked_in", {"department": "内科"}),
                 ("survey.completed", {"survey": "nps", "nps": 9, "nps_category": "promoter", "satisfaction": 4.0,
                                       "red_flags": []}),
                 ("report.ready", {"report": "血常规"}), ("appointment.booked", {"start": "2026-06-09T09:00:00+08:00"}))


def portrait_update_seconds(home: Path, events: int = PORTRAIT_EVENTS, patients: int = 10_000,
                            per_transaction: int = 1000) -> float:
    """Seconds to apply ``events`` mixed events to the portraits of ``patients`` (facts, then the segment
    membership of the patients they touched, per transaction), on SQLite; what ingest adds per event."""
    from zoneinfo import ZoneInfo

    from carepath.definition.events import EventIn
    from carepath.runtime.clock import VirtualClock
    from carepath.runtime.portrait import Counted, apply_event, record_facts
    from carepath.runtime.segments import refresh

    clock = VirtualClock(datetime(2026, 6, 1, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai")))
    engine = _engine(f"sqlite:///{home / 'portrait.db'}", home, clock)
    ids: list[int] = []
    for i in range(0, patients, CHUNK):
        ids += engine.upsert_patients(_patients(min(CHUNK, patients - i), first=10_000_000 + i))
    rng = random.Random(20)
    t0 = time.perf_counter()
    for start in range(0, events, per_transaction):
        now = clock.now()
        touched: set[int] = set()
        facts = Counted()
        with engine.db.begin() as conn:
            for _ in range(min(per_transaction, events - start)):
                kind, payload = _PORTRAIT_MIX[rng.randrange(len(_PORTRAIT_MIX))]
                pid = ids[rng.randrange(len(ids))]
                ev = EventIn.model_construct(type=kind, source="bench", source_id="", patient_mrn="",
                                             occurred_at=now, payload=payload)
                if apply_event(conn, engine.cipher, pid, ev, now, facts, "Asia/Shanghai"):
                    touched.add(pid)
            record_facts(conn, facts, now)
            refresh(conn, engine, touched, now)
        clock.advance(timedelta(minutes=10))
    seconds = time.perf_counter() - t0
    engine.close()
    return seconds
