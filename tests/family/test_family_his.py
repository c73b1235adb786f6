"""Family members and guardians from the HIS: FHIR RelatedPerson polled from the loopback FHIR server, HL7 NK1
segments over a real MLLP socket; stored encrypted, removed when no longer active."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from carepath.connectors.his.fhir_emulator import FhirEmulator, patient_resource
from carepath.connectors.his.fhir_source import FhirSource
from carepath.connectors.his.hl7_source import Hl7Source
from carepath.connectors.his.mllp import MllpClient
from carepath.listeners import Listeners
from carepath.runtime.his_poll import poll_source
from carepath.store.family_schema import RelatedPerson
from tests.connectors import hl7_messages as m
from tests.engine import helpers as h

MOTHER, SPOUSE = "13900000022", "13700000033"


@pytest.fixture
def engine(database_url, settings, clock):
    eng = h.make_engine(database_url, settings, clock, [], {"sms": h.RecordingChannel("sms")})
    yield eng
    eng.close()


def _related(engine) -> list[dict[str, Any]]:
    with engine.db.connect() as conn:
        rows = conn.execute(select(RelatedPerson.__table__).order_by(RelatedPerson.id)).all()
    return [{"ref": r.ref, "relationship": r.relationship, "guardian": r.guardian, "removed": r.removed_at is not None,
             "name": engine.cipher.decrypt(r.name_enc), "phone": engine.cipher.decrypt(r.phone_enc)} for r in rows]


def _related_person(rid: str, code: str, name: str, phone: str, active: bool = True) -> dict[str, Any]:
    return {"resourceType": "RelatedPerson", "id": rid, "active": active, "patient": {"reference": "Patient/p1"},
            "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                                          "code": code}]}],
            "name": [{"text": name}], "telecom": [{"system": "phone", "value": phone}]}


def test_fhir_related_persons_are_polled_stored_encrypted_and_removed(engine):
    with FhirEmulator() as fhir:
        fhir.put(patient_resource("p1", "MRN001", "李小明", "13812345678", "2016-01-01", "male"))
        fhir.put(_related_person("rp1", "MTH", "王芳", MOTHER))
        source = FhirSource.from_options("hospital-fhir", {"base_url": fhir.base_url, "timeout": 2,
                                                           "resources": ["Patient", "RelatedPerson"]})
        source.bind(engine)
        report = poll_source(engine, source)
        assert report.stored == 2 and source.problems == []
        assert _related(engine) == [{"ref": "RelatedPerson/rp1", "relationship": "mother", "guardian": True,
                                     "removed": False, "name": "王芳", "phone": MOTHER}]
        assert MOTHER not in str(h.raw_rows(engine, "related_persons")) + str(h.raw_rows(engine, "events"))

        fhir.put(_related_person("rp1", "MTH", "王芳", MOTHER, active=False))
        assert poll_source(engine, source).stored == 1
        assert _related(engine)[0]["removed"] is True
        assert _related(engine)[0]["removed"] is True


def test_hl7_nk1_segments_become_related_persons(engine):
    source = Hl7Source.from_options("hl7", {"port": 0, "host": "127.0.0.1"})
    source.bind(engine)
    listeners = Listeners([source])
    listeners.start()
    try:
        port = listeners.servers[0].sockets[0].getsockname()[1]
        pv1 = "|".join(["PV1", "1", "I", "0101^儿科", *[""] * 15, "V1"])
        text = m.message("ADT^A01", "NK-1", "EVN|A01|20260501100000", m.pid(), pv1,
                         "NK1|1|王^芳|MTH^母亲^HL70063||^PRN^CP^^^^^^^^^" + MOTHER,
                         "NK1|2|张^伟|SPO^配偶^HL70063||" + SPOUSE)
        with MllpClient("127.0.0.1", port) as client:
            ack = client.send(text.encode()).decode()
    finally:
        listeners.stop()
    assert "MSA|AA" in ack
    assert _related(engine) == [
        {"ref": "NK1/1", "relationship": "mother", "guardian": True, "removed": False, "name": "王芳", "phone": MOTHER},
        {"ref": "NK1/2", "relationship": "spouse", "guardian": False, "removed": False, "name": "张伟",
         "phone": SPOUSE}]
