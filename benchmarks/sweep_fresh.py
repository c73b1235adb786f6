"""The dispatch sweep in a fresh process, as the bench's dispatcher runs it, with the garbage collector's share.

    python benchmarks/sweep_fresh.py plan 10000 /tmp/base10k   # plan once (any checkout: the planner is the same)
    python benchmarks/sweep_fresh.py sweep /tmp/base10k         # sweep a copy; run alternately with another checkout
    python benchmarks/sweep_fresh.py sweep /tmp/base2k 0        # start-up only (the hours to sweep; default all)

Instructions instead of CPU time (the same on a loaded machine, start-up subtracted: run with 0 hours too):
``valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null python benchmarks/sweep_fresh.py
sweep /tmp/base2k`` (about 40 times slower: plan 2,000 patients for it).

Prints the messages sent, the sweep's CPU seconds (``time.thread_time``) and the CPU spent in the cyclic garbage
collector (``gc.callbacks``), with the number of collections by generation.
"""
import collections
import gc
import os
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from carepath.bench.workload import BENCH_JOURNEY, BOOKING, CHUNK, START, add_patients, bookings, engine
from carepath.runtime.clock import VirtualClock


def plan(size: int, home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    eng = engine(f"sqlite:///{home / 'p.db'}", home, VirtualClock(START))
    items = bookings(add_patients(eng, size), seed=size)
    for i in range(0, len(items), CHUNK):
        eng.enroll_many(BENCH_JOURNEY, items[i:i + CHUNK], context=BOOKING)
    eng.close()


def messages(eng) -> int:
    """What reached the stand-in provider: the outbox rows."""
    with eng.db.connect() as conn:
        return conn.exec_driver_sql("SELECT count(*) FROM outbox_messages").scalar()


def sweep(base: Path, hours: int = 50 * 24) -> None:
    home = Path(tempfile.mkdtemp())
    shutil.copytree(base, home, dirs_exist_ok=True)
    clock = VirtualClock(START)
    eng = engine(f"sqlite:///{home / 'p.db'}", home, clock)
    in_gc, collections_by_gen, started = [0.0], collections.Counter(), [0.0]

    def timer(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.thread_time()
        else:
            in_gc[0] += time.thread_time() - started[0]
            collections_by_gen[info["generation"]] += 1

    gc.callbacks.append(timer)
    cpu = time.thread_time()
    for hour in range(1, hours + 1):
        clock.set(START + timedelta(hours=hour))
        eng.dispatch_due(batch=500)
    cpu = time.thread_time() - cpu
    sent = messages(eng)
    print(f"{sent} messages, {cpu:.2f} CPU-s, {sent / max(cpu, 1e-9):.0f} messages per CPU-s, garbage collector {in_gc[0]:.2f} "
          f"CPU-s in {dict(sorted(collections_by_gen.items()))} collections by generation, "
          f"load {os.getloadavg()[0]:.1f}")
    eng.close()
    shutil.rmtree(home)


if __name__ == "__main__":
    if sys.argv[1] == "plan":
        plan(int(sys.argv[2]), Path(sys.argv[3]))
    else:
        sweep(Path(sys.argv[2]), *(int(a) for a in sys.argv[3:4]))
