"""Issue 23: a journey as a FHIR PlanDefinition and back plans the same touchpoints for the same events.

Every journey file of journeys/ (stock journeys added later included) and the test journeys with every kind of
step go carepath -> PlanDefinition -> carepath; both journeys then run on a scratch database with a virtual
clock through the same events, and their planned touchpoints (step, due time, action, channel, status) must
be identical.
"""

from __future__ import annotations

import importlib.util
import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.plandefinition import PlanDefinition

from carepath.definition.catalog import event_types
from carepath.definition.fhir_plan import STEP_EXTENSION, export_plan
from carepath.definition.fhir_plan_import import import_plan, read_plan_text
from carepath.definition.model import AfterStep, AnchorOffset, Every, Journey, OnEvent, Reading, Send
from carepath.definition.events import PatientIn
from carepath.runtime.clock import VirtualClock
from carepath.runtime.horizon import extend_horizons
from carepath.runtime.idle import plan_idle

from tests.library.journeys import ROOT, STOCK_FOLDER, TEST_JOURNEYS, ids, load

_spec = importlib.util.spec_from_file_location("carepath_engine_test_helpers", ROOT / "tests" / "engine" / "helpers.py")
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)

FILES = sorted(STOCK_FOLDER.glob("*.yaml")) + sorted(STOCK_FOLDER.glob("*.yml")) + TEST_JOURNEYS + [
    ROOT / "tests" / "data" / "journeys" / "family-inpatient-update.yaml"] + sorted(
    (ROOT / "tests" / "data" / "journeys" / "fhir").glob("*.yaml"))
DAYS = 35  # past a 30-day idle step
CHILD = date(2019, 3, 20)  # the paediatric scenario's patient (children only), a birthday inside the 35 days
START = datetime(2026, 3, 2, 1, 0, tzinfo=timezone.utc)  # a Monday, 09:00 in Shanghai


def round_trip(journey: Journey) -> Journey:
    plan, _ = export_plan(journey)
    text = json.dumps(plan, ensure_ascii=False)
    PlanDefinition.model_validate_json(text)
    back, report = import_plan(read_plan_text(text))
    assert back is not None, report.lines()
    assert report.lines() == ["every action imported"]  # nothing left out, assumed or differing
    return back


def _sample(kind: str, name: str, now: datetime) -> Any:
    """A value of a catalogue field type: times three days ahead, the first choice of a choice."""
    if kind.startswith("date-time"):
        return (now + timedelta(days=3)).isoformat()
    if kind.startswith("date"):
        return (now + timedelta(days=3)).date().isoformat()
    if kind.startswith(("integer", "number")):
        return 8
    if kind.startswith("true/false"):
        return False
    if kind.startswith("list"):
        return []
    if kind.startswith("object"):
        return {}
    if kind.startswith("'"):
        return kind.split("'")[1]
    # values the stock journeys' enrollment conditions look for (a health-check department, an inpatient stay)
    return {"department": "体检中心", "patient_class": "inpatient"}.get(name, f"{name}-1")


def _payload(event: str, now: datetime) -> dict[str, Any]:
    """Every field of the event type filled with a sample value."""
    known = event_types().get(event)
    return {f.name: _sample(f.type, f.name, now) for f in (known.fields() if known is not None else [])}


def _events_of(journey: Journey) -> list[str]:
    """The events that drive the journey: enrollment, then those that set anchors or start steps (no exits)."""
    order = list(journey.enroll.events[:1])
    order += [e for rule in journey.anchors.values() for e in rule.set_by]
    order += [s.trigger.event for s in journey.steps if isinstance(s.trigger, OnEvent)]
    first = order[:1]  # the enrolling event, even where a conditional exit listens to it too
    return list(dict.fromkeys(first + [e for e in order[1:] if e not in journey.exit.events]))


def _readings(journey: Journey) -> list[dict[str, Any]]:
    """Device readings that cross the first threshold of each reading step as often as it counts."""
    out = []
    for step in journey.steps:
        if isinstance(step.trigger, Reading):
            first = step.trigger.any[0]
            value = first.value + (5 if first.op.startswith(">") else -1)
            out += [{"kind": first.measure, "value": value, "unit": first.unit}] * step.trigger.count
    return out


