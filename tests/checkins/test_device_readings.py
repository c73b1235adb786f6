"""Issue 19.5: readings from a home device's signed web hook; one task per episode; rejected readings."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from carepath.connectors.device.connector import DeviceConfig, DeviceConnector
from carepath.connectors.device.emulator import HomeDevice
from carepath.definition.journey_files import read_journey_text
from carepath.runtime import work_queue
from carepath.store.schema import Event, ReadingRow
from carepath.web.app import create_app
from tests.engine import helpers as h
from tests.live_app import LiveApp
from tests.programmes.conftest import at_local, local
from tests.portrait.helpers import sms_engine

SECRET = "cuff-cloud-shared-secret-0123456789"
WATCH = """
name: bp-watch
enroll: {events: [visit.checked_in]}
templates:
  low: "您的血糖偏低，请立即进食含糖食物；护士会马上联系您。"
steps:
  - id: bp-high
    stage: post_visit
    reading: {any: ["systolic_bp >= 140 mmHg", "diastolic_bp >= 90 mmHg"], count: 3, within: 7d}
    task: {task: review_blood_pressure, team: nursing, sla: 4h, priority: high}
  - id: glucose-low
    stage: post_visit
    category: urgent
    reading: {any: ["glucose < 3.9 mmol/L"]}
    task: {task: call_patient, team: nursing, sla: 1h, priority: urgent}
  - id: glucose-low-message
    stage: post_visit
    category: urgent
    reading: {any: ["glucose < 3.9 mmol/L"]}
    send: {template: low, via: [sms]}
