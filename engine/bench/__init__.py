"""``carepath bench``: messages sent per second, claims, planning, each against the floor measured in the same run.

See ``docs/performance.md`` for what each figure means and ``benchmarks/README.md`` for the
commands. Every (size, database, workers) run happens in fresh processes on a fresh database,
so that its peak RSS and its indexes are its own. The floor (:mod:`carepath.bench.floor`) is
measured on the same kind of database just before and just after the runs it is compared with;
only such same-run ratios are comparable across machines, loads and days.
"""

from __future__ import annotations

import json
import platform
import sqlite3
import tempfile
from pathlib import Path

from rich.console import Console

from carepath.bench.floor import dispatch_floor, planning_floor
from carepath.bench.report import print_tables
from carepath.bench.runs import DispatchFigures, dispatch, plan_in_child
from carepath.bench.workload import HORIZON, Scratch, load_average, scratch_postgres

__all__ = ["run_bench", "scratch_postgres"]


def _floors(kind: str, home: Path, postgres: str | None, size: int, batch: int, dispatching: bool) -> dict:
    d = dispatch_floor(kind, home, postgres, size, batch=batch) if dispatching else None
    p = planning_floor(kind, home, postgres, size)
    return {"dispatch_messages_per_s": round(d.per_s) if d else None, "planning_per_s": round(p.per_s),
            "load": load_average()}


def _mean_floor(before: dict, after: dict, key: str) -> float:
    return (before[key] + after[key]) / 2


def _dispatch_entry(fig: DispatchFigures, floor: float, one: DispatchFigures | None) -> dict:
    per_s = fig.messages / fig.seconds
    entry = {"workers": fig.workers, "messages_per_s": round(per_s), "claims_per_s": round(fig.claims / fig.seconds),
             "messages": fig.messages, "claims": fig.claims, "followers_planned": fig.followers_planned,
             "seconds": round(fig.seconds, 2), "ratio_to_floor": round(per_s / floor, 3),
             "per_worker_ratio_to_floor": round(per_s / fig.workers / floor, 3),
             "worker_cpu_s": round(fig.worker_cpu_s, 2),
             "db_cpu_s": None if fig.db_cpu_s is None else round(fig.db_cpu_s, 2),
             "messages_per_cpu_s": round(fig.messages / (fig.worker_cpu_s + (fig.db_cpu_s or 0)))
             if fig.worker_cpu_s else None,
             "peak_rss_mib": round(fig.peak_rss_mib, 1), "load": fig.load}
    if fig.db_cpu_s is not None:  # the cores the workers and the database's backends kept busy together
        entry["cores_used"] = round((fig.worker_cpu_s + fig.db_cpu_s) / fig.seconds, 2)
        entry["server_cpu_s"] = None if fig.server_cpu_s is None else round(fig.server_cpu_s, 2)
        entry["per_worker"] = fig.per_worker  # how the work was shared
        if fig.barrier_wait:  # where the workers idled: seconds at the hourly barrier, by kind of hour
            entry["barrier_wait_s"] = fig.barrier_wait
    if one is not None:
        entry["scaling_vs_one"] = round(per_s / (one.messages / one.seconds), 2)
        base_cpu = one.messages / (one.worker_cpu_s + (one.db_cpu_s or 0))
        entry["cpu_scaling_vs_one"] = round(fig.messages / (fig.worker_cpu_s + (fig.db_cpu_s or 0)) / base_cpu, 2)
    if fig.lock_waits:
        entry["lock_waits"] = fig.lock_waits
    return entry


def _one_database(kind: str, size: int, home: Path, postgres: str | None, workers: list[int], batch: int,
                  say, dispatching: bool = True) -> dict:
    say(f"{size} patients on {kind}: floor before …")
    before = _floors(kind, home, postgres, size, batch, dispatching)
    runs: list[DispatchFigures] = []
    plan = None
    for n in workers:
        with Scratch(kind, home, postgres) as url:
            say(f"{size} patients on {kind}: planning …")
            planned = plan_in_child(size, url, home)
            plan = plan or (planned, load_average())
            if not dispatching:
                break
            say(f"{size} patients on {kind}: dispatch with {n} worker(s) …")
            runs.append(dispatch(url, home, n, batch, planned.touchpoints))
    say(f"{size} patients on {kind}: floor after …")
    after = _floors(kind, home, postgres, size, batch, dispatching)
    plan_fig, plan_load = plan
    plan_per_s = plan_fig.touchpoints / plan_fig.seconds
    dispatch_floor_per_s = _mean_floor(before, after, "dispatch_messages_per_s") if dispatching else 0
    return {"patients": size, "database": kind, "touchpoints_planned": plan_fig.touchpoints,
            "floor": {"before": before, "after": after},
            "planning": {"touchpoints_per_s": round(plan_per_s), "seconds": round(plan_fig.seconds, 2),
                         "ratio_to_floor": round(plan_per_s / _mean_floor(before, after, "planning_per_s"), 3),
                         "seconds_per_million": round(plan_fig.seconds / plan_fig.touchpoints * 1e6, 2),
                         "peak_rss_mib": round(plan_fig.peak_rss_mib, 1), "load": plan_load},
            "dispatch": [_dispatch_entry(r, dispatch_floor_per_s, runs[0] if r is not runs[0] else None)
                         for r in runs]}


