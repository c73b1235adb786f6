"""Planning and dispatch runs: one child process plans, then 1..N dispatcher processes share the sweep.

Dispatch sweeps a virtual clock hour by hour over the journey's horizon, so quiet hours,
caps, conditions, consent, fallbacks and follower steps run as in production. With several
workers, each hour's due work is shared by claims (``FOR UPDATE SKIP LOCKED``) and the
workers move to the next hour together. Messages sent are counted where they arrive: the
outbox rows the two ``outbox`` channels wrote.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from carepath.bench.workload import (BENCH_JOURNEY, BOOKING, CHUNK, HORIZON, START, add_patients, bookings, engine,
                                     load_average)


@dataclass
class PlanFigures:
    touchpoints: int
    seconds: float
    peak_rss_mib: float


@dataclass
class DispatchFigures:
    workers: int
    seconds: float
    claims: int
    messages: int  # outbox rows written: what reached the provider
    followers_planned: int
    worker_cpu_s: float
    db_cpu_s: float | None
    peak_rss_mib: float
    load: list[float]
    lock_waits: dict = field(default_factory=dict)
    server_cpu_s: float | None = None  # the server's shared background processes (all its databases)
    per_worker: list[dict] = field(default_factory=list)  # each worker's PER_WORKER figures
    barrier_wait: dict = field(default_factory=dict)  # seconds waited at the hourly barrier, by kind of hour


#: each worker's figures: claims, messages, CPU seconds, hours in which it claimed anything, seconds spent waiting
#: at the barrier between virtual hours for the other workers, and the rest of its wall time (sweeping)
PER_WORKER = ("claims", "messages", "cpu", "hours_with_work", "barrier_wait_s", "busy_s")


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _plan(size: int, url: str, home: str) -> PlanFigures:
    """Add ``size`` patients (not timed) and enroll each on the journey (timed); runs in a child process."""
    from carepath.runtime.clock import VirtualClock

    eng = engine(url, Path(home), VirtualClock(START))
    items = bookings(add_patients(eng, size), seed=size)
    t0 = time.perf_counter()
    touchpoints = 0
    for i in range(0, len(items), CHUNK):
        touchpoints += eng.enroll_many(BENCH_JOURNEY, items[i:i + CHUNK], context=BOOKING)
    seconds = time.perf_counter() - t0
    eng.close()
    if url.startswith("postgresql"):  # statistics as autovacuum would have them (see floor.analyze)
        from carepath.bench.floor import _Raw, analyze

        raw = _Raw(url)
        analyze(raw)
        raw.close()
    return PlanFigures(touchpoints, seconds, _rss_mib())


def plan_in_child(size: int, url: str, home: Path) -> PlanFigures:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_plan, (size, url, str(home)))


def _worker(url: str, home: str, index: int, batch: int, ends, ticks, out) -> None:
    """One dispatcher process: every hour of the horizon, dispatch all that is due, then wait for the others."""
    from carepath.runtime.clock import VirtualClock
    from carepath.runtime.dispatcher import DispatchReport

    clock = VirtualClock(START)
    eng = engine(url, Path(home), clock, worker_id=f"bench-{index}")
    with eng.db.connect() as conn:  # connected before the clock starts
        conn.exec_driver_sql("SELECT 1")
    report = DispatchReport()
    hours = int(HORIZON / timedelta(hours=1))
    claims, waits = [], []  # per hour: what this worker claimed, how long it then waited for the others
    ends.wait()
    cpu0, t0 = os.times(), time.perf_counter()
    for hour in range(1, hours + 1):
        clock.set(START + timedelta(hours=hour))
        part = eng.dispatch_due(batch=batch)
        report.merge(part)
        t = time.perf_counter()
        ticks.wait()
        claims.append(part.claimed)
        waits.append(time.perf_counter() - t)
    cpu1, seconds = os.times(), time.perf_counter() - t0
    out.put(dict(claims=report.claimed, messages=report.messages, rss=_rss_mib(),
                 cpu=(cpu1.user - cpu0.user) + (cpu1.system - cpu0.system), hours_with_work=sum(c > 0 for c in claims),
                 barrier_wait_s=sum(waits), busy_s=seconds - sum(waits), hourly=(claims, waits)))
    ends.wait()  # the parent reads the database's CPU time before the connections close
    ends.wait()
    eng.close()


class _PostgresWatch(threading.Thread):
    """Samples the scratch database's backends: CPU time (from /proc) and lock waits (pg_stat_activity).

    The database's CPU is its backends' (the workers' connections, and autovacuum's on this database),
    counted from their first sample. The server's shared background processes (WAL writer, checkpointer,
    background writer) work for every database on the server, other people's too on a shared machine:
    their CPU is counted apart (``server_cpu_s``), never in the messages per CPU-second.
    """

    SHARED = ("walwriter", "checkpointer", "background writer")

    def __init__(self, url: str, every: float = 0.05) -> None:
        super().__init__(daemon=True)
        import psycopg

        self.conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
        self.db = url.rsplit("/", 1)[1]
        self.every = every
        self.stop = threading.Event()
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.shared_first: dict[int, float] = {}
        self.shared_last: dict[int, float] = {}
        self.samples = 0
        self.waiting_samples = 0
        self.most_waiting = 0
        self.events: dict[str, int] = {}
        self.lightweight: dict[str, int] = {}  # LWLock waits (buffers, WAL): a hot spot that is not a row lock
        self.ticks = os.sysconf("SC_CLK_TCK")
        self.cpu_readable = True

    def _cpu(self, pid: int) -> float | None:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / self.ticks
        except (OSError, IndexError, ValueError):
            return None

    def sample(self, first: bool = False) -> None:
        rows = self.conn.execute("SELECT pid, wait_event_type, wait_event, datname IS NULL FROM pg_stat_activity "
                                 "WHERE (datname = %s OR backend_type = ANY(%s)) AND pid <> pg_backend_pid()",
                                 (self.db, list(self.SHARED))).fetchall()
        waiting = 0
        for pid, kind, name, shared in rows:
            cpu = self._cpu(pid)
            if shared:
                if cpu is not None:
                    self.shared_first.setdefault(pid, cpu)
                    self.shared_last[pid] = cpu
                continue
            if cpu is None:
                self.cpu_readable = False
            else:
                self.first.setdefault(pid, cpu if first else 0.0)
                self.last[pid] = cpu
            if kind == "Lock":
                waiting += 1
                self.events[name] = self.events.get(name, 0) + 1
            elif kind == "LWLock":
                self.lightweight[name] = self.lightweight.get(name, 0) + 1
        self.samples += 1
        self.waiting_samples += bool(waiting)
        self.most_waiting = max(self.most_waiting, waiting)

    def run(self) -> None:
        while not self.stop.wait(self.every):
            self.sample()

    def db_cpu(self) -> float | None:
        return sum(self.last[p] - self.first[p] for p in self.last) if self.cpu_readable else None

    def server_cpu(self) -> float | None:
        return sum(self.shared_last[p] - self.shared_first[p] for p in self.shared_last) if self.cpu_readable else None

    def lock_waits(self) -> dict:
        return {"samples": self.samples, "samples_with_lock_waits": self.waiting_samples,
                "most_backends_waiting": self.most_waiting, "wait_events": self.events,
                "lwlock_wait_events": self.lightweight}


def barrier_waits(hourly: list[tuple[list[int], list[float]]]) -> dict:
    """The workers' seconds at the hourly barrier, summed over workers, by kind of hour: ``empty`` (no worker claimed
    anything: what meeting costs), ``alone`` (one worker had all of the hour's claims, the others waited for it) and
    ``shared`` (several had claims: the wait is the imbalance of their shares)."""
    out = {"empty": 0.0, "alone": 0.0, "shared": 0.0, "hours_alone": 0, "hours_shared": 0}
    for hour in range(len(hourly[0][0]) if hourly else 0):
        busy = sum(claims[hour] > 0 for claims, _ in hourly)
        kind = "empty" if busy == 0 else "alone" if busy == 1 else "shared"
        out[kind] += sum(waits[hour] for _, waits in hourly)
        if busy:
            out["hours_" + kind] += 1
    return {k: round(v, 2) for k, v in out.items()}


def dispatch(url: str, home: Path, workers: int, batch: int, planned: int) -> DispatchFigures:
    """Run ``workers`` dispatcher processes over the horizon; count what reached the outbox."""
    ctx = multiprocessing.get_context("spawn")
    ends, ticks, out = ctx.Barrier(workers + 1), ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, str(home), i, batch, ends, ticks, out)) for i in range(workers)]
    for p in procs:
        p.start()
    watch = _PostgresWatch(url) if url.startswith("postgresql") else None
    ends.wait(timeout=600)
    t0 = time.perf_counter()
    if watch:
        watch.sample(first=True)
        watch.start()
    parts = [out.get(timeout=3600) for _ in procs]
    seconds = time.perf_counter() - t0
    ends.wait(timeout=600)
    db_cpu, server_cpu, locks = None, None, {}
    if watch:
        watch.stop.set()
        watch.join()
        watch.sample()
        db_cpu, server_cpu, locks = watch.db_cpu(), watch.server_cpu(), watch.lock_waits()
        watch.conn.close()
    load = load_average()
    ends.wait(timeout=600)
    for p in procs:
        p.join()
    from sqlalchemy import create_engine, text

    db = create_engine(url if not url.startswith("postgresql://") else url.replace("postgresql://",
                                                                                     "postgresql+psycopg://", 1))
    with db.connect() as conn:
        messages = conn.execute(text("SELECT count(*) FROM outbox_messages")).scalar_one()
        total = conn.execute(text("SELECT count(*) FROM touchpoints")).scalar_one()
    db.dispose()
    return DispatchFigures(workers=workers, seconds=seconds, claims=sum(p["claims"] for p in parts), messages=messages,
                           followers_planned=total - planned, worker_cpu_s=sum(p["cpu"] for p in parts),
                           db_cpu_s=db_cpu, peak_rss_mib=max(p["rss"] for p in parts), load=load, lock_waits=locks,
                           server_cpu_s=server_cpu,
                           per_worker=[{k: round(p[k], 2) for k in PER_WORKER} for p in parts],
                           barrier_wait=barrier_waits([p["hourly"] for p in parts]) if workers > 1 else {})
