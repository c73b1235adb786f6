"""The dispatch loop rides out a PostgreSQL restart: it backs off, logs once, resumes; nothing lost or sent twice."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from carepath.definition.events import PatientIn
from carepath.engine import Engine
from carepath.settings import Settings
from tests.engine import helpers as h
from tests.reliability.pgcluster import start_cluster, stop_cluster
from tests.reliability.sink import crash_journey


def test_dispatch_survives_a_postgresql_restart_mid_batch(tmp_path, clock, caplog):
    cluster = start_cluster()
    channel = h.RecordingChannel("sink", address_kind="none", sleep=0.01)
    engine = None
    try:
        engine = Engine(cluster.url, journeys=[crash_journey()], channels={"sink": channel}, templates={},
                        clock=clock, settings=Settings(home=tmp_path / "home"))
        ids = engine.upsert_patients([PatientIn(mrn=f"R{i}", name="患者") for i in range(200)])
        assert engine.enroll_many("crash", [(pid, {}) for pid in ids]) == 200
        caplog.set_level(logging.INFO)
        outcome: dict = {}

        def run() -> None:
            try:
                outcome["report"] = engine.dispatch_due(batch=50)
            except BaseException as exc:  # surfaced below
                outcome["error"] = exc

        worker = threading.Thread(target=run)
        worker.start()
        deadline = time.monotonic() + 60
        while len(channel.keys) < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        cluster.restart()  # every session is terminated: AdminShutdown, then refused connections
        worker.join(120)
        assert not worker.is_alive()
        assert "error" not in outcome, outcome.get("error")
        assert outcome["report"].sent == 200
        rows = h.touchpoints(engine)
        assert {t.status for t in rows} == {"sent"}
        assert Counter(channel.keys) == Counter(f"{t.idempotency_key}:sink" for t in rows), "each key sent once"
        assert {d.status for d in h.deliveries(engine)} == {"sent"}
        warnings = [r for r in caplog.records if r.name == "carepath.database" and r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "database unavailable" in warnings[0].getMessage(), "logged once"
        assert engine.dispatcher.guard.outages == 1
    finally:
        if engine is not None:
            engine.close()
        stop_cluster(cluster)
