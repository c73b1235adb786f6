"""Server time per statement of the dispatch sweep on PostgreSQL, with 1..N workers (pg_stat_statements needs a
server restart; this needs none): python benchmarks/pg_statements.py <workers> <tag> [log]

Plans the bench's 10,000 patients into a fresh database ``carepath_stmts_<tag>`` on 127.0.0.1 (psql as postgres),
sets ``log_min_duration_statement = 0`` on that database only (with ``log``), dispatches with the bench's own
``dispatch()``, then sums the server log's durations per statement text and prints them with the tables' and the
touchpoint indexes' counters (pg_stat_user_tables / _indexes) and the workers' and backends' CPU. Reads the log
at /var/log/postgresql/postgresql-15-main.log (root on the database's machine); drops the database at the end."""
import collections
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from carepath.bench.runs import dispatch, plan_in_child

LOG = "/var/log/postgresql/postgresql-15-main.log"
TABLES = "('touchpoints', 'deliveries', 'outbox_messages', 'portrait_counts', 'portrait_days')"


def psql(sql: str, db: str = "postgres") -> str:
    return subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-Atc", sql], check=True,
                          capture_output=True, text=True).stdout


def per_statement(name: str, start: int) -> list:
    """(server ms, calls, statement) from the log's ``duration:`` lines of database ``name`` after ``start``."""
    per = collections.defaultdict(lambda: [0, 0.0])
    with open(LOG, errors="replace") as f:
        f.seek(start)
        for line in f:
            if f"@{name} LOG:  duration:" not in line:
                continue
            m = re.search(r"duration: ([\d.]+) ms\s+(statement|execute [^:]*|parse [^:]*|bind [^:]*):\s*(.*)", line)
            if m:
                phase = m.group(2).split()[0]
                key = ("" if phase in ("statement", "execute") else phase + " ") + \
                    re.sub(r"\$\d+(, \$\d+)*", "$n", m.group(3))[:110]
                per[key][0] += 1
                per[key][1] += float(m.group(1))
    return sorted(((round(ms), n, k) for k, (n, ms) in per.items()), reverse=True)[:30]


if __name__ == "__main__":
    workers, tag, log = int(sys.argv[1]), sys.argv[2], sys.argv[3:] == ["log"]
    name = f"carepath_stmts_{tag}"
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    home = Path(tempfile.mkdtemp())
    plan = plan_in_child(10000, url, home)
    if log:
        psql(f'ALTER DATABASE "{name}" SET log_min_duration_statement = 0')
    start = Path(LOG).stat().st_size
    fig = dispatch(url, home, workers, 500, plan.touchpoints)
    time.sleep(1)
    out = dict(workers=workers, seconds=fig.seconds, messages=fig.messages, claims=fig.claims,
               worker_cpu=fig.worker_cpu_s, db_cpu=fig.db_cpu_s, load=fig.load, lock_waits=fig.lock_waits,
               tables=psql("SELECT relname, seq_scan, idx_scan, idx_tup_fetch, n_tup_upd, n_tup_hot_upd "
                           f"FROM pg_stat_user_tables WHERE relname IN {TABLES} ORDER BY 1", name),
               idx=psql("SELECT indexrelname, idx_scan, idx_tup_read, idx_tup_fetch FROM pg_stat_user_indexes "
                        "WHERE relname = 'touchpoints' ORDER BY 1", name))
    if log:
        psql(f'ALTER DATABASE "{name}" RESET log_min_duration_statement')
        out["statements"] = per_statement(name, start)
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(json.dumps(out, indent=1))
