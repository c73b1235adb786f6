"""The simulation figure: wall and CPU seconds of ``carepath simulate outpatient-visit`` for N patients × 90 days.

Issue 23 asks 10,000 patients × 90 days in under a minute on a 2-core machine; this is where that is
measured (never in a timed test). CPU seconds are this process's and its simulation workers' (the
population is shared among processes, :mod:`carepath.simulation.shards`).
"""

from __future__ import annotations

import resource
import time

from carepath.bench.workload import load_average

SIMULATE_DAYS = 90
SIMULATE_JOURNEY = "outpatient-visit"


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def simulate_figure(patients: int, days: int = SIMULATE_DAYS, journey: str = SIMULATE_JOURNEY,
                    seed: int = 1) -> dict:
    """Run one stock journey's simulation and say how long it took, with what it did and the load average."""
    from carepath.definition.journey_files import load_journey_file
    from carepath.journeys import HERE
    from carepath.simulation.shards import default_workers
    from carepath.simulation.simulate import run_simulation

    journeys = [load_journey_file(HERE / f"{journey}.yaml")]
    began, cpu = time.monotonic(), _cpu_seconds()
    figures = run_simulation(journeys, patients=patients, days=days, seed=seed)
    wall, cpu = time.monotonic() - began, _cpu_seconds() - cpu
    run = figures["run"]
    return {"journey": journey, "patients": patients, "days": days, "seed": seed,
            "workers": default_workers(patients), "events": run["events"] + run["patient_events"],
            "his_events": run["events"], "patient_events": run["patient_events"],
            "messages": figures["totals"]["messages"], "staff_tasks": figures["totals"]["staff_tasks"],
            "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "load": load_average()}
