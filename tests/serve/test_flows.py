"""The journey and maintenance flows as Prefect sees them: deployable, named, and honest about failures."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from carepath.connectors.outbox import OutboxChannel, OutboxConfig
from carepath.definition.dsl import enroll_on, journey, on, send, step, template
from carepath.definition.events import EventIn, PatientIn
from carepath.engine import Engine
from carepath.flows import run_window

pytestmark = pytest.mark.prefect


def _journey():
    return journey("fail-check", enroll=enroll_on("appointment.booked"), templates=[template("hi", "您好")],
                   steps=[step("hi", "pre_visit", on("appointment.booked"), send("hi", ["sms", "outbox"]))])


def test_a_journey_flow_can_be_deployed_with_a_parameter_schema():
    from carepath.flows import journey_flow, maintenance_flow

    deployment = journey_flow("deploy-check").to_deployment(name="carepath-serve", interval=timedelta(seconds=30),
                                                            tags=["journey:deploy-check"])
    schema = deployment._parameter_openapi_schema.model_dump()["properties"]
    assert schema["start"]["anyOf"][0] == {"format": "date-time", "type": "string"}
    assert {"end", "tick_minutes", "batch", "interval_seconds"} <= set(schema)
    assert deployment.schedules and deployment.tags == ["journey:deploy-check"]
    assert maintenance_flow().to_deployment(name="carepath-serve", interval=60).name == "carepath-serve"


def test_run_names_say_the_journey_and_its_window():
    shanghai = timezone(timedelta(hours=8))
    day = datetime(2026, 5, 1, tzinfo=shanghai)
    assert run_window("opd", day, day + timedelta(hours=23, minutes=30), None, 0) == \
        "opd 2026-05-01 00:00–23:30 +08:00"
    scheduled = datetime(2026, 5, 1, 1, 0, 30, tzinfo=timezone.utc)
    assert run_window("opd", None, None, scheduled, 30) == "opd 2026-05-01 01:00:00–01:00:30 UTC"
    assert run_window("opd", None, None, scheduled, 0) == "opd due by 2026-05-01 01:00:30 UTC"


def test_a_run_with_failed_touchpoints_completes_with_failures(prefect_harness, database_url, settings, clock):
    from prefect.client.orchestration import get_client

    from carepath.flows import journey_flow, use_engine

    # the outbox refuses everything permanently; ``sms`` is not configured: the message cannot go out
    refusing = OutboxChannel("outbox", OutboxConfig(simulate_permanent_rate=1.0))
    engine = Engine(database_url, journeys=[_journey()], channels={"outbox": refusing}, templates={}, clock=clock,
                    settings=settings)
    engine.upsert_patient(PatientIn(mrn="F1", phone="13900001111"))
    engine.ingest(EventIn(type="appointment.booked", source="t", source_id="1", patient_mrn="F1",
                          occurred_at=clock.now(), payload={"appointment_id": "A1",
                                                             "start": (clock.now() + timedelta(days=2)).isoformat()}),
                  dispatch_urgent=False)
    use_engine(engine)
    state = journey_flow("fail-check")(return_state=True)
    assert state.is_completed() and state.name == "Completed with failures"
    assert state.result() == {"pre_visit": {"failed": 1}}
    with get_client(sync_client=True) as client:  # a plain filter body: see tests/test_flows_and_demo.py
        artifacts = client._client.post("/artifacts/filter", json={"limit": 200, "offset": 0}).json()
    [text] = [a["data"] for a in artifacts if a["flow_run_id"] == str(state.state_details.flow_run_id)]
    assert "| pre_visit | hi | outbox | failed | 1 |" in text  # the counts
    assert "| 1 | 1 | pre_visit | hi | - | failed |" in text  # the failure: touchpoint, patient, ...
    assert "sms: channel not configured" in text and "13900001111" not in text
    assert journey_flow("fail-check")(return_state=True).name == "Completed"  # nothing failed since
    engine.close()
