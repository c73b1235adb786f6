"""Planning in CPU time: python benchmarks/plan_cpu.py [patients] [--distinct] [--postgres URL]

Adds the bench's patients (not timed), then times ``Engine.enroll_many`` over them in the bench's
chunks, as ``carepath bench`` does (``carepath.bench.runs._plan``), and prints the process's CPU
seconds: on SQLite all of the work, on PostgreSQL the client's. ``--distinct`` gives every patient an
appointment of their own (a second apart), so that no two plans are alike: the planner's worst case.
Pin it to one core (``taskset -c 1``) and run it alternately with the code it is compared with.
"""
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from carepath.bench.workload import (BENCH_JOURNEY, BOOKING, CHUNK, START, Scratch, add_patients, bookings, engine,
                                     load_average)
from carepath.runtime.clock import VirtualClock

if __name__ == "__main__":
    args = sys.argv[1:]
    size = int(args[0]) if args and args[0].isdigit() else 10000
    postgres = args[args.index("--postgres") + 1] if "--postgres" in args else None
    home = Path(tempfile.mkdtemp(prefix="plan-cpu-"))
    with Scratch("postgresql" if postgres else "sqlite", home, postgres) as url:
        eng = engine(url, home, VirtualClock(START))
        items = bookings(add_patients(eng, size), seed=size)
        if "--distinct" in args:
            items = [(pid, {k: v + timedelta(seconds=i) for k, v in anchors.items()})
                     for i, (pid, anchors) in enumerate(items)]
        cpu0, t0 = os.times(), time.perf_counter()
        planned = sum(eng.enroll_many(BENCH_JOURNEY, items[i:i + CHUNK], context=BOOKING)
                      for i in range(0, len(items), CHUNK))
        cpu1, seconds = os.times(), time.perf_counter() - t0
        eng.close()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    print(f"{planned} touchpoints for {size} patients: {cpu:.2f} CPU-s, {seconds:.2f} s, "
          f"load {' '.join(f'{x:.2f}' for x in load_average())}")
