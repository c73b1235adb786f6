"""Three `carepath serve` workers on one PostgreSQL, one killed (SIGKILL) mid-run: every touchpoint sent once.

A loopback sink counts every request per idempotency key. The killed
worker's claims expire (a 4 s lease here) and the others take them over; a
message that was in flight at the kill is resent with the same key, which
the provider deduplicates, so every touchpoint ends up with one accepted
message. Bounded by default (90 touchpoints); ``CAREPATH_SCALE_TOUCHPOINTS``
makes it bigger.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from tests.conftest import ON_POSTGRES

pytestmark = [pytest.mark.prefect, pytest.mark.postgres,
              pytest.mark.skipif(not ON_POSTGRES, reason="needs PostgreSQL (several workers share one database): "
                                                         "set CAREPATH_TEST_DATABASE_URL=postgresql://...")]
example = pytest.importorskip("carepath_plugin_example",
                              reason="example plugin not installed: pip install ./docs/examples/carepath-plugin-example")
from tests.serve.helpers import (SINK_SECRET, STALL, CountingSink, ServeProcess, daytime_zone, serve_env, wait_for,  # noqa: E402
                                 webhook_config)
TOUCHPOINTS = int(os.environ.get("CAREPATH_SCALE_TOUCHPOINTS", "90"))


def _seed(engine, n: int) -> None:
    """``n`` discharged patients whose day-one follow-up (webhook) is due now."""
    from carepath.definition.events import PatientIn

    tz = daytime_zone()
    ids = engine.upsert_patients([PatientIn(mrn=f"P{i:04d}", name="病人", phone=f"139{i:08d}", tz=tz)
                                  for i in range(n)])
    discharged = engine.clock.now()
    assert engine.enroll_many("webhook-followup", [(pid, {"discharge": discharged}) for pid in ids]) == n


def test_three_workers_one_killed_every_touchpoint_sent_exactly_once(prefect_server, database_url, tmp_path,
                                                                     monkeypatch):
    from carepath.config import build_channels, load_config
    from carepath.engine import Engine
    from carepath.runtime.clock import VirtualClock
    from carepath.settings import Settings
    from carepath.store.schema import Delivery, Touchpoint

    monkeypatch.setenv("SERVE_TEST_WEBHOOK_SECRET", SINK_SECRET)
    home = tmp_path / "home"
    with CountingSink(delay=0.03) as sink:
        config = webhook_config(tmp_path / "carepath.toml", sink.url)
        base = {"PREFECT_API_URL": prefect_server.api_url, "PREFECT_HOME": str(tmp_path / "prefect-home"),
                "CAREPATH_DATABASE_URL": database_url, "CAREPATH_HOME": str(home), "CAREPATH_CONFIG": str(config),
                "CAREPATH_DISPATCH_INTERVAL": "1", "CAREPATH_MAINTENANCE_INTERVAL": "2",
                "CAREPATH_DISPATCH_BATCH": "10", "CAREPATH_LEASE_SECONDS": "4"}
        # the key file is created once, before the workers start, so all of them share it
        planner = Engine(database_url, journeys=[example.followup_journey],
                         channels=build_channels(load_config(config)), settings=Settings(home=home),
                         clock=VirtualClock(datetime.now(timezone.utc) - timedelta(days=2)))
        def start(name: str) -> ServeProcess:
            return ServeProcess(serve_env(base, CAREPATH_WORKER_ID=name), tmp_path / f"{name}.log")

        workers = {"w1": start("w1")}
        try:
            # a rolling start: the first registers the deployments, the others find them registered
            workers["w1"].wait_ready(timeout=120)
            workers.update({name: start(name) for name in ("w2", "w3")})
            for worker in workers.values():
                worker.wait_ready(timeout=120)
            _seed(planner, TOUCHPOINTS)

            def holder() -> str | None:
                """A worker in the middle of a batch, once a quarter of the messages are out."""
                if len(sink.keys()) < TOUCHPOINTS // 4:
                    return None
                with planner.db.connect() as conn:
                    return conn.execute(select(Touchpoint.claimed_by).where(Touchpoint.status == "claimed")
                                        .limit(1)).scalar()

            victim = wait_for(holder, STALL, "a worker holding claims", every=0.05)
            workers[victim].kill()
            with planner.db.connect() as conn:
                orphaned = set(conn.execute(select(Touchpoint.idempotency_key).where(
                    Touchpoint.status == "claimed", Touchpoint.claimed_by == victim)).scalars())
            assert orphaned, "the victim held no claims: not killed mid-run"

            def all_sent() -> bool:
                with planner.db.connect() as conn:
                    return conn.execute(select(func.count()).select_from(Touchpoint)
                                        .where(Touchpoint.status == "sent")).scalar() == TOUCHPOINTS

            wait_for(all_sent, STALL, f"all {TOUCHPOINTS} touchpoints sent")
            for name, worker in workers.items():
                if name != victim:
                    assert worker.terminate() == 0, worker.output()
        finally:
            for worker in workers.values():
                if worker.process.poll() is None:
                    worker.kill()

    with planner.db.connect() as conn:
        keys = set(conn.execute(select(Touchpoint.idempotency_key)).scalars())
        sent_deliveries = conn.execute(select(Delivery.touchpoint_id, func.count()).where(Delivery.status == "sent")
                                       .group_by(Delivery.touchpoint_id)).all()
        senders = set(conn.execute(select(Touchpoint.claimed_by)).scalars())
    planner.close()
    assert sink.keys() == {f"{k}:webhook" for k in keys}  # every touchpoint reached the provider
    accepted = [m["id"] for m in sink.messages]
    assert sorted(accepted) == sorted(sink.keys())  # and the provider accepted each exactly once
    assert len(sent_deliveries) == TOUCHPOINTS  # every touchpoint has its sent delivery recorded
    resent = {k for k, n in sink.requests.items() if n > 1}
    assert resent <= {f"{k}:webhook" for k in orphaned}  # only what was in flight at the kill was retried
    assert senders - {victim}  # the survivors took over
