"""`carepath serve` sends a due-now message as soon as its event is ingested, not at the next scheduled run.

The journeys run every hour (``CAREPATH_DISPATCH_INTERVAL=3600``): only the due-now wake-up can
explain a booking confirmation sent while serve runs, and the touchpoint says which dispatcher
sent it (the worker's due-now dispatcher, ``<worker>-now``). Operators see that work as a flow
run of the journey's flow named "… due now …".
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import requests
from sqlalchemy import create_engine, select

pytestmark = pytest.mark.prefect
pytest.importorskip("carepath_plugin_example",
                    reason="example plugin not installed: pip install ./docs/examples/carepath-plugin-example")
from tests.serve.helpers import (SINK_SECRET, STALL, CountingSink, ServeProcess, daytime_zone, serve_env,  # noqa: E402
                                 serve_instance, wait_for)
from tests.serve.test_serve_prefect import _prefect_state  # noqa: E402

TOKEN = "due-now-test-token-0000000000001"


def test_a_due_now_message_goes_out_at_once_under_serve_not_at_the_next_run(prefect_server, database_url, tmp_path,
                                                                             monkeypatch):
    from carepath.store.schema import Touchpoint

    monkeypatch.setenv("SERVE_TEST_WEBHOOK_SECRET", SINK_SECRET)
    with CountingSink() as sink:
        config = tmp_path / "carepath.toml"
        config.write_text(f'[connectors.wechat]\ntype = "webhook"\nurl = "{sink.url}"\n'
                          f'secret = {{env = "SERVE_TEST_WEBHOOK_SECRET"}}\naddress = "phone"\n\n'
                          f'[journeys]\nenabled = ["outpatient-visit"]\n', encoding="utf-8")
        env = serve_env({"PREFECT_API_URL": prefect_server.api_url, "PREFECT_HOME": str(tmp_path / "prefect-home"),
                         "CAREPATH_DATABASE_URL": database_url, "CAREPATH_HOME": str(tmp_path / "home"),
                         "CAREPATH_CONFIG": str(config), "CAREPATH_DISPATCH_INTERVAL": "3600",
                         "CAREPATH_MAINTENANCE_INTERVAL": "3600", "CAREPATH_WORKER_ID": "due-now-worker",
                         "CAREPATH_EVENTS_TOKEN": TOKEN})
        started = datetime.now(timezone.utc)
        serve = ServeProcess(env, tmp_path / "serve.log").wait_ready()
        instance = serve_instance(serve)
        try:
            start = (datetime.now(timezone.utc) + timedelta(days=3)).isoformat()
            booked = {"type": "appointment.booked", "source": "his", "source_id": "b-due-now", "patient_mrn": "N1",
                      "occurred_at": datetime.now(timezone.utc).isoformat(),
                      "payload": {"appointment_id": "A1", "department": "内科", "start": start,
                                  "patient": {"name": "王五", "phone": "13911112222", "tz": daytime_zone()}}}
            answer = requests.post(f"{serve.url}/events", data=json.dumps(booked),
                                   headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
            assert answer.status_code == 200, answer.text
            wait_for(lambda: sink.keys(), STALL, "the booking confirmation at the provider", about=serve)
        finally:
            code = serve.terminate()
        out = serve.output()
        assert code == 0 and "Traceback" not in out, out
    assert len(sink.requests) == 1 and sum(sink.requests.values()) == 1  # once
    db = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with db.connect() as conn:
        status, sent_by = conn.execute(select(Touchpoint.status, Touchpoint.claimed_by)
                                       .where(Touchpoint.step == "booking-confirmation")).one()
    db.dispose()
    assert (status, sent_by) == ("sent", "due-now-worker-now")  # the due-now dispatcher, not a scheduled run
    state = _prefect_state(prefect_server.api_url, started, instance, events=False)
    due_now_runs = [r for r in state["runs"] if state["flows"][r["flow_id"]] == "outpatient-visit"
                    and "due now" in r["name"]]
    assert due_now_runs and all(r["state_type"] == "COMPLETED" for r in due_now_runs)  # finished at SIGTERM
