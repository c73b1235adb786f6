"""`carepath serve` against a real Prefect server: what operations staff see, read back through the Prefect client.

A real `prefect server start` runs on loopback (its own PREFECT_HOME and SQLite
database); `carepath serve` runs as a child process with PREFECT_API_URL
pointing at it, and is stopped with SIGTERM.
"""

from __future__ import annotations

import re
import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import insert, select


pytestmark = pytest.mark.prefect
example = pytest.importorskip("carepath_plugin_example",
                              reason="example plugin not installed: pip install ./docs/examples/carepath-plugin-example")
from tests.serve.helpers import (SINK_SECRET, STALL, CountingSink, ServeProcess, daytime_zone, prefect_read,  # noqa: E402
                                 serve_env, serve_instance, wait_for, webhook_config)


def _seed(database_url: str, home: Path, config: Path) -> dict:
    """A discharged patient whose follow-up is due (webhook), a booking whose confirmation cannot be sent
    (no wechat/sms configured) and a staff task past its SLA."""
    from carepath.config import build_channels, load_config
    from carepath.definition.events import EventIn, PatientIn
    from carepath.engine import Engine
    from carepath.journeys import HERE
    from carepath.definition.journey_files import load_journey_file
    from carepath.runtime.clock import VirtualClock
    from carepath.settings import Settings
    from carepath.store.schema import StaffTask

    now = datetime.now(timezone.utc)
    clock = VirtualClock(now - timedelta(days=2))
    outpatient = load_journey_file(HERE / "outpatient-visit.yaml")
    engine = Engine(database_url, journeys=[example.followup_journey, outpatient], clock=clock,
                    channels=build_channels(load_config(config)), settings=Settings(home=home))
    tz = daytime_zone(now)
    engine.upsert_patient(PatientIn(mrn="S1", name="张三", phone="13912345678", tz=tz))
    engine.upsert_patient(PatientIn(mrn="S2", name="李四", phone="13800001111", tz=tz))
    engine.ingest(EventIn(type="encounter.discharged", source="his", source_id="d1", patient_mrn="S1",
                          occurred_at=clock.now(), payload={}))
    booked = engine.ingest(EventIn(type="appointment.booked", source="his", source_id="b1", patient_mrn="S2",
                                   occurred_at=clock.now(), payload={"appointment_id": "A1", "department": "内科",
                                                                     "start": (now + timedelta(days=5)).isoformat()}))
    with engine.db.begin() as conn:
        conn.execute(insert(StaffTask).values(patient_id=1, kind="call_patient", team="nursing", status="open",
                                              detail="seeded", sla_due_at=now - timedelta(hours=1),
                                              created_at=now - timedelta(days=1)))
    assert booked.enrolled == ["outpatient-visit"]
    return {"engine": engine, "version": outpatient.version}


def _completed_runs(api_url: str, flow: str, since: datetime, instance: str) -> list:
    """The completed scheduled runs of ``flow`` by the carepath ``instance`` that started after ``since``, asked of
    the server by name, state, tag and time: the session's server also holds the other tests' runs (the same
    journeys, another instance), which can fill any page of all runs while this waits."""
    async def read(post) -> list:
        body = {"limit": 50, "offset": 0, "flows": {"name": {"any_": [flow]}},
                "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}, "tags": {"all_": [f"instance:{instance}"]},
                              "start_time": {"after_": since.isoformat()}}}
        # a scheduled run (its journey's "due now" run completes only when serve stops)
        return [r for r in await post("/flow_runs/filter", body) if " due now (from " not in r["name"]]

    return prefect_read(api_url, read)