def planned(journey: Journey, database_url: str, settings) -> list[tuple]:
    """The touchpoints the engine plans for one patient over ``DAYS`` days of the journey's events."""
    clock = VirtualClock(START)
    channels = {c: helpers.RecordingChannel(c, address_kind="openid" if "wechat" in c else "phone")
                for s in journey.steps if isinstance(s.action, Send) for c in s.action.via}
    events = helpers.Events(clock)
    engine = helpers.make_engine(database_url, settings, clock, [journey], channels)
    try:
        engine.upsert_patient(PatientIn(mrn="M1", name="张三", phone="13812341234", openid="o-m1",
                                        birth_date=CHILD if journey.name == "paediatrics" else date(1956, 3, 5), conditions=["E11", "I10", "M17", "Z34", "C50", "J45", "J30"]))
        engine.ingest(events("consent.changed", {"purpose": "marketing", "granted": True}))  # greetings, idle steps
        for event in _events_of(journey):
            engine.ingest(events(event, _payload(event, clock.now())))
            clock.advance(timedelta(hours=1))
        for reading in _readings(journey):
            engine.ingest(events("vitals.reading", reading))
            clock.advance(timedelta(hours=1))
        for quarter in range(DAYS * 4):
            if quarter % 4 == 0:  # the maintenance flow, once a day: idle steps, rolling horizons
                plan_idle(engine)
                extend_horizons(engine)
            engine.dispatch_due()
            clock.advance(timedelta(hours=6))
        rows = helpers.touchpoints(engine)
    finally:
        engine.close()
    return sorted(((r.step, r.due_at, r.action, r.channel, r.status, r.reason) for r in rows),
                  key=lambda row: tuple("" if v is None else str(v) for v in row))


@pytest.mark.parametrize("path", FILES, ids=ids(FILES))
def test_round_trip_plans_identical_touchpoints(path: Path, database_url: str, settings, tmp_path: Path):
    journey = load(path)
    back = round_trip(journey)
    assert back == journey and back.version == journey.version
    before = planned(journey, database_url, settings)
    after = planned(back, f"sqlite:///{tmp_path / 'imported.db'}", settings)
    assert before, f"{path.name}: the scenario planned nothing, so it compares nothing"
    assert after == before
    _PLANNED[path] = after  # the scenario's plan of this journey, for the test below


#: each file's plan (the same journey, the same scenario on SQLite) as the round trip above found it
_PLANNED: dict[Path, list[tuple]] = {}


def test_the_scenario_reaches_idle_calendar_and_reading_steps(database_url: str, settings, tmp_path: Path):
    """So the round-trip comparison covers the triggers only the carepath extension describes."""
    reached = set()
    for n, path in enumerate(FILES):
        journey = load(path)
        plan = _PLANNED.get(path) or planned(journey, f"sqlite:///{tmp_path / f'{n}.db'}", settings)
        steps = {row[0] for row in plan}
        reached |= {s.trigger.kind for s in journey.steps if s.id in steps}
    assert reached >= {"on", "before", "after", "every", "after_step", "idle", "calendar", "reading"}


def test_the_test_journeys_cover_every_kind_of_step():
    journeys = [load(p) for p in FILES]
    triggers = {s.trigger.kind for j in journeys for s in j.steps}
    actions = {s.action.kind for j in journeys for s in j.steps}
    assert triggers >= {"on", "before", "after", "every", "after_step", "idle", "calendar", "reading"}
    assert actions >= {"send", "survey", "checkin", "task", "tag"}


def test_standard_elements_carry_what_they_can_and_the_report_names_the_rest():
    journey = load(ROOT / "tests" / "data" / "journeys" / "maps" / "diabetes-programme-test.yaml")
    plan, report = export_plan(journey)
    actions = {a["title"]: a for a in plan["action"]}
    for step in journey.steps:
        action = actions[step.id]
        t = step.trigger
        if isinstance(t, OnEvent):
            assert action["trigger"] == [{"type": "named-event", "name": t.event}]
        if isinstance(t, (AnchorOffset, Every)):
            assert action["relatedAction"][0]["actionId"] == f"anchor.{t.anchor}"
        if isinstance(t, AfterStep):
            assert action["relatedAction"][0]["actionId"] == t.step.replace("_", ".")
        if step.condition:
            assert action["condition"][0]["expression"] == {"language": "text/x-carepath",
                                                             "expression": step.condition}
        if step.action.kind == "task":
            assert action["participant"] == [{"type": "practitioner", "role": {"text": step.action.team}}]
        elif step.action.kind != "tag":
            assert action["participant"] == [{"type": "patient"}]
        assert any(e["url"] == STEP_EXTENSION for e in action["extension"])
    # what has no standard element is named, step by step
    kinds = {s.id: s.trigger.kind for s in journey.steps}
    for step_id, kind in kinds.items():
        if kind in ("idle", "calendar", "reading"):
            assert any(p.startswith("trigger.") for p in report.extension_only[step_id]), step_id
    rrule = [s.id for s in journey.steps if isinstance(s.trigger, Every) and s.trigger.rrule]
    for step_id in rrule:
        assert "trigger.rrule" in report.extension_only[step_id]
    assert any(step in line for line in report.lines() for step in report.extension_only)


def _standard_only(plan: dict) -> dict:
    """The PlanDefinition as a FHIR tool that drops unknown extensions would keep it."""
    def strip(element: dict) -> dict:
        out = {k: v for k, v in element.items() if k != "extension"}
        kept = [e for e in element.get("extension", []) if not e["url"].endswith(("/step", "/journey"))]
        if kept:
            out["extension"] = kept
        if "action" in element:
            out["action"] = [strip(a) for a in element["action"]]
        return out
    return strip(plan)


