"""The crash test: a dispatcher in a child process, killed with SIGKILL at random points while it sends.

It sends over loopback HTTP to a :class:`~tests.reliability.sink.KeySink`, a provider that does
not deduplicate, so every re-send is seen. ``CAREPATH_CRASH_KILLS`` sets the number of kills
(6 by default; docs/reliability.md has a 200-kill run); ``CAREPATH_CRASH_SEED`` the random seed.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time

import pytest
from sqlalchemy import func, select

from carepath.definition.events import PatientIn
from carepath.engine import Engine
from carepath.store.schema import Delivery, Touchpoint
from tests.clocks import DaytimeClock
from tests.reliability import crash_child
from tests.reliability.sink import KeySink, SinkChannel, SinkConfig, crash_journey

KILLS = int(os.environ.get("CAREPATH_CRASH_KILLS", "6"))
SEED = int(os.environ.get("CAREPATH_CRASH_SEED", "7"))
LEASE_S = 1.0
SINK_LATENCY_S = 0.005
# children are forked from a fork server that imported only the child's modules: forking the test process itself
# (an xdist worker with threads, and whatever earlier tests left in it) let a child inherit that state, and one in
# a few suite runs died on its own; the engine still opens after the fork, so kill timing is unchanged
FORK = multiprocessing.get_context("forkserver")
FORK.set_forkserver_preload(["tests.reliability.crash_child"])


def _child(url: str, home: str, sink_url: str, clock: DaytimeClock) -> tuple:
    ready, done = FORK.Event(), FORK.Event()
    child = FORK.Process(target=crash_child.run, args=(url, home, sink_url, LEASE_S, clock.offset, ready, done),
                         daemon=True)
    child.start()
    return child, ready, done


# alone (under xdist the other worker waits): kill times are real seconds against 1 s leases, and a neighbour's
# load makes a child slow enough to die three times on one touchpoint, which quarantine then rightly sets aside
@pytest.mark.serial
def test_sigkill_at_random_points_loses_nothing_and_resends_only_what_was_in_flight(database_url, settings):
    n = max(200, KILLS * 30)
    clock = DaytimeClock()  # real seconds for the leases; the messages are due whatever the hour here
    engine = Engine(database_url, journeys=[crash_journey()], templates={}, settings=settings, clock=clock,
                    channels={"sink": SinkChannel("sink", SinkConfig(url="http://127.0.0.1:9/unused"))})
    ids = engine.upsert_patients([PatientIn(mrn=f"K{i}", name="患者") for i in range(n)])
    assert engine.enroll_many("crash", [(pid, {}) for pid in ids]) == n
    rng = random.Random(SEED)
    kills = 0
    started = time.monotonic()
    engine.close()  # the children open their own connections
    # each answer takes a few milliseconds, as a provider's does: a child sending faster than the kill comes would
    # otherwise finish every message before it (0 kills landed, once, on a quiet machine)
    with KeySink(latency=SINK_LATENCY_S) as sink:
        for _ in range(KILLS):
            child, ready, _ = _child(database_url, str(settings.home), sink.url, clock)
            assert ready.wait(60), f"child exited with {child.exitcode} before it was ready"
            time.sleep(rng.uniform(0.05, 0.6))
            alive = child.is_alive()  # a child that finished early was reaped here: nothing to kill
            if alive:
                os.kill(child.pid, signal.SIGKILL)
            child.join(30)
            error = settings.home / "child-error.txt"
            assert alive or child.exitcode == 0, (f"a child died on its own (exit code {child.exitcode}):\n"
                                                  + (error.read_text() if error.exists() else "(no traceback)"))
            kills += alive
        last, _, done = _child(database_url, str(settings.home), sink.url, clock)
        finished = done.wait(120 + n * 0.1)  # a stuck last child fails in minutes, not CI's hour
        if last.is_alive():
            os.kill(last.pid, signal.SIGKILL)
        last.join(30)
        assert finished, f"the last child did not finish (exit code {last.exitcode})"
        counts = sink.keys()
    engine = Engine(database_url, journeys=[crash_journey()], templates={}, settings=settings, channels={})
    with engine.db.connect() as conn:
        tps = conn.execute(select(Touchpoint.id, Touchpoint.idempotency_key, Touchpoint.status)).all()
        statuses = dict(conn.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all())
        last_calls = conn.execute(select(Delivery.touchpoint_id, Delivery.status).where(
            Delivery.attempt == select(func.max(Delivery.attempt)).where(
                Delivery.touchpoint_id == Touchpoint.id).correlate(Touchpoint).scalar_subquery()).join(
            Touchpoint, Touchpoint.id == Delivery.touchpoint_id)).all()
    engine.close()
    expected = {f"{t.idempotency_key}:sink" for t in tps}
    resends = sum(c - 1 for c in counts.values())
    quarantined = sum(t.status == "quarantined" for t in tps)
    print(f"\ncrash test: {kills} kills landed of {KILLS}, {n} messages, {resends} same-key re-sends "
          f"(at most {max(counts.values())} arrivals of one key), {quarantined} quarantined, delivery rows {statuses}, "
          f"{time.monotonic() - started:.0f} s")
    assert kills >= 1
    assert set(counts) - expected == set(), "messages under a second key"
    assert expected - set(counts) == set(), "messages lost"
    assert resends <= kills, "more re-sends than messages in flight at the kills (one call at a time)"
    assert {t.status for t in tps} == {"sent"}, "nothing left claimed, scheduled or quarantined"
    assert "sending" not in statuses
    assert len(last_calls) == n and {s for _, s in last_calls} == {"sent"}, "no touchpoint left on an unknown call"
