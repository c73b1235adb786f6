"""Peers: procrastinate and pgqueuer draining the same number of jobs, one per message, on a scratch database.

Each job stands for one message and its body does nothing, so the figure is the queue's own
cost per job (enqueue excluded, dequeue and completion included): an upper bound for what
either library could send. Both are optional (``pip install 'carepath[peers]'``); a library
that is not installed is reported as such.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from datetime import timedelta
from pathlib import Path
from typing import Callable

from carepath.bench.workload import Scratch, load_average


async def _pgqueuer(dsn: str, jobs: int) -> float:
    import psycopg
    from pgqueuer import PgQueuer, PsycopgDriver, Queries
    from pgqueuer.types import QueueExecutionMode

    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    queries = Queries(PsycopgDriver(conn))
    await queries.install()
    for at in range(0, jobs, 5000):
        n = min(5000, jobs - at)
        await queries.enqueue(["send"] * n, [str(at + i).encode() for i in range(n)], [0] * n)
    pgq = PgQueuer(PsycopgDriver(conn))
    done = 0

    @pgq.entrypoint("send")
    async def send(job) -> None:
        nonlocal done
        done += 1

    t0 = time.perf_counter()
    await pgq.run(batch_size=100, mode=QueueExecutionMode.drain, dequeue_timeout=timedelta(seconds=1))
    seconds = time.perf_counter() - t0
    await conn.close()
    return done / seconds


async def _procrastinate(dsn: str, jobs: int) -> float:
    from procrastinate import App, PsycopgConnector

    app = App(connector=PsycopgConnector(conninfo=dsn))
    done = 0

    @app.task(name="send")
    async def send(i: int) -> None:
        nonlocal done
        done += 1

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        for at in range(0, jobs, 5000):
            await send.batch_defer_async(*[{"i": at + i} for i in range(min(5000, jobs - at))])
        t0 = time.perf_counter()
        await app.run_worker_async(wait=False, concurrency=10)
        seconds = time.perf_counter() - t0
    return done / seconds


def _run(name: str, dsn: str, jobs: int) -> float:
    return asyncio.run({"pgqueuer": _pgqueuer, "procrastinate": _procrastinate}[name](dsn, jobs))


def run_peers(home: Path, postgres: str, patients: int, say: Callable[[str], None] = print) -> dict:
    """Jobs per second of each peer on ``4 * patients`` jobs (about the messages of that size)."""
    jobs = 4 * patients
    out: dict = {}
    ctx = multiprocessing.get_context("spawn")
    for name in ("pgqueuer", "procrastinate"):
        try:
            __import__(name)
        except ImportError:
            out[name] = {"error": f"not installed: pip install {name}"}
            continue
        say(f"peer {name}: {jobs} jobs …")
        with Scratch("postgresql", home, postgres) as url:
            dsn = url.replace("postgresql+psycopg://", "postgresql://")
            try:
                with ctx.Pool(1) as pool:
                    rate = pool.apply(_run, (name, dsn, jobs))
                out[name] = {"jobs": jobs, "jobs_per_s": round(rate), "load": load_average()}
            except Exception as exc:  # noqa: BLE001 - a peer's failure is reported, the bench goes on
                out[name] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    return out
