"""Issue 19.5: readings from the HIS (HL7 ORU^R01 OBX numeric results, FHIR Observations) reach the same alerts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from carepath.connectors.his.fhir_mapping import ResourceMapper
from carepath.connectors.his.hl7_source import Hl7Source
from carepath.definition.journey_files import read_journey_text
from carepath.store.schema import ReadingRow
from tests.connectors import hl7_messages as m
from tests.engine import helpers as h

WATCH = """
name: bp-watch
enroll: {events: [visit.checked_in]}
steps:
  - id: bp-high
    stage: post_visit
    reading: {any: ["systolic_bp >= 140 mmHg", "diastolic_bp >= 90 mmHg"], count: 3, within: 7d}
    task: {task: review_blood_pressure, team: nursing, sla: 4h}
"""


@pytest.fixture
def journeys():
    journey, problems = read_journey_text(WATCH, known_channels={"sms"})
    assert problems == [], problems
    return [journey]


def _oru(control: str, day: int, systolic: int, diastolic: int) -> str:
    taken = f"202605{day:02d}073000"
    return m.message("ORU^R01", control, m.pid(mrn="M1"), f"OBR|1|O{control}|R{control}|BP^血压|||{taken}",
                     f"OBX|1|NM|8480-6^Systolic^LN||{systolic}|mm[Hg]|||||F|||{taken}",
                     f"OBX|2|NM|8462-4^Diastolic^LN||{diastolic}|mm[Hg]|||||F|||{taken}")


def test_three_high_blood_pressures_by_hl7_open_one_task(eng, clock):
    eng.ingest(h.Events(clock)("visit.checked_in", {"department": "心内科"}))
    source = Hl7Source.from_options("hl7", {})
    source.bind(eng)
    for n, (day, sys_, dia) in enumerate([(2, 150, 95), (3, 150, 95), (4, 150, 95), (5, 150, 95)]):
        clock.set(datetime(2026, 5, day, 1, 0, tzinfo=timezone.utc))
        assert "|AA|" in source.handle(_oru(f"B{n}", day, sys_, dia).encode()).decode()
        eng.dispatch_due()
    assert [t.kind for t in h.staff_tasks(eng)] == ["review_blood_pressure"]  # three readings, one task
    with eng.db.connect() as conn:
        rows = conn.execute(select(ReadingRow.measure, ReadingRow.unit, ReadingRow.status)).all()
    assert len(rows) == 8 and set(rows) == {("systolic_bp", "mmHg", "accepted"), ("diastolic_bp", "mmHg", "accepted")}


def test_a_fhir_blood_pressure_panel_is_one_reading_of_two_numbers(eng, clock):
    eng.ingest(h.Events(clock)("visit.checked_in", {"department": "心内科"}))
    mapper = ResourceMapper("his", lambda ref: ("M1", {}))

    def panel(n: int, when: datetime) -> dict:
        quantity = lambda v: {"value": v, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}
        return {"resourceType": "Observation", "id": f"bp{n}", "status": "final",
                "meta": {"versionId": "1", "lastUpdated": when.isoformat()},
                "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
                "subject": {"reference": "Patient/p1"}, "effectiveDateTime": when.isoformat(),
                "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                               "valueQuantity": quantity(152)},
                              {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                               "valueQuantity": quantity(96)}]}

    start = clock.now()
    for n in range(3):
        events = mapper.events(panel(n, start + timedelta(days=n + 1)))
        assert [(e.payload["kind"], e.payload["value"]) for e in events] == [("systolic_bp", 152.0),
                                                                             ("diastolic_bp", 96.0)]
        for event in events:
            eng.ingest(event)
        eng.dispatch_due()
        assert len(h.staff_tasks(eng)) == (1 if n == 2 else 0)  # both numbers of a moment count once