def _prefect_state(api_url: str, started_after: datetime, instance: str, events: bool = True) -> dict:
    """Flows, and the runs ``instance`` started after ``started_after`` with their task runs, logs, artifacts and
    carepath events, read through the Prefect client. The server is the session's: other tests' runs (the same
    journey names, other instances) are there too, and must neither be counted nor push this test's off a page."""
    page = {"limit": 200, "offset": 0}

    async def read(post) -> dict:
        flows = {f["id"]: f["name"] for f in await post("/flows/filter", page)}
        runs = await post("/flow_runs/filter", {**page, "sort": "START_TIME_DESC", "flow_runs": {
            "state": {"type": {"not_any_": ["SCHEDULED"]}}, "tags": {"all_": [f"instance:{instance}"]},
            "start_time": {"after_": started_after.isoformat()}}})
        if not events:
            return {"flows": flows, "runs": runs}
        ids = [r["id"] for r in runs]
        since = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
        return {"flows": flows, "runs": runs,
                "task_runs": await post("/task_runs/filter", {**page, "task_runs": {}, "flow_runs": {"id": {"any_": ids}},
                                                              "sort": "EXPECTED_START_TIME_DESC"}),
                "logs": [log for run_id in ids  # per run: a page of all runs' logs may miss some
                         for log in await post("/logs/filter", {**page, "logs": {"flow_run_id": {"any_": [run_id]}}})],
                "artifacts": await post("/artifacts/filter", {**page, "sort": "CREATED_DESC"}),
                "events": (await post("/events/filter", {"limit": 50, "filter": {
                    "event": {"prefix": ["carepath."]}, "occurred": {"since": since}}}))["events"]}

    return prefect_read(api_url, read)


def test_serve_shows_named_tagged_runs_logs_artifacts_and_events(prefect_server, database_url, tmp_path, monkeypatch):
    from carepath.store.schema import Event, Touchpoint

    monkeypatch.setenv("SERVE_TEST_WEBHOOK_SECRET", SINK_SECRET)
    with CountingSink() as sink:
        config = webhook_config(tmp_path / "carepath.toml", sink.url)
        home = tmp_path / "home"
        seeded = _seed(database_url, home, config)
        engine = seeded["engine"]
        env = serve_env({"PREFECT_API_URL": prefect_server.api_url, "PREFECT_HOME": str(tmp_path / "prefect-home"),
                         "CAREPATH_DATABASE_URL": database_url, "CAREPATH_HOME": str(home),
                         "CAREPATH_CONFIG": str(config), "CAREPATH_DISPATCH_INTERVAL": "2",
                         "CAREPATH_MAINTENANCE_INTERVAL": "3", "CAREPATH_WORKER_ID": "ops-worker"})
        started = datetime.now(timezone.utc)
        serve = ServeProcess(env, tmp_path / "serve.log").wait_ready()

        def settled() -> bool:
            with engine.db.connect() as conn:
                statuses = dict(conn.execute(select(Touchpoint.step, Touchpoint.status)).all())
                breached = conn.execute(select(Event.id).where(Event.type == "task.sla_breached")).first()
            return (statuses.get("day-one-followup") == "sent" and statuses.get("booking-confirmation") == "failed"
                    and breached is not None)

        wait_for(settled, STALL, "the follow-up sent, the confirmation failed and the staff task's SLA breach recorded",
                 about=serve)

        instance = serve_instance(serve)

        def clean_outpatient_run() -> bool:  # a later run of this serve's, with nothing failing
            runs = _completed_runs(prefect_server.api_url, "outpatient-visit", started, instance)
            return any(r["state_name"] == "Completed" for r in runs)  # not "Completed with failures"

        wait_for(clean_outpatient_run, STALL, "a clean outpatient-visit run", every=1, about=serve)
        code = serve.terminate()
        out = serve.output()
        assert code == 0, out
        assert "stopped" in out and "Traceback" not in out
    assert len(sink.requests) == 1 and sum(sink.requests.values()) == 1  # sent once

    state = _prefect_state(prefect_server.api_url, started, instance)
    by_flow: dict[str, list] = {}
    due_now: dict[str, list] = {}
    for run in state["runs"]:  # a journey's due-now run (woken by ingest) is apart from its scheduled runs
        into = due_now if " due now (from " in run["name"] else by_flow
        into.setdefault(state["flows"][run["flow_id"]], []).append(run)
    assert {"outpatient-visit", "webhook-followup", "carepath-maintenance"} <= set(by_flow)
    assert {name: [r["state_type"] for r in runs] for name, runs in due_now.items() if runs} == {
        "outpatient-visit": ["COMPLETED"], "webhook-followup": ["COMPLETED"]}  # one per journey, ended at SIGTERM

    followups = [r for r in by_flow["webhook-followup"] if r["state_type"] == "COMPLETED"]
    assert followups, "no completed webhook-followup run"
    assert all(re.fullmatch(r"webhook-followup \d{4}-\d\d-\d\d \d\d:\d\d:\d\d–\d\d:\d\d:\d\d UTC", r["name"])
               for r in followups), [r["name"] for r in followups]
    outpatient = by_flow["outpatient-visit"]
    assert {"journey:outpatient-visit", f"version:{seeded['version']}"} <= set(outpatient[0]["tags"])
    failed_runs = [r for r in outpatient if r["state_name"] == "Completed with failures"]
    assert len(failed_runs) == 1, [(r["name"], r["state_name"]) for r in outpatient]
    assert [r for r in outpatient if r["state_name"] == "Completed"], "a run with nothing failing shows Completed"

    # stage tasks only for the stages a journey has (webhook-followup: post_visit only)
    followup_ids = {r["id"] for r in by_flow["webhook-followup"]}
    assert {t["name"] for t in state["task_runs"] if t["flow_run_id"] in followup_ids} == {"post_visit"}
    maintenance_ids = {r["id"] for r in by_flow["carepath-maintenance"]}
    assert {"reclaim_leases", "task_sla"} <= {t["name"] for t in state["task_runs"]
                                              if t["flow_run_id"] in maintenance_ids}

    messages = [log["message"] for log in state["logs"]]
    assert "post_visit: 1 claimed — 1 sent" in messages
    assert "pre_visit: 1 claimed — 1 failed" in messages

    [failure_artifact] = [a for a in state["artifacts"] if a["flow_run_id"] == failed_runs[0]["id"]]
    text = failure_artifact["data"]
    assert failure_artifact["key"] == "outpatient-visit-dispatch"
    assert "Failures (1)" in text and "booking-confirmation" in text and "channel not configured" in text
    assert "carepath patients timeline" in text and "| 2 |" in text  # patient id 2 for the timeline command
    assert not re.search(r"1[38]\d{9}", text)  # no contact data

    events = {e["event"]: e for e in state["events"]}
    failed = events["carepath.touchpoint.failed"]
    assert failed["resource"]["carepath.journey"] == "outpatient-visit"
    assert failed["resource"]["carepath.patient-id"] == "2"
    assert any(r["prefect.resource.id"] == f"prefect.flow-run.{failed_runs[0]['id']}" for r in failed["related"])
    breached = events["carepath.task.sla_breached"]
    assert breached["resource"]["carepath.task-kind"] == "call_patient" and breached["payload"]["deadline"] == "resolution"
    engine.close()


