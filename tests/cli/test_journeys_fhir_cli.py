"""``carepath journeys export NAME --format fhir`` and ``journeys import FILE`` (issue 23)."""

from __future__ import annotations

import json
from pathlib import Path

from fhir.resources.R4B.plandefinition import PlanDefinition

from carepath.definition.journey_files import load_journey_file

ROOT = Path(__file__).resolve().parents[2]
STOCK = ROOT / "journeys" / "outpatient-visit.yaml"

#: a PlanDefinition written by hand in another tool: an event-started message, a step following it, and an
#: action carepath cannot plan (a periodic trigger with no event or anchor)
FOREIGN = {
    "resourceType": "PlanDefinition", "id": "knee-rehab", "name": "Knee rehab", "title": "Knee rehabilitation",
    "status": "draft",
    "action": [
        {"id": "welcome", "title": "Welcome", "textEquivalent": "Welcome to knee rehabilitation",
         "trigger": [{"type": "named-event", "name": "encounter.discharged"}],
         "participant": [{"type": "patient"}]},
        {"id": "physio-call", "title": "Physio call", "textEquivalent": "call about exercises",
         "relatedAction": [{"actionId": "welcome", "relationship": "after-end",
                            "offsetDuration": {"value": 2, "unit": "d", "system": "http://unitsofmeasure.org",
                                               "code": "d"}}],
         "participant": [{"type": "practitioner", "role": {"text": "physio"}}]},
        {"id": "weekly-exercise", "title": "Weekly exercise video", "textEquivalent": "Your exercises",
         "trigger": [{"type": "periodic", "timingTiming": {"repeat": {"frequency": 1, "period": 1,
                                                                       "periodUnit": "wk"}}}]},
    ],
}


def test_export_writes_a_valid_plan_definition_and_reports_extension_only_fields(hospital: Path, cli):
    result = cli("journeys", "export", "outpatient-visit", "--format", "fhir")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    PlanDefinition.model_validate(plan)
    journey = load_journey_file(STOCK)
    assert plan["version"] == journey.version
    assert {a["title"] for a in plan["action"]} >= {s.id for s in journey.steps}
    # the report, on standard error, names each step and the fields only the extension carries
    assert "step preparation-guide: trigger.at, missed.policy" in result.stderr
    assert "step red-flag-review: action.sla" in result.stderr


def test_export_then_import_gives_back_the_same_journey(hospital: Path, cli):
    assert cli("journeys", "export", str(STOCK), "--out", "plan.json").exit_code == 0
    result = cli("journeys", "import", "plan.json", "--out", "back.yaml")
    assert result.exit_code == 0, result.output
    assert "every action imported" in result.stderr
    back, stock = load_journey_file(hospital / "back.yaml"), load_journey_file(STOCK)
    assert back == stock and back.version == stock.version
    assert cli("journeys", "validate", "back.yaml", "--channel", "wechat", "--channel", "sms").exit_code == 0


def test_a_foreign_plan_definition_imports_and_names_the_action_it_cannot_map(hospital: Path, cli):
    (hospital / "foreign.json").write_text(json.dumps(FOREIGN), encoding="utf-8")
    result = cli("journeys", "import", "foreign.json", "--out", "knee.yaml")
    assert result.exit_code == 0, result.output
    assert "action weekly-exercise: not imported: no named-event trigger or relatedAction carepath can plan " \
           "(trigger types: periodic)" in result.stderr
    assert "assumed: step welcome: channel sms" in result.stderr
    journey = load_journey_file(hospital / "knee.yaml")
    assert journey.name == "knee-rehab" and journey.enroll.events == ["encounter.discharged"]
    assert [s.id for s in journey.steps] == ["welcome", "physio-call"]
    welcome, call = journey.steps
    assert welcome.trigger.event == "encounter.discharged" and welcome.action.via == ["sms"]
    assert journey.templates["welcome"].body == "Welcome to knee rehabilitation"
    assert call.trigger.step == "welcome" and call.trigger.delay.days == 2
    assert call.action.kind == "task" and call.action.team == "physio"


def test_bad_input_is_refused_with_a_clear_error(hospital: Path, cli):
    (hospital / "notes.txt").write_text("not json {", encoding="utf-8")
    (hospital / "patient.json").write_text(json.dumps({"resourceType": "Patient", "id": "p1"}), encoding="utf-8")
    (hospital / "bad.json").write_text(json.dumps({**FOREIGN, "action": [{"id": "x", "relatedAction": "welcome"}]}), encoding="utf-8")
    for name, message in (("notes.txt", "notes.txt: not JSON"),
                          ("patient.json", "patient.json: not a FHIR PlanDefinition (resourceType: Patient)"),
                          ("bad.json", "bad.json: invalid PlanDefinition at action.0.relatedAction: Input should be a valid list"),
                          ("missing.json", "cannot read missing.json")):
        result = cli("journeys", "import", name)
        assert result.exit_code in (1, 3), (name, result.output)
        assert message in result.stderr, (name, result.stderr)
        assert isinstance(result.exception, SystemExit) and "Traceback" not in result.stderr  # exited, no crash
    result = cli("journeys", "export", "outpatient-visit", "--format", "xml")
    assert result.exit_code == 2 and "the only export format is fhir" in result.stderr
