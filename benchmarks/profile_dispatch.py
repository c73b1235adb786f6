"""Profile the dispatch sweep (cProfile) and group the time by where it goes: python benchmarks/profile_dispatch.py 3000 out.pstats"""
import collections
import cProfile
import pstats
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from carepath.bench.workload import BENCH_JOURNEY, BOOKING, CHUNK, START, add_patients, bookings, engine
from carepath.runtime.clock import VirtualClock
if __name__ == "__main__":
    size = int(sys.argv[1]); out = sys.argv[2]
    home = Path(tempfile.mkdtemp()); url = f"sqlite:///{home/'p.db'}"
    clock = VirtualClock(START); eng = engine(url, home, clock)
    items = bookings(add_patients(eng, size), seed=size)
    for i in range(0, len(items), CHUNK):
        eng.enroll_many(BENCH_JOURNEY, items[i:i+CHUNK], context=BOOKING)
    pr = cProfile.Profile(time.thread_time); t0 = time.perf_counter(); c0 = time.thread_time(); pr.enable()
    for h in range(1, 50*24+1):
        clock.set(START + timedelta(hours=h)); eng.dispatch_due(batch=500)
    pr.disable(); dt = time.perf_counter() - t0; cpu = time.thread_time() - c0
    pr.dump_stats(out)
    st = pstats.Stats(pr); cats = collections.Counter(); total = 0
    for (file, line, fn), (cc, nc, tt, ct, callers) in st.stats.items():
        total += tt
        if "sqlalchemy" in file: c = "SQLAlchemy (statement building, compiling, row processing)"
        elif fn in ("<method 'commit' of 'sqlite3.Connection' objects>",) or "commit" in fn and "sqlite3" in fn: c = "commits"
        elif "sqlite3" in fn or "psycopg" in file: c = "driver (execute, executemany, fetch)"
        elif "jinja2" in file or "sandbox.py" in file: c = "Jinja (templates, sandbox)"
        elif "crypto" in file or "aead" in fn or "AESGCM" in fn or "b64decode" in fn or "base64" in file: c = "encryption"
        elif "json" in file: c = "JSON decoding"
        elif "prefect" in file: c = "Prefect"
        else: c = "per-row Python (decisions, context, datetimes, dispatcher)"
        cats[c] += tt
    print(f"{size} patients, dispatch {dt:.1f} s wall profiled, {cpu:.1f} CPU-s; profile total {total:.1f} CPU-s")
    for c, t in cats.most_common(): print(f"{100*t/total:5.1f} %  {c}")