"""


@pytest.fixture
def journeys():
    journey, problems = read_journey_text(WATCH, known_channels={"sms"})
    assert problems == [], problems
    return [journey]


@pytest.fixture
def eng(database_url, settings, clock, journeys):
    cuff = DeviceConnector("cuff", DeviceConfig(secret=SecretStr(SECRET)))
    with sms_engine(database_url, settings, clock, journeys, connectors={"cuff": cuff}) as engine:
        yield engine


@pytest.fixture
def device(eng):
    with LiveApp(create_app(eng, connectors={"cuff": eng.connectors["cuff"]})) as live:
        yield HomeDevice(f"{live.url}/hooks/device/cuff", SECRET)


def _tasks(eng, kind):
    return [t for t in h.staff_tasks(eng) if t.kind == kind]


def _readings(eng):
    with eng.db.connect() as conn:
        return conn.execute(select(ReadingRow.__table__).order_by(ReadingRow.id)).all()


def test_three_high_readings_in_a_week_open_one_task_and_a_fourth_none(eng, clock, device):
    eng.ingest(h.Events(clock)("visit.checked_in", {"department": "心内科"}))
    start = local(clock.now()).date()

    def measure(n, systolic=150, diastolic=95, hour=7):
        at = at_local(start + timedelta(days=n), hour)
        clock.set(at + timedelta(minutes=1))
        answer = device.blood_pressure("M1", systolic, diastolic, measured_at=at)
        assert answer.status_code == 200, answer.text
        eng.dispatch_due()

    measure(1)
    measure(2, 120, 80)  # a normal reading counts for nothing
    measure(3)
    assert _tasks(eng, "review_blood_pressure") == []
    measure(5)
    [task] = _tasks(eng, "review_blood_pressure")
    assert (task.team, task.priority, task.status) == ("nursing", "high", "open")
    assert task.sla_due_at is not None and task.sla_due_at > clock.now()  # a person, with a deadline
    measure(6, 160, 100)  # a fourth: the episode is open
    assert len(_tasks(eng, "review_blood_pressure")) == 1

    work_queue.close(eng, task.id, "nurse-li", "called; GP appointment booked")  # the episode is resolved
    measure(7)
    measure(8)
    assert len(_tasks(eng, "review_blood_pressure")) == 1  # re-armed: only readings after the resolution count
    measure(9)
    assert len(_tasks(eng, "review_blood_pressure")) == 2

    rows = _readings(eng)
    assert len(rows) == 16 and {r.status for r in rows} == {"accepted"}
    assert {eng.cipher.decrypt(r.value_enc) for r in rows[:2]} == {"150.0", "95.0"}
    assert all(r.value_enc not in ("150.0", "95.0") for r in rows)  # encrypted at rest
    stored = [row for row in h.raw_rows(eng, "events") if "vitals.reading" in row]
    assert stored and not any('"value": 150' in str(row) for row in stored), "the event's values encrypted too"
    assert {r.source for r in rows} == {"device:cuff"} and rows[0].device_id == "cuff-001"


def test_a_forged_stale_or_oversized_device_call_stores_nothing(eng, clock, device):
    eng.ingest(h.Events(clock)("visit.checked_in", {"department": "心内科"}))
    before = h.snapshot(eng)
    body = device.body("M1", [{"kind": "systolic_bp", "value": 190, "unit": "mmHg"}])
    assert device.post(body, secret="guessed-secret").status_code == 401
    import requests

    from carepath.connectors.device.signing import signed_headers

    stale = signed_headers(SECRET, body, now=1_600_000_000)
    assert requests.post(device.url, data=body, headers=stale, timeout=10).status_code == 401
    tampered = signed_headers(SECRET, body)
    assert requests.post(device.url, data=body.replace(b"190", b"120"), headers=tampered,
                         timeout=10).status_code == 401
    big = device.body("M1", [{"kind": "glucose", "value": 5, "unit": "mmol/L", "note": "x" * 70000}])
    assert device.post(big).status_code in (401, 413)
    assert requests.post(device.url, data=body, timeout=10).status_code == 401  # unsigned
    assert h.snapshot(eng) == before


def test_a_low_glucose_opens_an_urgent_task_at_night_and_impossible_readings_are_rejected(eng, clock, device):
    eng.ingest(h.Events(clock)("visit.checked_in", {"department": "内分泌科"}))
    night = at_local(local(clock.now()).date() + timedelta(days=1), 2, 30)  # quiet hours
    clock.set(night)
    assert device.glucose("M1", 41, measured_at=night).status_code == 200  # impossible: rejected, no alert
    assert device.post(device.body("M1", [{"kind": "glucose", "value": 5.0, "unit": "kg"}])).status_code == 200
    rows = _readings(eng)
    assert [(r.status, r.reason) for r in rows] == [
        ("rejected", "glucose value outside the possible range 1–35 mmol/L"),
        ("rejected", "unit 'kg' is not a unit of glucose (use mmol/L, mg/dL)")]
    assert h.staff_tasks(eng) == []
    assert device.glucose("M1", 59, unit="mg/dL", measured_at=night).status_code == 200  # 3.28 mmol/L
    [task] = _tasks(eng, "call_patient")  # urgent: opened with the reading, no dispatch run needed
    assert (task.priority, task.status) == ("urgent", "open")
    assert [m.body for m in eng.sms.messages] == ["您的血糖偏低，请立即进食含糖食物；护士会马上联系您。"]
    assert device.glucose("M1", 3.1, measured_at=night + timedelta(minutes=20)).status_code == 200
    assert len(_tasks(eng, "call_patient")) == 1  # the same episode
    with eng.db.connect() as conn:
        notes = conn.execute(select(Event.outcome).where(Event.type == "vitals.reading").order_by(Event.id)
                             ).scalars().all()
    assert "reading rejected" in notes[0] and "still open" in notes[-1]
    assert "41" not in notes[0] and eng.cipher.decrypt(rows[0].value_enc) == "41"  # the value only encrypted


def test_an_authentic_call_with_a_bad_body_is_answered_400_naming_the_field(eng, clock, device):
    body = (b'{"reading_id": "r-9", "patient_mrn": "M1", "measured_at": "2026-05-02T08:00:00", '
            b'"measurements": [{"kind": "glucose", "value": 5.1}]}')
    answer = device.post(body)
    assert answer.status_code == 400 and "measured_at" in answer.json()["detail"]
    assert _readings(eng) == []
