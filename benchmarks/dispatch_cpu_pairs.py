"""Dispatch alone with 1 and 2 PostgreSQL workers, CPU of the workers and the database's backends, one JSON line per run.

``python benchmarks/dispatch_cpu_pairs.py TAG 1,2 out.jsonl [server URL]``: the bench's own planning and dispatch
(``carepath.bench.runs``) on a fresh 10,000-patient scratch database per run, without the floors and SQLite. Run it
alternately on two checkouts (``PYTHONPATH=<dir with a carepath link to the other checkout's engine>``) to compare
CPU per message in the same minutes; per-process CPU is what a loaded machine disturbs least.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path


def main() -> None:
    from carepath.bench.runs import dispatch, plan_in_child
    from carepath.bench.workload import Scratch

    tag, workers, out = sys.argv[1], [int(w) for w in sys.argv[2].split(",")], Path(sys.argv[3])
    server = sys.argv[4] if len(sys.argv) > 4 else "postgresql://postgres@127.0.0.1:5432/postgres"
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        for n in workers:
            with Scratch("postgresql", home, server) as url:
                planned = plan_in_child(10000, url, home)
                f = dispatch(url, home, n, 500, planned.touchpoints)
                cpu = f.worker_cpu_s + (f.db_cpu_s or 0)
                row = dict(tag=tag, workers=n, seconds=round(f.seconds, 2), messages=f.messages, claims=f.claims,
                           worker_cpu_s=round(f.worker_cpu_s, 2), db_cpu_s=f.db_cpu_s and round(f.db_cpu_s, 2),
                           cpu_ms_per_message=round(cpu / f.messages * 1000, 4), cores_used=round(cpu / f.seconds, 2),
                           load=f.load, lock_waits=f.lock_waits, per_worker=getattr(f, "per_worker", None),
                           barrier_wait_s=getattr(f, "barrier_wait", None))
                print(json.dumps(row), flush=True)
                with out.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
