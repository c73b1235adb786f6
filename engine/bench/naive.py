"""The naive way, for comparison: one Prefect task run per touchpoint (how not to dispatch)."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from carepath.bench.workload import BENCH_JOURNEY, BOOKING, TZ, engine, patients


def naive_prefect_rate(sample: int, home: Path) -> float:
    """Messages sent per second when each touchpoint is its own Prefect task run."""
    from carepath.flows import ephemeral_defaults, quiet_ephemeral_shutdown
    from carepath.runtime.clock import VirtualClock

    ephemeral_defaults()
    from prefect import flow, task
    from sqlalchemy import select

    from carepath.store.schema import Touchpoint

    clock = VirtualClock(datetime(2026, 6, 1, 10, 0, tzinfo=TZ))
    eng = engine(f"sqlite:///{home / 'naive.db'}", home, clock)
    ids = eng.upsert_patients(patients(sample))
    appt = datetime(2026, 6, 3, 10, 0, tzinfo=TZ)
    eng.enroll_many(BENCH_JOURNEY, [(pid, {"appointment": appt, "visit_end": appt}) for pid in ids], context=BOOKING)
    clock.set(datetime(2026, 6, 2, 19, 0, tzinfo=TZ))  # after the preparation guides fall due
    with eng.db.connect() as conn:
        due = list(conn.execute(select(Touchpoint.id).where(Touchpoint.status == "scheduled",
                                                            Touchpoint.due_at <= clock.now()).limit(sample)).scalars())

    @task(cache_policy=None)
    def one(tp_id: int) -> int:
        return eng.dispatcher.run_batch(ids=[tp_id], limit=1).sent

    @flow(name="naive-one-task-per-touchpoint")
    def naive(tp_ids: list[int]) -> int:
        return sum(one(t) for t in tp_ids)

    naive([])  # pay the ephemeral server start-up outside the measurement
    quiet_ephemeral_shutdown()
    t0 = time.perf_counter()
    done = naive(due)
    rate = done / (time.perf_counter() - t0)
    eng.close()
    return rate
