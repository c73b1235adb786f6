"""The crash test: a dispatcher in a child process, killed with SIGKILL at random points while it sends.

It sends over loopback HTTP to a :class:`~tests.reliability.sink.KeySink`, a provider that does
not deduplicate, so every re-send is seen. ``CAREPATH_CRASH_KILLS`` sets the number of kills
(6 by default; docs/reliability.md has a 200-kill run); ``CAREPATH_CRASH_SEED`` the random seed.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select as sql_select

from carepath.definition.events import PatientIn
from carepath.engine import Engine
from carepath.store.schema import Delivery, Touchpoint
from tests.reliability.sink import KeySink, SinkChannel, SinkConfig, crash_journey

KILLS = int(os.environ.get("CAREPATH_CRASH_KILLS", "6"))
SEED = int(os.environ.get("CAREPATH_CRASH_SEED", "7"))
LEASE_S = 1.0
REPO = Path(__file__).resolve().parents[2]


def _child(url: str, home: Path, sink_url: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.reliability.crash_child", url, str(home), sink_url,
                             str(LEASE_S)], cwd=REPO, stdout=subprocess.PIPE, stderr=log.open("w"), text=True)


def _wait_for(child: subprocess.Popen, word: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([child.stdout], [], [], max(deadline - time.monotonic(), 0))
        if not ready:
            break
        line = child.stdout.readline()
        if not line:
            return False  # the child exited
        if line.strip() == word:
            return True
    return False


def test_sigkill_at_random_points_loses_nothing_and_resends_only_what_was_in_flight(database_url, settings,
                                                                                      tmp_path):
    n = max(200, KILLS * 30)
    engine = Engine(database_url, journeys=[crash_journey()], templates={}, settings=settings,
                    channels={"sink": SinkChannel("sink", SinkConfig(url="http://127.0.0.1:9/unused"))})
    ids = engine.upsert_patients([PatientIn(mrn=f"K{i}", name="患者") for i in range(n)])
    assert engine.enroll_many("crash", [(pid, {}) for pid in ids]) == n
    rng = random.Random(SEED)
    kills = 0
    started = time.monotonic()
    with KeySink() as sink:
        for k in range(KILLS):
            child = _child(database_url, settings.home, sink.url, tmp_path / f"child-{k}.log")
            assert _wait_for(child, "ready", 60), (tmp_path / f"child-{k}.log").read_text()
            time.sleep(rng.uniform(0.05, 0.6))
            alive = child.poll() is None
            child.send_signal(signal.SIGKILL)
            child.wait(30)
            child.stdout.close()
            kills += alive
        last = _child(database_url, settings.home, sink.url, tmp_path / "last.log")
        finished = _wait_for(last, "done", 600)
        last.kill()
        last.wait(30)
        last.stdout.close()
        assert finished, (tmp_path / "last.log").read_text()
        counts = sink.keys()
    with engine.db.connect() as conn:
        tps = conn.execute(sql_select(Touchpoint.id, Touchpoint.idempotency_key, Touchpoint.status)).all()
        statuses = dict(conn.execute(sql_select(Delivery.status, func.count()).group_by(Delivery.status)).all())
        last_calls = conn.execute(sql_select(Delivery.touchpoint_id, Delivery.status).where(
            Delivery.attempt == sql_select(func.max(Delivery.attempt)).where(
                Delivery.touchpoint_id == Touchpoint.id).correlate(Touchpoint).scalar_subquery()).join(
            Touchpoint, Touchpoint.id == Delivery.touchpoint_id)).all()
    engine.close()
    expected = {f"{t.idempotency_key}:sink" for t in tps}
    resends = sum(c - 1 for c in counts.values())
    print(f"\ncrash test: {kills} kills landed of {KILLS}, {n} messages, {resends} same-key re-sends "
          f"(at most {max(counts.values())} arrivals of one key), delivery rows {statuses}, "
          f"{time.monotonic() - started:.0f} s")
    assert kills >= 1
    assert set(counts) - expected == set(), "messages under a second key"
    assert expected - set(counts) == set(), "messages lost"
    assert resends <= kills, "more re-sends than messages in flight at the kills (one call at a time)"
    assert {t.status for t in tps} == {"sent"}, "nothing left claimed, scheduled or quarantined"
    assert "sending" not in statuses
    assert len(last_calls) == n and {s for _, s in last_calls} == {"sent"}, "no touchpoint left on an unknown call"
