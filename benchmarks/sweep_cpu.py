"""CPU and bytes of the dispatch sweep, without a profiler: python benchmarks/sweep_cpu.py 3000

The sweep of ``profile_dispatch.py`` (the bench's workload, hour by hour over 50 days, batch 500), timed with the
thread's CPU clock, and what the process read and wrote (``/proc/self/io``: SQLite's pages, which CPU time alone
does not show). Compare two checkouts by running it alternately: on a shared machine one run says little.
"""
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from carepath.bench.workload import BENCH_JOURNEY, BOOKING, CHUNK, START, add_patients, bookings, engine
from carepath.runtime.clock import VirtualClock


def io() -> dict[str, int]:
    lines = Path("/proc/self/io").read_text().split("\n")
    return {k: int(v) for k, v in (line.split(": ") for line in lines if line)}


if __name__ == "__main__":
    size = int(sys.argv[1])
    home = Path(tempfile.mkdtemp())
    clock = VirtualClock(START)
    eng = engine(f"sqlite:///{home / 'p.db'}", home, clock)
    items = bookings(add_patients(eng, size), seed=size)
    for i in range(0, len(items), CHUNK):
        eng.enroll_many(BENCH_JOURNEY, items[i:i + CHUNK], context=BOOKING)
    before, cpu = io(), time.thread_time()
    for h in range(1, 50 * 24 + 1):
        clock.set(START + timedelta(hours=h))
        eng.dispatch_due(batch=500)
    cpu = time.thread_time() - cpu
    after = io()
    with eng.db.connect() as conn:
        sent = conn.exec_driver_sql("SELECT count(*) FROM outbox_messages").scalar()
    print(f"{size} patients: {sent} messages, {cpu:.2f} CPU-s, {sent / cpu:.0f} messages per CPU-s, "
          f"read {(after['rchar'] - before['rchar']) / 2**20:.0f} MiB, "
          f"written {(after['wchar'] - before['wchar']) / 2**20:.0f} MiB")
    eng.close()
