"""The crash test's child: a dispatcher sending to a :class:`~tests.reliability.sink.KeySink` until killed.

:func:`run` is the child process's main function. The test forks it from a process that has
imported everything already (a fresh interpreter would spend most of a short life importing),
so the child opens its own engine and connections after the fork.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from carepath.engine import Engine
from carepath.settings import Settings
from carepath.store.schema import Touchpoint
from tests.clocks import DaytimeClock
from tests.reliability.sink import SinkChannel, SinkConfig, crash_journey


def run(url: str, home: str, sink_url: str, lease: float, clock_offset: timedelta, ready: Any, done: Any) -> None:
    """Sets ``ready`` once the engine is open, dispatches, sets ``done`` when nothing is scheduled or claimed.
    A child that fails on its own leaves its traceback in ``HOME/child-error.txt`` for the test's message."""
    try:
        _run(url, home, sink_url, lease, clock_offset, ready, done)
    except BaseException:
        import traceback

        with open(Path(home) / "child-error.txt", "a", encoding="utf-8") as out:
            out.write(traceback.format_exc())
        raise


def _run(url: str, home: str, sink_url: str, lease: float, clock_offset: timedelta, ready: Any, done: Any) -> None:
    engine = Engine(url, journeys=[crash_journey()], channels={"sink": SinkChannel("sink", SinkConfig(url=sink_url))},
                    templates={}, settings=Settings(home=Path(home)), lease=timedelta(seconds=lease), migrate=False,
                    clock=DaytimeClock(clock_offset))
    ready.set()
    while True:
        if engine.dispatch_due(batch=50).claimed:
            continue
        with engine.db.connect() as conn:
            left = conn.execute(select(func.count()).select_from(Touchpoint).where(
                Touchpoint.status.in_(("scheduled", "claimed")))).scalar()
        if not left:
            done.set()
            return
        time.sleep(0.05)  # a dead worker's lease has not run out yet
