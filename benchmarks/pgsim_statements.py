"""PostgreSQL statements of the dispatch bench, counted by the server (pg_stat_statements), one code version per run.

Plans 10,000 patients (as ``carepath bench --sizes 10000 --workers 1``) in a scratch database, resets that
database's pg_stat_statements entries, runs the bench's 1-worker dispatch over the 50-day horizon, then writes
that database's entries (calls, rows, plans, exec / plan time, buffers) to a JSON file, with the bench's figures.

    PYTHONPATH=<code root or empty> python benchmarks/pgsim_statements.py <label> <out.json> [patients]

Needs ``shared_preload_libraries = 'pg_stat_statements'`` on the server (session 9, branch pgsim).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import psycopg

SERVER = "postgresql://postgres@127.0.0.1:5432"
STATS_DB = "carepath_pgsim_stats"


def admin(db: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(f"{SERVER}/{db}", autocommit=True)


def _busy() -> float:
    """CPU-seconds the whole machine has spent busy (all cores, all processes; /proc/stat without idle, iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    label, out = sys.argv[1], Path(sys.argv[2])
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
    import carepath
    from carepath.bench.runs import dispatch, plan_in_child

    with admin() as a:
        if not a.execute("SELECT 1 FROM pg_database WHERE datname = %s", (STATS_DB,)).fetchone():
            a.execute(f'CREATE DATABASE "{STATS_DB}"')
    with admin(STATS_DB) as s:
        s.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    name = f"carepath_pgsim_{label}"
    with admin() as a:
        a.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        a.execute(f'CREATE DATABASE "{name}"')
    url = f"{SERVER}/{name}"
    home = Path(tempfile.mkdtemp(prefix=f"pgsim-{label}-"))
    try:
        planned = plan_in_child(size, url.replace("postgresql://", "postgresql+psycopg://"), home)
        with admin(STATS_DB) as s:
            dbid = s.execute("SELECT oid FROM pg_database WHERE datname = %s", (name,)).fetchone()[0]
            s.execute("SELECT pg_stat_statements_reset(0, %s, 0)", (dbid,))
            s.execute("SELECT pg_stat_force_next_flush()")
            sessions0 = s.execute("SELECT sessions FROM pg_stat_database WHERE datid = %s", (dbid,)).fetchone()[0]
        stat0 = _busy()
        t0 = time.perf_counter()
        fig = dispatch(url.replace("postgresql://", "postgresql+psycopg://"), home, 1, 500, planned.touchpoints)
        seconds = time.perf_counter() - t0
        stat1 = _busy()
        time.sleep(1.5)  # (the backends' statistics reach pg_stat_database when they end)
        with admin(STATS_DB) as s:
            sessions = s.execute("SELECT sessions FROM pg_stat_database WHERE datid = %s", (dbid,)).fetchone()[0]
            cols = ("queryid", "query", "calls", "rows", "plans", "total_exec_time", "total_plan_time",
                    "shared_blks_hit", "shared_blks_read", "shared_blks_dirtied", "shared_blks_written",
                    "temp_blks_written", "wal_records")
            rows = s.execute(f"SELECT {', '.join(cols)} FROM pg_stat_statements WHERE dbid = %s "
                             "ORDER BY total_exec_time + total_plan_time DESC", (dbid,)).fetchall()
        result = {"label": label, "code": carepath.__file__, "patients": size, "touchpoints": planned.touchpoints,
                  "dispatch": {"seconds": round(fig.seconds, 2), "wall_s": round(seconds, 2),
                               "worker_cpu_s": round(fig.worker_cpu_s, 2),
                               "db_cpu_s": None if fig.db_cpu_s is None else round(fig.db_cpu_s, 2),
                               "machine_busy_cpu_s": round(stat1 - stat0, 2), "messages": fig.messages, "claims": fig.claims,
                               "followers_planned": fig.followers_planned, "load": fig.load},
                  "totals": {"sessions": sessions - sessions0, "statements": len(rows), "calls": sum(r[2] for r in rows),
                             "rows": sum(r[3] for r in rows), "plans": sum(r[4] for r in rows),
                             "exec_ms": round(sum(r[5] for r in rows), 1),
                             "plan_ms": round(sum(r[6] for r in rows), 1),
                             "shared_blks_hit": sum(r[7] for r in rows)},
                  "statements": [dict(zip(cols, (str(r[0]),) + tuple(r[1:]))) for r in rows]}
        out.write_text(json.dumps(result, indent=1, default=float))
        print(json.dumps({k: result[k] for k in ("label", "code", "touchpoints", "dispatch", "totals")}))
    finally:
        with admin() as a:
            a.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
