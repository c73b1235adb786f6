"""Prefect integration: a journey is a flow named after it with one task per stage; the demo runs end to end.

These are the only tests that start Prefect (once, through the session harness).
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import func, select
from typer.testing import CliRunner

from carepath.definition.dsl import before, enroll_on, journey, on, send, step, template, anchor
from carepath.engine import Engine
from carepath.definition.events import EventIn, PatientIn
from carepath.store.schema import OutboxMessage, Touchpoint

pytestmark = pytest.mark.prefect


def _journey():
    return journey(
        "flow-check", enroll=enroll_on("appointment.booked"),
        anchors={"appointment": anchor(["appointment.booked"], field="start")},
        templates=[template("hello", "您好 {{ patient.surname }}"), template("queue", "请候诊")],
        steps=[step("guide", "pre_visit", before("appointment", "1d", at="10:00"), send("hello", ["outbox"])),
               step("queue", "in_visit", on("visit.checked_in"), send("queue", ["outbox"]))])


def test_journey_flow_dispatches_each_stage_as_a_task(prefect_harness, database_url, settings, clock):
    from prefect.client.orchestration import get_client

    from carepath.connectors.outbox import OutboxChannel
    from carepath.flows import journey_flow, use_engine

    engine = Engine(database_url, journeys=[_journey()], channels={"outbox": OutboxChannel("outbox")}, templates={},
                    clock=clock, settings=settings)
    engine.upsert_patient(PatientIn(mrn="F1", name="王五", phone="13900001111"))
    start = (clock.now() + timedelta(days=2)).isoformat()
    engine.ingest(EventIn(type="appointment.booked", source="t", source_id="1", patient_mrn="F1",
                          occurred_at=clock.now(), payload={"start": start}))
    engine.ingest(EventIn(type="visit.checked_in", source="t", source_id="2", patient_mrn="F1",
                          occurred_at=clock.now(), payload={}), dispatch_urgent=False)
    use_engine(engine)
    flow = journey_flow("flow-check")
    result = flow(start=clock.now(), end=clock.now() + timedelta(days=2), tick_minutes=60)
    assert result["pre_visit"] == {"sent": 1} and result["in_visit"] == {"sent": 1}
    with engine.db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(OutboxMessage)).scalar() == 2

    async def runs():
        # plain filter bodies: this Prefect client sends nulls the server's validation rejects
        async with get_client() as client:
            body = {"limit": 200, "offset": 0}
            flows = (await client._client.post("/flows/filter", json=body)).json()
            flow_runs = (await client._client.post("/flow_runs/filter", json=body)).json()
            task_runs = (await client._client.post("/task_runs/filter", json=body)).json()
            return flows, flow_runs, task_runs

    flows, flow_runs, task_runs = asyncio.run(runs())
    flow_id = next(f["id"] for f in flows if f["name"] == "flow-check")
    run_ids = {r["id"] for r in flow_runs if r["flow_id"] == flow_id and r["state_type"] == "COMPLETED"}
    stage_runs = {t["name"] for t in task_runs if t["flow_run_id"] in run_ids}
    assert {"pre_visit", "in_visit"} <= stage_runs and "post_visit" not in stage_runs  # only stages it has


def test_demo_runs_and_timeline_shows_masked_contacts(prefect_harness, tmp_path: Path, monkeypatch):
    from carepath.cli import _mount_optional, app
    from carepath.simulation.demo import run_demo

    monkeypatch.chdir(tmp_path)
    console = Console(record=True, width=160)
    result = run_demo(home=tmp_path / ".carepath", patients=25, days=4, seed=3, console=console)
    out = console.export_text()
    assert "total" in out and "database:" in out and "carepath patients timeline" in out
    assert "failed: every channel failed, so a nurse task was opened" in out  # the table's legend
    assert f"carepath tasks list --db {result.database}" in out
    # the harness is a Prefect API: the demo says where its runs are, not that it ran in ephemeral mode
    assert "the runs are on the Prefect server at" in out and "ephemeral" not in out
    engine_url = f"sqlite:///{result.database}"
    from carepath.store import open_database

    with open_database(engine_url).connect() as conn:
        sent = conn.execute(select(func.count()).select_from(Touchpoint).where(Touchpoint.status == "sent")).scalar()
    assert sent > 0
    _mount_optional()
    cli = CliRunner().invoke(app, ["patients", "timeline", str(result.patient_id), "--db", str(result.database)])
    assert cli.exit_code == 0, cli.output
    assert re.search(r"1\d\d\*\*\*\*\d{4}", cli.output)  # masked phone
    assert not re.search(r"1\d{10}", cli.output)  # never a full number
