"""The example plugin, installed with ``pip install ./docs/examples/carepath-plugin-example``.

It is discovered, shows in ``carepath plugins list``, passes the conformance
suite (its own test module, collected here too) and delivers a journey message
through its webhook emulator, with the receipt coming back as an event.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

pytest.importorskip("carepath_plugin_example",
                    reason="example plugin not installed: pip install ./docs/examples/carepath-plugin-example")

from carepath_plugin_example import WebhookChannel, WebhookEmulator, followup_journey  # noqa: E402

from carepath.cli.plugins import plugins_app  # noqa: E402
from carepath.runtime.clock import VirtualClock  # noqa: E402
from carepath.config import build_channels, load_config  # noqa: E402
from carepath.engine import Engine  # noqa: E402
from carepath.definition.events import EventIn, PatientIn  # noqa: E402
from carepath.plugins.manager import load_plugins  # noqa: E402
from carepath.settings import Settings  # noqa: E402
from carepath.store.schema import Delivery, Touchpoint  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "carepath-plugin-example"
SECRET = "hospital-webhook-secret-0001"


def _example_tests():
    spec = importlib.util.spec_from_file_location("carepath_plugin_example_tests",
                                                  EXAMPLE / "tests" / "test_conformance.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The example's own conformance run, collected as part of this suite.
TestExampleWebhookConformance = _example_tests().TestWebhookChannelConformance


def test_discovered_through_its_entry_point() -> None:
    manager = load_plugins()
    assert manager.connector_types()["webhook"] is WebhookChannel
    record = manager.records["example-webhook"]
    assert (record.distribution, record.version, record.builtin) == ("carepath-plugin-example", "0.1.0", False)
    assert not [f for f in manager.failures if f.name == "example-webhook"]


def test_listed_by_plugins_list() -> None:
    result = CliRunner().invoke(plugins_app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    [info] = [p for p in json.loads(result.output)["plugins"] if p["name"] == "example-webhook"]
    assert info["version"] == "0.1.0" and info["connectors"] == ["webhook"]
    assert info["journeys"] == ["webhook-followup"] and info["templates"] == ["webhook_followup"]
    assert set(info["hooks"]) == {"carepath_connectors", "carepath_journeys", "carepath_templates",
                                  "carepath_web_routes"}


def test_carepath_plugins_list_command_shows_it() -> None:
    carepath = Path(sys.executable).with_name("carepath")
    if not carepath.exists():
        pytest.skip("the carepath console script is not installed next to this interpreter")
    out = subprocess.run([str(carepath), "plugins", "list"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "COLUMNS": "160"})  # wide enough that no name is folded
    assert out.returncode == 0, out.stderr
    for text in ("example-webhook", "carepath-plugin-example 0.1.0", "webhook-followup", "console (built-in)"):
        assert text in out.stdout


def _web_hooks_app(channels: dict, engine: Engine):
    """A minimal web hooks app: the plugins' routes over the running engine."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()
    app.state.carepath = SimpleNamespace(connectors=channels, ingest=engine.ingest)
    for router in load_plugins().web_routers():
        app.include_router(router)
    return TestClient(app)


def _delivery_status(engine: Engine) -> str:
    with engine.db.connect() as conn:
        return conn.execute(select(Delivery.status)).scalar_one()


def test_journey_message_delivered_through_the_webhook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = VirtualClock(datetime(2026, 5, 1, 1, 0, tzinfo=timezone.utc))  # 09:00 in Shanghai
    monkeypatch.setenv("EXAMPLE_WEBHOOK_SECRET", SECRET)
    with WebhookEmulator(SECRET) as receiver:
        toml = tmp_path / "carepath.toml"
        toml.write_text(f'[connectors.webhook]\ntype = "webhook"\nurl = "{receiver.url}"\n'
                        f'secret = {{env = "EXAMPLE_WEBHOOK_SECRET"}}\ntimeout = 3\n', encoding="utf-8")
        channels = build_channels(load_config(toml), load_plugins())
        engine = Engine(f"sqlite:///{tmp_path}/t.db", journeys=[followup_journey], channels=channels, clock=clock,
                        settings=Settings(home=tmp_path / "home"))
        try:
            engine.upsert_patient(PatientIn(mrn="M001", name="张三", phone="13912345678"))
            result = engine.ingest(EventIn(type="encounter.discharged", source="his", source_id="enc-1",
                                           patient_mrn="M001", occurred_at=clock.now(), payload={}))
            assert result.enrolled == ["webhook-followup"], result.summary()
            assert engine.dispatch_due().sent == 0  # due tomorrow at 10:00 local
            clock.advance(timedelta(days=1, hours=1, minutes=30))  # 2026-05-02 10:30 in Shanghai
            report = engine.dispatch_due()
            assert report.sent == 1, report.outcomes

            [message] = receiver.messages
            assert message["to"] == "13912345678" and message["channel"] == "webhook"
            assert message["body"].startswith("张先生/女士，出院后第一天")

            # the receipt comes back through the plugin's web route (carepath_web_routes)
            client = _web_hooks_app(channels, engine)
            headers, body = receiver.receipt(message["provider_id"], patient_mrn="M001")
            forged = {**headers, "X-Carepath-Signature": "sha256=" + "0" * 64}
            assert client.post("/hooks/webhook/webhook", content=body, headers=forged).status_code == 401
            assert _delivery_status(engine) == "sent", "a forged receipt changed nothing"
            assert client.post("/hooks/webhook/webhook", content=body, headers=headers).status_code == 200
            with engine.db.connect() as conn:
                delivery = conn.execute(select(Delivery.status, Delivery.provider_id)).one()
                touchpoint = conn.execute(select(Touchpoint.status)).scalar_one()
            assert tuple(delivery) == ("delivered", message["provider_id"])
            assert touchpoint == "delivered"
        finally:
            engine.close()
