"""How much the bench's workload has due each virtual hour (one worker, SQLite): ``python benchmarks/claims_per_hour.py out.json``.

Prints how many hours have how many claims: the hours with less than a batch due are the ones a second
PostgreSQL worker could only help with by sharing a claim (docs/performance.md, fourth round).
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import Counter
from datetime import timedelta
from pathlib import Path

BINS = (1, 201, 500, 1000, 2000)


def main() -> None:
    from carepath.bench.workload import BENCH_JOURNEY, BOOKING, CHUNK, HORIZON, START, add_patients, bookings, engine
    from carepath.runtime.clock import VirtualClock

    home = Path(tempfile.mkdtemp(prefix="claims-per-hour-"))
    clock = VirtualClock(START)
    eng = engine(f"sqlite:///{home}/bench.db", home, clock)
    items = bookings(add_patients(eng, 10000), seed=10000)
    for i in range(0, len(items), CHUNK):
        eng.enroll_many(BENCH_JOURNEY, items[i:i + CHUNK], context=BOOKING)
    per_hour = []
    for hour in range(1, int(HORIZON / timedelta(hours=1)) + 1):
        clock.set(START + timedelta(hours=hour))
        per_hour.append(eng.dispatch_due(batch=100_000).claimed)
    eng.close()
    Path(sys.argv[1]).write_text(json.dumps(per_hour))
    hours, claims = Counter(), Counter()
    for n in per_hour:
        band = max((b for b in BINS if n >= b), default=0)
        hours[band] += 1
        claims[band] += n
    for band in sorted(hours):
        print(f"hours with >= {band} claims (below the next band): {hours[band]}, claims {claims[band]}")


if __name__ == "__main__":
    main()
