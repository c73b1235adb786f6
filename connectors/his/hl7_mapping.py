"""HL7 v2 -> carepath event mapping, as data a hospital can override.

Each message type (``SIU^S12``) maps to one event type, the payload fields
read from HL7 paths (``SCH-11.4``: segment, field, component; ``A|B``: the
first that has a value), which of them are required, which are timestamps,
and which make the fact's business identity. A hospital whose HIS uses local
codes or other fields overrides entries in ``carepath.toml``
(``[connectors.NAME.messages."SIU^S12"]``, ``[connectors.NAME.codes]``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MessageMap(BaseModel):
    """How one HL7 message type becomes a carepath event."""

    model_config = ConfigDict(extra="forbid")

    event: str = Field(description="carepath event type")
    fields: dict[str, str] = Field(default_factory=dict, description="payload field -> HL7 path(s), 'A|B' = first present")
    required: list[str] = Field(default_factory=list, description="payload fields that must have a value")
    times: list[str] = Field(default_factory=list, description="payload fields holding HL7 timestamps")
    identity: list[str] = Field(default_factory=list, description="payload fields that identify the fact")
    occurred_at: str = Field("EVN-2.1|MSH-7.1", description="HL7 path of the time the fact happened")


_APPOINTMENT = {"appointment_id": "SCH-2.1|SCH-1.1", "start": "SCH-11.4|TQ1-7.1|AIS-4.1",
                "department": "AIL-3.2|AIL-3.1|PV1-3.1", "department_code": "AIL-3.1|PV1-3.1",
                "doctor": "AIP-3.2|AIP-3.1", "reason": "SCH-7.2|SCH-7.1"}
_VISIT = {"encounter_id": "PV1-19.1", "appointment_id": "PV1-5.1", "department": "PV1-3.1",
          "department_code": "PV1-3.1", "patient_class": "PV1-2.1"}

DEFAULT_MESSAGES: dict[str, MessageMap] = {
    "SIU^S12": MessageMap(event="appointment.booked", fields=_APPOINTMENT, required=["appointment_id", "start"],
                          times=["start"], identity=["appointment_id"]),
    "SIU^S14": MessageMap(event="appointment.rescheduled", fields=_APPOINTMENT,
                          required=["appointment_id", "start"], times=["start"], identity=["appointment_id", "start"]),
    "SIU^S15": MessageMap(event="appointment.cancelled", fields=_APPOINTMENT, required=["appointment_id"],
                          times=["start"], identity=["appointment_id"]),
    "SIU^S26": MessageMap(event="appointment.no_show", fields=_APPOINTMENT, required=["appointment_id"],
                          times=["start"], identity=["appointment_id"]),
    "ADT^A01": MessageMap(event="encounter.admitted", fields={**_VISIT, "admitted_at": "PV1-44.1|EVN-2.1"},
                          required=["encounter_id"], times=["admitted_at"], identity=["encounter_id"],
                          occurred_at="PV1-44.1|EVN-2.1|MSH-7.1"),
    "ADT^A03": MessageMap(event="encounter.discharged", fields={**_VISIT, "discharged_at": "PV1-45.1|EVN-2.1"},
                          required=["encounter_id"], times=["discharged_at"],
                          identity=["encounter_id", "discharged_at"], occurred_at="PV1-45.1|EVN-2.1|MSH-7.1"),
    "ADT^A04": MessageMap(event="visit.checked_in", fields=_VISIT, required=["encounter_id"],
                          identity=["encounter_id"]),
    "ADT^A08": MessageMap(event="patient.updated", fields={"updated_at": "EVN-2.1|MSH-7.1"}, times=["updated_at"],
                          identity=["updated_at"]),
    "ADT^A11": MessageMap(event="encounter.admission_cancelled", fields=_VISIT, required=["encounter_id"],
                          identity=["encounter_id"]),
    "ADT^A13": MessageMap(event="encounter.discharge_cancelled", fields={**_VISIT, "cancelled_at": "EVN-2.1|MSH-7.1"},
                          required=["encounter_id"], times=["cancelled_at"], identity=["encounter_id", "cancelled_at"]),
    "ADT^A40": MessageMap(event="patient.merged", fields={"merged_mrn": "MRG-1.1"}, required=["merged_mrn"],
                          identity=["merged_mrn"]),
    "ORU^R01": MessageMap(event="report.ready", fields={"report_id": "OBR-3.1|OBR-2.1", "report": "OBR-4.2|OBR-4.1",
                                                        "report_code": "OBR-4.1", "issued": "OBR-22.1|OBR-7.1",
                                                        "appointment_id": "ORC-4.1|PV1-5.1"},
                          required=["report_id"], times=["issued"], identity=["report_id"],
                          occurred_at="OBR-22.1|MSH-7.1"),
}

#: LOINC codes of vital signs: an ORU OBX with one of these is also a ``vitals.reading``.
DEFAULT_VITALS: dict[str, str] = {
    "8480-6": "systolic_bp", "8462-4": "diastolic_bp", "8867-4": "heart_rate", "2339-0": "glucose",
    "29463-7": "weight", "8310-5": "temperature", "59408-5": "spo2",
}

#: LOINC codes that date a pregnancy: an ORU OBX (or a FHIR Observation) with one of these is also a
#: ``pregnancy.dated`` event, its value in this payload field (8665-2: the first day of the last menstrual period).
PREGNANCY_DATING: dict[str, str] = {"8665-2": "lmp"}
