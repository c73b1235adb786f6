"""The crash test's child: a dispatcher sending to a :class:`~tests.reliability.sink.KeySink` until killed.

``python -m tests.reliability.crash_child DATABASE_URL HOME SINK_URL LEASE_SECONDS``: prints
``ready`` once the engine is open, dispatches, and prints ``done`` and exits when no touchpoint
is left scheduled or claimed.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from carepath.engine import Engine
from carepath.settings import Settings
from carepath.store.schema import Touchpoint
from tests.reliability.sink import SinkChannel, SinkConfig, crash_journey


def main(url: str, home: str, sink_url: str, lease: float) -> None:
    engine = Engine(url, journeys=[crash_journey()], channels={"sink": SinkChannel("sink", SinkConfig(url=sink_url))},
                    templates={}, settings=Settings(home=Path(home)), lease=timedelta(seconds=lease))
    print("ready", flush=True)
    while True:
        if engine.dispatch_due(batch=50).claimed:
            continue
        with engine.db.connect() as conn:
            left = conn.execute(select(func.count()).select_from(Touchpoint).where(
                Touchpoint.status.in_(("scheduled", "claimed")))).scalar()
        if not left:
            print("done", flush=True)
            return
        time.sleep(0.05)  # a dead worker's lease has not run out yet


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]))
