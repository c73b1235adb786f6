"""Plugins add event types with ``carepath_event_types``: listed, validated against, checked at ingest."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from carepath.cli.events import app as events_app
from carepath.definition.catalog import event_types, payload_problems, reload_event_types
from carepath.definition.journey_files import read_journey_text
from carepath.plugins.manager import get_plugin_manager

SOURCE = """
from pydantic import Field

from carepath.definition.catalog import EventType, Payload
from carepath.plugins import hookimpl


class DeviceAlarm(Payload):
    device_id: str = Field(description="the device that raised the alarm")
    level: int = Field(description="1 (info) to 3 (urgent)")
    note: str | None = Field(None, description="free text from the device")


class FakeBooking(Payload):
    anything: str | None = None


@hookimpl
def carepath_event_types():
    return [EventType("device.alarm", "A home device raised an alarm.", DeviceAlarm),
            EventType("appointment.booked", "an attempt to redefine a built-in", FakeBooking)]
"""

JOURNEY = """\
name: alarms
enroll: {events: [device.alarm]}
templates: {alarm: "设备{{ event.device_id }}报警，级别{{ event.level }}。{{ event.note }}"}
steps:
  - id: call
    stage: post_visit
    on: device.alarm
    send: {template: alarm, via: [sms]}
"""


@pytest.fixture
def alarm_plugin(install_plugin):
    install_plugin("alarms", SOURCE)
    get_plugin_manager.cache_clear()
    reload_event_types()
    yield
    get_plugin_manager.cache_clear()
    reload_event_types()


def test_plugin_event_types_are_listed_with_their_fields(alarm_plugin):
    result = CliRunner().invoke(events_app, ["types", "--json"])
    assert result.exit_code == 0, result.output
    listed = {t["type"]: t for t in json.loads(result.output)["event_types"]}
    alarm = listed["device.alarm"]
    assert alarm["source"] == "alarms"
    assert [(f["name"], f["type"], f["required"]) for f in alarm["fields"]] == [
        ("device_id", "text", True), ("level", "integer", True), ("note", "text", False)]
    assert listed["appointment.booked"]["source"] == "builtin"  # a built-in cannot be redefined
    table = CliRunner().invoke(events_app, ["types"])
    assert "device.alarm (plugin alarms): A home device raised an alarm." in table.output


def test_journeys_on_plugin_types_are_validated_against_their_payload(alarm_plugin):
    j, problems = read_journey_text(JOURNEY, file="alarms.yaml", known_channels={"sms"})
    assert [(p.line, p.step) for p in problems] == [(3, "call")]
    assert "write `event.note | default('')`" in problems[0].message


def test_plugin_payloads_are_checked_at_ingest(alarm_plugin):
    assert "device.alarm" in event_types()
    assert payload_problems("device.alarm", {"device_id": "D1", "level": "high"}) == [
        "payload field 'level': Input should be a valid integer, unable to parse string as an integer"]


def test_without_the_plugin_the_type_is_unknown():
    j, problems = read_journey_text(JOURNEY, file="alarms.yaml", known_channels={"sms"})
    assert any("unknown event type 'device.alarm'" in p.message for p in problems)
