"""The JSON Schema of journey files: it accepts every stock and test journey and refuses what the loader refuses."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from carepath.cli import journeys as cli_journeys
from carepath.definition.journey_files import read_journey_text
from carepath.definition.journey_yaml import _Loader
from carepath.definition.journey_schema import SCHEMA_FILE, journey_schema, schema_text
from tests.library.journeys import ALL, STOCK, STOCK_FOLDER, TEST_JOURNEYS, ids

MODELINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)$", re.M)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = journey_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def data(path: Path) -> dict:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # the loader's YAML 1.2 scalars


def errors(validator: jsonschema.Draft7Validator, document: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


@pytest.mark.parametrize("path", ALL, ids=ids(ALL))
def test_the_schema_accepts_every_stock_and_test_journey(path: Path, validator):
    assert errors(validator, data(path)) == []


def test_the_schema_refuses_an_unknown_step_field(validator):
    document = data(STOCK[0])
    document["steps"][0]["sendd"] = document["steps"][0]["send"]
    found = errors(validator, document)
    assert found and all(e.startswith("steps/0") for e in found)
    assert any("'sendd' was unexpected" in e for e in found)
    journey, problems = read_journey_text(yaml.safe_dump(document, allow_unicode=True), known_templates=None)
    assert journey is None and any("unknown step field 'sendd'" in p.message for p in problems)  # as the loader


@pytest.mark.parametrize("change, where", [
    (lambda d: d["steps"][1].update({"on": "visit.checked_in"}), "steps/1"),  # two triggers
    (lambda d: d["steps"][1].pop("before"), "steps/1"),  # no trigger
    (lambda d: d["steps"][0].update({"task": "call_patient"}), "steps/0"),  # two actions
    (lambda d: d["steps"][1]["before"].update({"offset": "soon"}), "steps/1/before"),  # not a duration
    (lambda d: d["steps"][1]["before"].update({"at": "25:00"}), "steps/1/before"),  # not a time of day
    (lambda d: d["steps"][0].update({"category": "spam"}), "steps/0/category"),
    (lambda d: d.update({"reentry": "sometimes"}), "reentry"),
    (lambda d: d.update({"templates": {"x": {"body": "hi", "colour": "red"}}}), "templates/x"),
    (lambda d: d.pop("enroll"), ""),
])
def test_the_schema_refuses_what_the_loader_refuses(change, where: str, validator):
    document = copy.deepcopy(data(STOCK_FOLDER / "outpatient-visit.yaml"))
    change(document)
    found = errors(validator, document)
    assert found and any(e.startswith(where) for e in found), found
    journey, _ = read_journey_text(yaml.safe_dump(document, allow_unicode=True), known_templates=None)
    assert journey is None


def test_shorthand_forms_are_accepted(validator):
    document = {"name": "short", "enroll": {"events": ["visit.checked_in"]}, "templates": {"t": "hello"}, "steps": [
        {"id": "a", "stage": "post_visit", "on": "visit.checked_in", "send": {"template": "t", "via": ["sms"]},
         "missed": "skip"},
        {"id": "b", "stage": "post_visit", "after_step": "a", "task": "call_patient", "confirm_within": "2h"},
        {"id": "c", "stage": "post_visit", "idle": 30, "tag": "inactive"},
        {"id": "d", "stage": "post_visit", "calendar": "中秋", "tag": ["festive", "elderly"]},
        {"id": "e", "stage": "post_visit", "every": {"interval": "1mo", "at": "patient.preferences.pill_time"},
         "send": {"template": "t", "via": ["sms"]}, "workdays_only": True}]}
    assert errors(validator, document) == []
    journey, problems = read_journey_text(yaml.safe_dump(document, allow_unicode=True), known_templates=None)
    assert journey is not None, problems


def test_every_field_is_described():
    schema = journey_schema()
    missing = []
    for name, definition in [("journey", schema), *schema["$defs"].items()]:
        for field, prop in definition.get("properties", {}).items():
            if not prop.get("description"):
                missing.append(f"{name}.{field}")
    assert missing == [], "describe these fields: Field(description=...) in the model, or FIELD_DOCS in " \
                          "carepath.definition.journey_schema"
    step = schema["$defs"]["FileStep"]["properties"]
    assert "patient-local time" in json.dumps(schema["$defs"]["AnchorOffset"]) and "via" in step["send"]["description"]


def test_the_committed_schema_is_up_to_date_and_every_stock_journey_points_at_it():
    assert (STOCK_FOLDER / SCHEMA_FILE).read_text(encoding="utf-8") == schema_text(), \
        "run: carepath journeys schema --out journeys/journey.schema.json"
    for path in STOCK + TEST_JOURNEYS[:-1]:
        first_line = path.read_text(encoding="utf-8").splitlines()[0]
        found = MODELINE.match(first_line)
        assert found, f"{path.name} does not open with the yaml-language-server modeline"
        assert (path.parent / found[1]).resolve() == (STOCK_FOLDER / SCHEMA_FILE).resolve()


def test_schema_command_writes_the_schema(tmp_path: Path):
    out = tmp_path / "editor" / SCHEMA_FILE
    result = CliRunner().invoke(cli_journeys.app, ["schema", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text(encoding="utf-8")) == journey_schema()
    printed = CliRunner().invoke(cli_journeys.app, ["schema"])
    assert printed.output == schema_text()
