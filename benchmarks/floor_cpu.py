"""The SQLite dispatch floor in CPU time: python benchmarks/floor_cpu.py [patients] [times]

On a shared machine a rate moves with everyone else's work; CPU-seconds per message do much
less. This prints the floor's messages per CPU-second (SQLite runs in-process, so the process's
CPU time is all of the work), to set against ``messages_per_cpu_s`` of a ``carepath bench``
SQLite dispatch run (the worker's CPU time, which is likewise all of its work).
"""
import sys
import tempfile
from pathlib import Path

from carepath.bench.floor import dispatch_floor
from carepath.bench.workload import load_average

if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    for _ in range(int(sys.argv[2]) if len(sys.argv) > 2 else 2):
        f = dispatch_floor("sqlite", Path(tempfile.mkdtemp()), None, size)
        print(f"floor: {f.rows} messages, {f.per_s:,.0f} messages/s, {f.cpu_s:.2f} CPU-s, "
              f"{f.rows / f.cpu_s:,.0f} messages per CPU-s, load {' '.join(f'{x:.2f}' for x in load_average())}")
