"""Plan the bench's patients, then run its 1-worker dispatch loop in this process under cProfile (branch pgsim).

    PYTHONPATH=<code root or empty> python benchmarks/pgsim_profile_dispatch.py <scratch db> <patients> <out.pstats>

NOPROF=1 runs it without the profiler. Compare two runs' call counts per function with pstats."""
import cProfile, os, pstats, sys, tempfile, time
from datetime import timedelta
from pathlib import Path
import psycopg
S = "postgresql://postgres@127.0.0.1:5432"
if __name__ == "__main__":
    name, size, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with psycopg.connect(S + "/postgres", autocommit=True) as a:
        a.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'); a.execute(f'CREATE DATABASE "{name}"')
    import carepath
    from carepath.bench.runs import plan_in_child
    from carepath.bench.workload import HORIZON, START, engine
    from carepath.runtime.clock import VirtualClock
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    home = Path(tempfile.mkdtemp())
    plan_in_child(size, url, home)
    clock = VirtualClock(START)
    eng = engine(url, home, clock, worker_id="bench-0")
    with eng.db.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    prof = cProfile.Profile() if os.environ.get("NOPROF") is None else None
    c0, t0 = os.times(), time.perf_counter()
    if prof: prof.enable()
    claimed = 0
    for hour in range(1, int(HORIZON / timedelta(hours=1)) + 1):
        clock.set(START + timedelta(hours=hour))
        claimed += eng.dispatch_due(batch=500).claimed
    if prof: prof.disable()
    c1 = os.times()
    print(carepath.__file__, "claimed", claimed, "cpu", round(c1.user - c0.user + c1.system - c0.system, 2), "wall", round(time.perf_counter() - t0, 2))
    eng.close()
    if prof:
        st = pstats.Stats(prof); st.dump_stats(out)
        print("total calls", st.total_calls, "primitive", st.prim_calls)
    with psycopg.connect(S + "/postgres", autocommit=True) as a:
        a.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