def run_bench(sizes: list[int], postgres: str | None, *, workers: list[int] = (1, 2, 4), batch: int = 500,
              naive_sample: int = 0, latency: int = 0, peers: bool = False, as_json: bool = False,
              console: Console | None = None, dispatch_max: int = 100_000, out: Path | None = None,
              portrait_events: int = 0, simulate: int = 0) -> dict:
    """Run every size on SQLite (one worker) and PostgreSQL (each worker count) when reachable.

    Sizes above ``dispatch_max`` are planned only (their dispatch would take most of an hour). With
    ``out``, the JSON is written there after every run, so a long bench keeps what it measured."""
    console = console or Console()

    def say(text: str) -> None:
        if not as_json:
            console.print(f"{text}  (load {' '.join(map(str, load_average()))})", style="dim", markup=False)

    result: dict = {"machine": _machine(postgres), "settings": {"batch": batch, "chunk": 100,
                                                               "horizon_days": HORIZON.days}, "runs": []}
    with tempfile.TemporaryDirectory(prefix="carepath-bench-") as tmp:
        home = Path(tmp)
        pg_ok = bool(postgres) and _reachable(postgres)
        if postgres and not pg_ok:
            say(f"PostgreSQL at {postgres} not reachable: SQLite only")
        for size in sizes:
            dispatching = size <= dispatch_max
            result["runs"].append(_one_database("sqlite", size, home, None, [1], batch, say, dispatching))
            _save(result, out)
            if pg_ok:
                result["runs"].append(_one_database("postgresql", size, home, postgres, list(workers), batch, say,
                                                    dispatching))
                _save(result, out)
        if latency:
            from carepath.bench.latency import serve_latency

            say(f"event-to-send latency under carepath serve, {latency} events/s …")
            result["latency"] = serve_latency(home, rate=latency, postgres=postgres if pg_ok else None, say=say)
            _save(result, out)
        if peers and pg_ok:
            from carepath.bench.peers import run_peers

            say("peers: procrastinate and pgqueuer on the same jobs …")
            result["peers"] = run_peers(home, postgres, sizes[0], say=say)
            _save(result, out)
        if portrait_events:
            from carepath.bench.portrait import portrait_update_seconds

            say(f"portrait updates for {portrait_events:,} events (SQLite) …")
            result["portrait_updates"] = {"events": portrait_events, "load": load_average(),
                                          "seconds": round(portrait_update_seconds(home, portrait_events), 1)}
            _save(result, out)
        if simulate:
            from carepath.bench.simulate import SIMULATE_DAYS, SIMULATE_JOURNEY, simulate_figure

            say(f"carepath simulate {SIMULATE_JOURNEY}: {simulate:,} patients × {SIMULATE_DAYS} days …")
            result["simulate"] = simulate_figure(simulate)
            _save(result, out)
        if naive_sample:
            from carepath.bench.naive import naive_prefect_rate

            say(f"naive Prefect sample ({naive_sample} touchpoints, one task each) …")
            result["naive_prefect_messages_per_s"] = round(naive_prefect_rate(naive_sample, home), 2)
    for kind in ("sqlite", "postgresql"):  # cost per touchpoint against the smallest size on the same database
        same = [r for r in result["runs"] if r["database"] == kind]
        if same:
            base = min(same, key=lambda r: r["patients"])["planning"]["seconds_per_million"]
            for r in same:
                r["planning"]["cost_vs_smallest"] = round(r["planning"]["seconds_per_million"] / base, 2)
    _save(result, out)
    if as_json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print_tables(result, console)
    return result


def _save(result: dict, out: Path | None) -> None:
    if out is not None:
        out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _reachable(postgres: str) -> bool:
    made = scratch_postgres(postgres)
    if made is None:
        return False
    made[1]()
    return True


def _machine(postgres: str | None) -> dict:
    import os

    info = {"cpus": os.cpu_count(), "python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    if postgres:
        try:
            import psycopg

            with psycopg.connect(postgres) as conn:
                info["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
        except Exception:  # noqa: BLE001 - reported as unreachable by the run itself
            pass
    return info
