"""PostgreSQL dispatch alone, many runs from one planned database: one JSON line per run.

``python benchmarks/pg_dispatch_template.py TAG WORKERS OUT [--batch N] [--repeat K] [--server URL] [--log]``

Plans the bench's 10,000 patients once into a template database (``carepath_tmpl_<user>``, kept with its key
in ``/tmp/carepath_tmpl``; ``--fresh`` plans it again), then for each run copies it (``CREATE DATABASE … TEMPLATE``,
seconds instead of a minute of planning) and runs the bench's own ``dispatch()`` (``carepath.bench.runs``) with
1..N workers on the copy. Figures as ``dispatch_cpu_pairs.py``. Run it alternately on two checkouts
(``PYTHONPATH=<dir with a carepath link to the other checkout's engine>``) to compare CPU per message in the same
minutes; the planned rows are the same for both. ``--log``: the copy logs every statement
(``log_min_duration_statement = 0`` on it alone) and the run's line gets the server log's counts of statements
parsed afresh, prepared, ``BEGIN``, ``ROLLBACK``, ``DEALLOCATE`` and pings (root on the database's machine).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import uuid
from pathlib import Path


def _admin(server: str):
    from sqlalchemy import create_engine

    return create_engine(server.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")


def _template(server: str, home: Path, fresh: bool) -> tuple[str, int]:
    """The template database's name and its planned touchpoints (planned now if missing)."""
    from sqlalchemy import text

    from carepath.bench.runs import plan_in_child

    name = os.environ.get("CAREPATH_TEMPLATE_DB", "carepath_tmpl_pgw6")
    marker = home / "planned.json"
    admin = _admin(server)
    with admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
        if exists and marker.exists() and not fresh:
            admin.dispose()
            return name, json.loads(marker.read_text())["touchpoints"]
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    home.mkdir(parents=True, exist_ok=True)
    planned = plan_in_child(10000, f"{server.rsplit('/', 1)[0]}/{name}", home)
    marker.write_text(json.dumps({"touchpoints": planned.touchpoints}))
    admin.dispose()
    return name, planned.touchpoints


LOG = Path("/var/log/postgresql/postgresql-15-main.log")


def statement_counts(name: str, start: int) -> dict:
    """What the server log says database ``name`` ran after byte ``start``: parses, prepares, transactions, pings."""
    counts: collections.Counter = collections.Counter()
    with LOG.open(errors="replace") as f:
        f.seek(start)
        for line in f:
            if f"@{name} LOG:  duration:" not in line:
                continue
            m = re.search(r"duration: [\d.]+ ms\s+(statement|execute [^:]*|parse [^:]*|bind [^:]*):\s*(.*)", line)
            if not m:
                continue
            phase, text = m.group(1), m.group(2).strip().upper()
            if phase.startswith("parse"):
                counts["parsed afresh (unnamed)" if "<unnamed>" in phase else "prepared (named parse)"] += 1
            elif phase.startswith(("execute", "statement")):
                counts["executed"] += 1
                for word in ("BEGIN", "ROLLBACK", "COMMIT", "DEALLOCATE", "SELECT 1"):
                    if text.startswith(word) and (word != "SELECT 1" or text.rstrip(";") == "SELECT 1"):
                        counts[word] += 1
    return dict(counts)


def main() -> None:
    from sqlalchemy import text

    from carepath.bench.runs import dispatch

    p = argparse.ArgumentParser()
    p.add_argument("tag")
    p.add_argument("workers")
    p.add_argument("out", type=Path)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--home", type=Path, default=Path("/tmp/carepath_tmpl"))
    p.add_argument("--fresh", action="store_true")
    p.add_argument("--log", action="store_true")
    a = p.parse_args()
    template, planned = _template(a.server, a.home, a.fresh)
    admin = _admin(a.server)
    for _ in range(a.repeat):
        for n in [int(w) for w in a.workers.split(",")]:
            name = f"carepath_run_{uuid.uuid4().hex[:8]}"
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
                if a.log:
                    conn.execute(text(f'ALTER DATABASE "{name}" SET log_min_duration_statement = 0'))
            start = LOG.stat().st_size if a.log else 0
            try:
                f = dispatch(f"{a.server.rsplit('/', 1)[0]}/{name}", a.home, n, a.batch, planned)
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            cpu = f.worker_cpu_s + (f.db_cpu_s or 0)
            row = dict(tag=a.tag, workers=n, batch=a.batch, seconds=round(f.seconds, 2), messages=f.messages,
                       claims=f.claims, worker_cpu_s=round(f.worker_cpu_s, 2),
                       db_cpu_s=f.db_cpu_s and round(f.db_cpu_s, 2), cpu_ms_per_message=round(cpu / f.messages * 1000, 4),
                       cores_used=round(cpu / f.seconds, 2), load=f.load, lock_waits=f.lock_waits,
                       per_worker=f.per_worker, barrier_wait_s=f.barrier_wait)
            if a.log:
                row["statements"] = statement_counts(name, start)
            print(json.dumps(row), flush=True)
            with a.out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
    admin.dispose()


if __name__ == "__main__":
    main()