@pytest.mark.parametrize("path", [STOCK_FOLDER / "outpatient-visit.yaml",
                                  ROOT / "tests" / "data" / "journeys" / "fhir" / "checkin-camp-test.yaml"],
                         ids=lambda p: p.name)
def test_standard_elements_alone_give_back_every_step_the_report_calls_fully_expressed(path: Path):
    journey = load(path)
    plan, report = export_plan(journey)
    back, found = import_plan(_standard_only(plan))
    imported = {s["id"] if isinstance(s, dict) else s.id: s for s in (back.steps if back else [])}
    full = [s for s in journey.steps if s.id not in report.extension_only]
    assert full, "no step is fully expressed, so this compares nothing"
    for step in full:
        assert imported.get(step.id) == step, (step.id, found.lines())


def test_standard_elements_edited_elsewhere_are_reported_and_the_extension_wins():
    journey = load(STOCK_FOLDER / "outpatient-visit.yaml")
    plan, _ = export_plan(journey)
    target = next(s for s in journey.steps if isinstance(s.trigger, AnchorOffset))
    action = next(a for a in plan["action"] if a["title"] == target.id)
    action["relatedAction"][0]["offsetDuration"]["value"] += 1  # someone moved it in a FHIR editor
    back, report = import_plan(read_plan_text(json.dumps(plan)))
    assert back == journey
    assert report.assumed == [f"step {target.id}: standard elements differ from its carepath step extension: "
                              "relatedAction; the extension was used (edit the journey in carepath and export "
                              "it again)"]


def test_an_action_added_elsewhere_to_a_carepath_plan_is_reported_not_dropped_silently():
    journey = load(STOCK_FOLDER / "outpatient-visit.yaml")
    plan, _ = export_plan(journey)
    plan["action"].append({"id": "extra-call", "title": "Extra call",
                           "trigger": [{"type": "named-event", "name": "visit.checked_in"}]})
    back, report = import_plan(read_plan_text(json.dumps(plan)))
    assert back == journey
    assert "extra-call" in report.unmapped and "no carepath step extension" in report.unmapped["extra-call"]


def test_a_foreign_plan_with_an_anchor_a_repeat_and_conditions_maps_from_standard_elements():
    ucum = {"system": "http://unitsofmeasure.org"}
    plan = {
        "resourceType": "PlanDefinition", "name": "Cardiac rehab", "status": "active",
        "action": [
            {"id": "anchor.discharge", "title": "discharge",
             "trigger": [{"type": "named-event", "name": "encounter.discharged"}]},
            {"id": "weekly", "textEquivalent": "How are you this week?",
             "relatedAction": [{"actionId": "anchor.discharge", "relationship": "after-start",
                                "offsetDuration": {"value": 1, "code": "wk", **ucum}}],
             "timingTiming": {"repeat": {"frequency": 1, "period": 2, "periodUnit": "wk", "count": 3}},
             "condition": [{"kind": "applicability",
                            "expression": {"language": "text/x-carepath", "expression": "patient.age >= 60"}},
                           {"kind": "applicability",
                            "expression": {"language": "text/x-carepath", "expression": "patient.has('I21')"}}]},
            {"id": "pre-call", "textEquivalent": "call", "participant": [{"type": "practitioner"}],
             "relatedAction": [{"actionId": "anchor.discharge", "relationship": "before-start",
                                "offsetDuration": {"value": 90, "code": "min", **ucum}}]},
            {"id": "fhirpath", "textEquivalent": "x", "trigger": [{"type": "named-event", "name": "report.ready"}],
             "condition": [{"kind": "applicability",
                            "expression": {"language": "text/fhirpath", "expression": "%patient.active"}}]},
            {"id": "metres", "textEquivalent": "x", "timingDuration": {"value": 5, "code": "m", **ucum},
             "trigger": [{"type": "named-event", "name": "report.ready"}]},
        ],
    }
    journey, report = import_plan(read_plan_text(json.dumps(plan)))
    assert journey is not None, report.lines()
    assert journey.name == "cardiac-rehab" and journey.enroll.events == ["encounter.discharged"]
    assert journey.anchors["discharge"].set_by == ["encounter.discharged"]
    weekly, call = journey.steps
    assert isinstance(weekly.trigger, Every) and weekly.trigger.anchor == "discharge"
    assert (weekly.trigger.start, weekly.trigger.interval, weekly.trigger.count) == (
        timedelta(days=7), timedelta(days=14), 3)
    assert weekly.condition == "(patient.age >= 60) and (patient.has('I21'))"
    assert isinstance(call.trigger, AnchorOffset) and call.trigger.kind == "before"
    assert call.trigger.offset == timedelta(minutes=90) and call.action.team == "nursing"
    assert "text/fhirpath" in report.unmapped["fhirpath"]
    assert "unit carepath cannot count" in report.unmapped["metres"]
