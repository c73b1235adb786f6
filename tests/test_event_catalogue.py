"""The built-in event catalogue: listed by the CLI, documented in docs/events.md, checking payloads."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from carepath.cli.events import app as events_app
from carepath.definition.catalog import BUILTIN_EVENT_TYPES, payload_problems, payload_refusal

DOC = Path(__file__).resolve().parents[1] / "docs" / "events.md"


def test_cli_lists_every_type_with_its_fields_as_json():
    result = CliRunner().invoke(events_app, ["types", "--json"])
    assert result.exit_code == 0, result.output
    listed = {t["type"]: t for t in json.loads(result.output)["event_types"]}
    assert set(listed) >= {t.name for t in BUILTIN_EVENT_TYPES}
    booked = {f["name"]: f for f in listed["appointment.booked"]["fields"]}
    assert (booked["start"]["required"], booked["start"]["type"]) == (True, "date-time with offset")
    assert (booked["fasting"]["required"], booked["fasting"]["type"]) == (False, "true/false")
    assert booked["fasting"]["description"]


def test_cli_table_names_each_type_and_field():
    result = CliRunner().invoke(events_app, ["types"])
    assert result.exit_code == 0
    assert "consent.changed: The patient gave or withdrew consent." in result.output
    assert "appointment_id" in result.output and "optional" in result.output


@pytest.mark.parametrize("event_type", BUILTIN_EVENT_TYPES, ids=lambda t: t.name)
def test_every_type_and_field_is_documented(event_type):
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"^### `{re.escape(event_type.name)}`\n(.*?)(?=^### |\Z)", text, re.S | re.M)
    assert match, f"docs/events.md has no section for {event_type.name}"
    for field in event_type.fields():
        assert field.description, f"{event_type.name}.{field.name} says nothing about its meaning"
        assert f"| `{field.name}` | {field.type} | {'required' if field.required else 'optional'} |" \
            in match.group(1), f"{event_type.name}.{field.name} is not documented as it is"


def test_payload_problems_name_the_field():
    assert payload_problems("appointment.booked", {"appointment_id": 1234, "start": "2026-05-05T10:00:00+08:00",
                                                   "extra": "kept"}) == []
    assert payload_problems("appointment.booked", {"appointment_id": "A1", "start": "2026-05-05T10:00:00"}) == [
        "payload field 'start': Input should have timezone info"]
    assert payload_problems("consent.changed", {"purpose": "ads", "granted": "maybe"}) == [
        "payload field 'purpose': must be clinical, marketing, sensitive or template:<template name>",
        "payload field 'granted': Input should be a valid boolean, unable to interpret input"]
    assert payload_problems("device.alarm", {"anything": 1}) == []  # not in the catalogue: not checked
    assert payload_refusal("message.delivered", {}) == \
        "stored, not applied: message.delivered payload field 'provider_id': Field required"
