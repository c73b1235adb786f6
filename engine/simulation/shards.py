"""A simulation's patients shared among worker processes, each with its own scratch database.

Patients of a simulation are independent (caps, quiet hours, consent, segments and tasks are per
patient) and their answers are drawn from who got which message (never from database ids), so a
shard's patients get exactly what they would get in one database. Each shard runs the patients
``k, k + n, ...`` in a spawned process and hands back its rows; the figures are computed from the rows
of every shard (:func:`carepath.simulation.figures.figures_from`, whose result does not depend on their
order), so the same seed gives the same JSON whatever the number of workers.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import traceback
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from carepath.simulation.simulate import ShardJob, ShardOutcome

#: from this many patients on, a simulation runs in two processes (below, a process start costs more than it saves)
SHARD_FROM = 2000


def default_workers(patients: int) -> int:
    """Two processes for a large population on a machine with two cores or more, else one."""
    return min(2, os.cpu_count() or 1) if patients >= SHARD_FROM else 1


def _worker(messages: "multiprocessing.Queue", job: "ShardJob", shard: int, shards: int) -> None:
    from carepath.simulation.simulate import run_shard

    try:
        outcome = run_shard(job, shard, shards, progress=lambda day, _days: messages.put(("day", shard, day)))
    except BaseException as exc:  # noqa: BLE001 - told to the parent, which raises it
        messages.put(("error", shard, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
        return
    messages.put(("done", shard, outcome))


def run_sharded(job: "ShardJob", workers: int, progress: Callable[[int, int], None] | None = None) -> "ShardOutcome":
    """Run ``job`` in ``workers`` processes; their outcomes added up in shard order."""
    context = multiprocessing.get_context("spawn")  # a clean interpreter: no thread or connection of ours copied
    messages = context.Queue()
    processes = [context.Process(target=_worker, args=(messages, job, k, workers), daemon=True,
                                 name=f"carepath-simulate-{k}") for k in range(workers)]
    for process in processes:
        process.start()
    outcomes: dict[int, ShardOutcome] = {}
    days_done = [0] * workers
    try:
        while len(outcomes) < workers:
            try:
                kind, shard, payload = messages.get(timeout=2)
            except queue.Empty:
                lost = [k for k, p in enumerate(processes) if p.exitcode is not None and k not in outcomes]
                if lost:
                    raise RuntimeError(f"simulation shard {lost[0]} ended without its figures "
                                       f"(exit code {processes[lost[0]].exitcode})") from None
                continue
            if kind == "error":
                raise RuntimeError(f"simulation shard {shard} failed: {payload}")
            if kind == "day":
                days_done[shard] = payload
                if progress:
                    progress(min(days_done), job.days)
            else:
                outcomes[shard] = payload
    finally:
        for process in processes:
            if process.is_alive() and len(outcomes) < workers:
                process.terminate()
            process.join()
    total = outcomes[0]
    for k in range(1, workers):
        total.add(outcomes[k])
    return total