def test_sigterm_lets_the_send_in_flight_finish_and_records_it(prefect_server, database_url, tmp_path, monkeypatch):
    from carepath.store.schema import Delivery, Touchpoint

    monkeypatch.setenv("SERVE_TEST_WEBHOOK_SECRET", SINK_SECRET)
    with CountingSink(delay=3.0) as sink:  # the provider takes 3 s to answer
        config = webhook_config(tmp_path / "carepath.toml", sink.url)
        home = tmp_path / "home"
        engine = _seed(database_url, home, config)["engine"]
        env = serve_env({"PREFECT_API_URL": prefect_server.api_url, "PREFECT_HOME": str(tmp_path / "prefect-home"),
                         "CAREPATH_DATABASE_URL": database_url, "CAREPATH_HOME": str(home),
                         "CAREPATH_CONFIG": str(config), "CAREPATH_DISPATCH_INTERVAL": "2"})
        serve = ServeProcess(env, tmp_path / "serve.log").wait_ready()
        wait_for(sink.keys, STALL, "the follow-up to reach the provider", every=0.05, about=serve)
        serve.process.send_signal(signal.SIGUSR1)  # an operator asking a serve that seems stuck what it is doing
        code = serve.terminate()  # while the provider is still answering
        assert code == 0, serve.output()
        stacks = serve.output()
        assert "--- thread run-poller" in stacks and "serve_runs.py" in stacks, stacks  # every thread's stack
    with engine.db.connect() as conn:
        touchpoint = conn.execute(select(Touchpoint.status, Touchpoint.id).where(
            Touchpoint.step == "day-one-followup")).one()
        deliveries = conn.execute(select(Delivery.status, Delivery.provider_id).where(
            Delivery.touchpoint_id == touchpoint.id)).all()
    engine.close()
    assert touchpoint.status == "sent" and deliveries == [("sent", "wh-1")]
    assert sum(sink.requests.values()) == 1
