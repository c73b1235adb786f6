"""What the HL7 connector stores for each default message type fits the event catalogue."""

from __future__ import annotations

from carepath.connectors.his.hl7_source import Hl7Source
from carepath.definition.catalog import event_types, payload_problems
from carepath.store.personal_data import reveal_payload
from carepath.store.schema import Event

from tests.connectors import hl7_messages as m
from tests.engine import helpers as h


def test_every_default_hl7_message_type_makes_a_catalogued_event_that_fits(database_url, settings, clock):
    engine = h.make_engine(database_url, settings, clock, [], {})
    try:
        source = Hl7Source.from_options("hl7", {})
        source.bind(engine)
        messages = [m.siu(trigger, f"S{trigger}") for trigger in ("S12", "S14", "S15", "S26")]
        messages += [m.adt(trigger, f"A{trigger}") for trigger in ("A01", "A03", "A04", "A08", "A11", "A13")]
        messages.append(m.message("ADT^A40", "M40", "EVN|A40|20260501110000", m.pid("NEW1"), "MRG|OLD1^^^H1^MR"))
        messages.append(m.message("ORU^R01", "R01", m.pid(), "OBR|1|O1|R77|GLU^血糖|||20260501080000|||||||||||||||"
                                  "20260501083000", "OBX|1|NM|2339-0^Glucose^LN||7.8|mmol/L|||||F|||20260501080000",
                                  "OBX|2|DT|8665-2^Last menstrual period start date^LN||20260220||||||F"))
        for raw in messages:
            assert "|AA|" in source.handle(raw.encode()).decode(), raw
        stored = h._rows(engine, Event)
        assert {e.type for e in stored} >= {"appointment.booked", "appointment.rescheduled", "appointment.cancelled",
                                            "appointment.no_show", "encounter.admitted", "encounter.discharged",
                                            "visit.checked_in", "encounter.admission_cancelled",
                                            "encounter.discharge_cancelled", "patient.merged", "report.ready",
                                            "vitals.reading", "pregnancy.dated"}
        for event in stored:
            assert event.type in event_types(), event.type
            payload = reveal_payload(event.payload, engine.cipher)  # as the engine reads it: values are encrypted
            assert payload_problems(event.type, payload) == [], (event.type, payload)
            assert "not applied" not in (event.outcome or ""), (event.type, event.outcome)
    finally:
        engine.close()
