"""FHIR R4: polling the emulator over HTTP with a durable cursor, rest-hook notifications, both routes agreeing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
from fastapi import FastAPI

from carepath.connectors.his.fhir_emulator import FhirEmulator, appointment_resource, patient_resource
from carepath.connectors.his.fhir_hook import fhir_router
from carepath.connectors.his.fhir_source import FhirSource
from carepath.connectors.his.hl7_source import Hl7Source
from carepath.plugins.testing import HisSourceConformance
from carepath.runtime.his_poll import load_cursor, poll_source
from carepath.store.personal_data import reveal_payload
from carepath.store.schema import Event, Patient
from tests.connectors import hl7_messages as m
from tests.live_app import LiveApp
from tests.engine import helpers as h

SH = timezone(timedelta(hours=8))
SECRET = "rest-hook-secret-for-tests"


@pytest.fixture
def fhir():
    with FhirEmulator() as emulator:
        emulator.put(patient_resource("p1", "MRN001", "张三", "13812345678", "1950-01-01", "male"))
        yield emulator


def source_for(emulator: FhirEmulator, engine, **options: Any) -> FhirSource:
    source = FhirSource.from_options("hospital-fhir", {"base_url": emulator.base_url, "timeout": 2,
                                                       "webhook_secret": SECRET, **options})
    source.bind(engine)
    return source


def scheduled(engine, step: str) -> list[str]:
    return sorted(t.due_at.isoformat() for t in h.touchpoints(engine, step=step) if t.status == "scheduled")


def test_booking_reschedule_cancel_by_polling(engine, fhir):
    source = source_for(fhir, engine)
    appt = appointment_resource("A1", "p1", datetime(2026, 5, 3, 9, 30, tzinfo=SH), "booked", "心内科")
    fhir.put(appt)
    assert poll_source(engine, source).stored == 2  # the patient record, the booking
    assert scheduled(engine, "visit-reminder") == ["2026-05-03T00:00:00+00:00"]  # 07:30 falls in quiet hours: 08:00
    fhir.put({**appt, "start": datetime(2026, 5, 5, 14, 30, tzinfo=SH).isoformat()})
    report = poll_source(engine, source)
    assert report.stored == 1 and report.duplicates == 1  # the reschedule; the booking again is known
    assert scheduled(engine, "visit-reminder") == ["2026-05-05T04:30:00+00:00"]  # 12:30 Shanghai
    fhir.put({**appt, "status": "cancelled"})
    poll_source(engine, source)
    assert not [t for t in h.touchpoints(engine) if t.status == "scheduled"]
    again = poll_source(engine, source)
    assert (again.stored, again.duplicates) == (0, 0)  # nothing read twice once the cursor moved


def test_server_errors_and_timeouts_keep_the_cursor_and_lose_nothing(engine, fhir):
    source = source_for(fhir, engine)
    fhir.put(appointment_resource("A1", "p1", datetime(2026, 5, 3, 9, 30, tzinfo=SH), "booked", "心内科"))
    poll_source(engine, source)
    before = load_cursor(engine, source.name)
    fhir.put(appointment_resource("A2", "p1", datetime(2026, 5, 6, 9, 30, tzinfo=SH), "booked", "眼科"))
    fhir.fail_next(503)
    report = poll_source(engine, source)
    assert report.unavailable and "503" in report.unavailable
    assert load_cursor(engine, source.name) == before
    fhir.delay = 3.0  # longer than the source's 2 s timeout
    assert "did not answer" in poll_source(engine, source).unavailable
    fhir.delay = 0.0
    assert poll_source(engine, source).stored == 1
    assert {e.key for e in h.enrollments(engine)} == {"A1", "A2"}


def test_paging_through_resources_sharing_one_timestamp(engine, fhir):
    source = source_for(fhir, engine, page_size=2, resources=["Appointment"])
    same = datetime(2026, 5, 1, 8, 0, tzinfo=timezone.utc)
    for n in range(5):
        fhir.put(appointment_resource(f"A{n}", "p1", datetime(2026, 5, 3 + n, 9, 0, tzinfo=SH), "booked", "眼科"),
                 last_updated=same)
    assert poll_source(engine, source).stored == 5
    assert poll_source(engine, source).stored == 0
    fhir.put(appointment_resource("A9", "p1", datetime(2026, 5, 9, 9, 0, tzinfo=SH), "booked", "眼科"),
             last_updated=same)  # a late writer at the very same instant
    assert poll_source(engine, source).stored == 1
    assert len(h.enrollments(engine)) == 6


def test_deceased_patient_stops_everything(engine, fhir):
    source = source_for(fhir, engine)
    fhir.put(appointment_resource("A1", "p1", datetime(2026, 5, 3, 9, 30, tzinfo=SH), "booked", "心内科"))
    poll_source(engine, source)
    patient = fhir.resources[("Patient", "p1")]
    fhir.put({**patient, "deceasedDateTime": "2026-05-02T06:00:00+08:00"})
    poll_source(engine, source)
    assert h._rows(engine, Patient)[0].deceased
    assert not [t for t in h.touchpoints(engine) if t.status == "scheduled"]


@dataclass
class Context:
    connectors: dict[str, Any]
    engine: Any
    seen: list[Any] = field(default_factory=list)

    def ingest(self, event: Any) -> Any:
        return self.engine.ingest(event)


def test_rest_hook_verifies_the_secret_before_anything(engine, fhir):
    source = source_for(fhir, engine)
    app = FastAPI()
    app.state.carepath = Context({source.name: source}, engine)
    app.include_router(fhir_router())
    appt = fhir.put(appointment_resource("A1", "p1", datetime(2026, 5, 3, 9, 30, tzinfo=SH), "booked", "心内科"))
    with LiveApp(app) as live:
        endpoint = f"{live.url}/webhooks/fhir/{source.name}"
        forged = fhir.notify(endpoint, "not-the-secret", resource=appt)
        assert forged.status_code == 401
        assert h._rows(engine, Event) == []
        with_payload = fhir.notify(endpoint, SECRET, resource=appt)
        assert with_payload.status_code == 200, with_payload.text
        assert [e.key for e in h.enrollments(engine)] == ["A1"]
        fhir.put({**appt, "status": "cancelled"})
        empty = fhir.notify(endpoint, SECRET)  # no payload: carepath polls at once
        assert empty.status_code == 200 and "stored" in empty.text
        assert [e.status for e in h.enrollments(engine)] == ["exited"]
        assert requests.post(f"{live.url}/webhooks/fhir/nobody", headers={"X-Carepath-Token": SECRET},
                             timeout=5).status_code == 404


def test_same_booking_by_hl7_and_fhir_is_stored_once(engine, fhir):
    hl7 = Hl7Source.from_options("hl7", {})
    hl7.bind(engine)
    assert "|AA|" in hl7.handle(m.siu("S12", "C1", appointment="A1", start="20260503093000").encode()).decode()
    fhir.put(appointment_resource("A1", "p1", datetime(2026, 5, 3, 9, 30, tzinfo=SH), "booked", "心内科"))
    report = poll_source(engine, source_for(fhir, engine, resources=["Appointment"]))
    assert (report.stored, report.duplicates) == (0, 1)
    assert [e.type for e in h._rows(engine, Event) if not e.source.startswith("carepath")] == ["appointment.booked"]  # not derived
    assert len(h.enrollments(engine)) == 1


class TestFhirConformance(HisSourceConformance):
    connector_class = FhirSource
    valid_config = {"base_url": "http://127.0.0.1:9/fhir", "webhook_secret": SECRET, "token": "bearer-for-tests"}
    invalid_configs = [{"base_url": "ftp://x"}, {"base_url": "http://x", "page_size": 0}]
    callback_signs_body = False

    def make_network_source(self, url, timeout):
        return FhirSource.from_options("conformance", {"base_url": url, "timeout": timeout})

    def good_callback(self, connector):
        from carepath.plugins.contracts import CallbackRequest

        return CallbackRequest(body=b"", headers={"X-Carepath-Token": SECRET}, method="POST")


class TestHl7Conformance(HisSourceConformance):
    connector_class = Hl7Source
    valid_config = {"port": 0, "system": "his", "default_charset": "gb18030"}
    invalid_configs = [{"port": -1}, {"timezone": "Mars/Olympus"}]


def lmp_observation(oid: str, patient_id: str, value: str, status: str = "final") -> dict[str, Any]:
    """An Observation of LOINC 8665-2 (last menstrual period start date), as an obstetric record keeps it."""
    return {"resourceType": "Observation", "id": oid, "status": status,
            "code": {"coding": [{"system": "http://loinc.org", "code": "8665-2",
                                 "display": "Last menstrual period start date"}], "text": "末次月经"},
            "subject": {"reference": f"Patient/{patient_id}"}, "effectiveDateTime": "2026-05-01T08:30:00+08:00",
            "valueDateTime": value}


def test_a_last_menstrual_period_observation_dates_the_pregnancy(engine, fhir):
    """Polled over HTTP: the pregnant patient's record (Z34 from her Conditions), then her LMP Observation as
    ``pregnancy.dated``, which enrolls her in the maternity journey on her gestational weeks; read once."""
    fhir.put(patient_resource("p2", "MRN077", "林晓", "13812345679", "1994-04-04", "female"))
    fhir.put({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p2"},
              "clinicalStatus": {"coding": [{"code": "active"}]},
              "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "Z34.0"}]}})
    fhir.put(lmp_observation("o1", "p2", "2026-02-20"))
    source = source_for(fhir, engine, resources=["Patient", "Observation"])
    poll_source(engine, source)
    assert source.problems == []
    [dated] = [e for e in h._rows(engine, Event) if e.type == "pregnancy.dated"]
    assert reveal_payload(dated.payload, engine.cipher) == {"lmp": "2026-02-20T00:00:00+08:00", "method": "lmp"}
    [enrolled] = h.enrollments(engine, journey="maternity")
    assert datetime.fromisoformat(enrolled.anchors["lmp"]) == datetime(2026, 2, 20, tzinfo=SH)
    assert any(t.anchor == "lmp" and t.status == "scheduled" for t in h.touchpoints(engine))
    fhir.put(lmp_observation("o1", "p2", "2026-02-20T00:00:00+08:00"))
    assert poll_source(engine, source).stored == 0  # the same date again (a new version): the same fact


def test_an_lmp_observation_that_is_no_day_is_reported_and_passed(engine, fhir):
    fhir.put(lmp_observation("o2", "p1", "2026-02"))  # a month only: no day to count weeks from
    source = source_for(fhir, engine, resources=["Observation"])
    poll_source(engine, source)
    assert source.problems == ["Observation/o2: valueDateTime must be the day of the last menstrual period "
                               "(YYYY-MM-DD), got '2026-02'"]
    assert not [e for e in h._rows(engine, Event) if e.type == "pregnancy.dated"]
