"""Pages the SQLite dispatch sweep writes, by table and index: what its commits cost.

    python benchmarks/sweep_fresh.py plan 10000 /tmp/base10k   # once
    python benchmarks/wal_pages.py /tmp/base10k                # sweep a copy with the WAL never checkpointed

Every commit appends each page it changed to the WAL (a 24-byte frame header and the page), and a
checkpoint later copies the newest version of each page into the database file: a commit's CPU grows
with the pages it changed. The sweep here runs as ``sweep_fresh.py`` runs it, with automatic
checkpoints off; the WAL's frame headers then name every page written, and SQLite's ``dbstat`` table
(read on a copy taken at the end) says which table or index each page belongs to.
"""
import collections
import shutil
import sqlite3
import struct
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import carepath.store.database as database
from carepath.bench.workload import START, engine
from carepath.runtime.clock import VirtualClock


def frames(wal: bytes, start: int) -> list[int]:
    """The page numbers of the WAL's frames from byte ``start`` on (a 32-byte header, then frames)."""
    page_size = struct.unpack(">I", wal[8:12])[0]
    out, at = [], max(32, start)
    while at + 24 + page_size <= len(wal):
        out.append(struct.unpack(">I", wal[at:at + 4])[0])
        at += 24 + page_size
    return out


def main(base: Path) -> None:
    database.WAL_CHECKPOINT_PAGES = 0  # no automatic checkpoint: every frame stays in the WAL
    home, copy = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    shutil.copytree(base, home, dirs_exist_ok=True)
    clock = VirtualClock(START)
    eng = engine(f"sqlite:///{home / 'p.db'}", home, clock)
    wal = home / "p.db-wal"
    start = wal.stat().st_size if wal.exists() else 0  # what opening the store wrote is not the sweep's
    for hour in range(1, 50 * 24 + 1):
        clock.set(START + timedelta(hours=hour))
        eng.dispatch_due(batch=500)
    for name in ("p.db", "p.db-wal"):
        shutil.copy(home / name, copy / name)
    eng.db.dispose()
    written = frames((copy / "p.db-wal").read_bytes(), start)
    names = dict(sqlite3.connect(copy / "p.db").execute("SELECT pageno, name FROM dbstat"))
    by_name = collections.Counter(names.get(p, "?") for p in written)
    print(f"{len(written)} pages written ({len(set(written))} distinct)")
    for name, n in by_name.most_common():
        print(f"{n:8d} {100 * n / len(written):5.1f} %  {name}")
    shutil.rmtree(home)
    shutil.rmtree(copy)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
