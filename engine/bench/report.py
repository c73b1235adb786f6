"""The bench's tables: one line per run, each figure with its ratio to the same run's floor and the load average."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _load(load: list[float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def print_tables(result: dict, console: Console) -> None:
    runs = result["runs"]
    table = Table(title="carepath bench: dispatch (messages sent are outbox rows)")
    for col in ["patients", "db", "workers", "messages/s", "× floor", "per worker × floor", "vs 1 worker",
                "claims/s", "messages", "floor msg/s (before/after)", "load 1/5/15"]:
        table.add_column(col, justify="right")
    for r in runs:
        floor = r["floor"]
        for d in r["dispatch"]:
            table.add_row(f"{r['patients']:,}", r["database"], str(d["workers"]), f"{d['messages_per_s']:,}",
                          f"{d['ratio_to_floor']:.3f}", f"{d['per_worker_ratio_to_floor']:.3f}",
                          f"{d.get('scaling_vs_one', 1.0):.2f}", f"{d['claims_per_s']:,}", f"{d['messages']:,}",
                          f"{floor['before']['dispatch_messages_per_s']:,} / "
                          f"{floor['after']['dispatch_messages_per_s']:,}", _load(d["load"]))
    console.print(table)
    table = Table(title="carepath bench: planning")
    for col in ["patients", "db", "touchpoints", "planned/s", "× floor", "floor/s (before/after)",
                "cost/touchpoint vs smallest", "peak RSS MiB", "load 1/5/15"]:
        table.add_column(col, justify="right")
    for r in runs:
        p, floor = r["planning"], r["floor"]
        table.add_row(f"{r['patients']:,}", r["database"], f"{r['touchpoints_planned']:,}",
                      f"{p['touchpoints_per_s']:,}", f"{p['ratio_to_floor']:.3f}",
                      f"{floor['before']['planning_per_s']:,} / {floor['after']['planning_per_s']:,}",
                      f"{p.get('cost_vs_smallest', 1.0):.2f}", f"{p['peak_rss_mib']}", _load(p["load"]))
    console.print(table)
    multi = [(r, d) for r in runs for d in r["dispatch"] if d.get("db_cpu_s") is not None]
    if multi:
        table = Table(title="PostgreSQL workers: CPU and lock waits")
        for col in ["patients", "workers", "wall s", "worker CPU s", "database CPU s", "cores used",
                    "messages per CPU s", "CPU scaling vs 1", "server background CPU s (shared)",
                    "samples with lock waits", "most waiting", "LWLock waits",
                    "barrier wait s (empty / alone / shared hours)"]:
            table.add_column(col, justify="right")
        for r, d in multi:
            locks = d.get("lock_waits", {})
            lw = locks.get("lwlock_wait_events", {})
            table.add_row(f"{r['patients']:,}", str(d["workers"]), f"{d['seconds']}", f"{d['worker_cpu_s']}",
                          f"{d['db_cpu_s']}", f"{d.get('cores_used', '–')}", f"{d['messages_per_cpu_s']:,}",
                          f"{d.get('cpu_scaling_vs_one', 1.0)}", f"{d.get('server_cpu_s', '–')}",
                          f"{locks.get('samples_with_lock_waits', 0)} of {locks.get('samples', 0)}",
                          str(locks.get("most_backends_waiting", 0)),
                          ", ".join(f"{k} {v}" for k, v in sorted(lw.items(), key=lambda kv: -kv[1])[:3]) or "0",
                          _barrier(d.get("barrier_wait_s")))
        console.print(table)
    if "latency" in result:
        lat = result["latency"]
        table = Table(title=f"event-to-send latency under carepath serve ({lat['rate']} events/s, {lat['database']})")
        for col in ["kind", "events", "sent", "p50 ms", "p99 ms", "max ms", "load 1/5/15"]:
            table.add_column(col, justify="right")
        for kind, f in lat["kinds"].items():
            table.add_row(kind, str(f["events"]), str(f["sent"]), f"{f['p50_ms']}", f"{f['p99_ms']}",
                          f"{f['max_ms']}", _load(lat["load"]))
        console.print(table)
    if "peers" in result:
        for name, f in result["peers"].items():
            console.print(f"peer {name}: {f}")
    if "portrait_updates" in result:
        pu = result["portrait_updates"]
        console.print(f"portrait updates for {pu['events']:,} events (SQLite): {pu['seconds']} s "
                      f"(load {_load(pu['load'])})")
    if "simulate" in result:
        _simulate_table(result["simulate"], console)
    if "naive_prefect_messages_per_s" in result:
        console.print(f"naive one-task-per-touchpoint: {result['naive_prefect_messages_per_s']} messages/s")


def _simulate_table(sim: dict, console: Console) -> None:
    table = Table(title=f"carepath simulate {sim['journey']} (issue 23: 10,000 × 90 days in under a minute)")
    for col in ["patients × days", "workers", "events", "messages", "staff tasks", "wall s", "CPU s", "load 1/5/15"]:
        table.add_column(col, justify="right")
    table.add_row(f"{sim['patients']:,} × {sim['days']}", str(sim["workers"]), f"{sim['events']:,}",
                  f"{sim['messages']:,}", f"{sim['staff_tasks']:,}", f"{sim['wall_s']}", f"{sim['cpu_s']}",
                  _load(sim["load"]))
    console.print(table)


def _barrier(waits: dict | None) -> str:
    """Seconds the workers waited at the hourly barrier: in empty hours, hours one worker had alone, shared hours."""
    return "–" if not waits else f"{waits['empty']} / {waits['alone']} / {waits['shared']}"
