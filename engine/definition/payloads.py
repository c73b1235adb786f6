"""The payload models of the built-in event types (:mod:`carepath.definition.catalog` names each type).

A payload may carry more fields than its model names (hospital systems send more than the engine reads): extra
fields are kept, but journeys can rely only on the fields named here.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator


class Payload(BaseModel):
    """Base of payload models: extra fields are kept; numbers are accepted where text is expected."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True, frozen=True)


_APPOINTMENT_ID = "the HIS appointment number; the episode key of appointment journeys"
_ENCOUNTER_ID = "the HIS encounter (admission) number"


class AppointmentRef(Payload):
    appointment_id: str = Field(description=_APPOINTMENT_ID)


class AppointmentBooked(Payload):
    # Optional here (a walk-in booking may have none) but required to move or cancel one: a cancellation
    # without an id would reach every appointment journey of the patient.
    appointment_id: str | None = Field(None, description=_APPOINTMENT_ID)
    start: AwareDatetime = Field(description="when the visit starts, ISO 8601 with offset")
    department: str | None = Field(None, description="clinic department, e.g. 内分泌科")
    department_code: str | None = Field(None, description="the department's code in the HIS")
    doctor: str | None = Field(None, description="the doctor's display name")
    reason: str | None = Field(None, description="why the visit was booked, as the HIS says it")
    location: str | None = Field(None, description="building, floor or room to go to")
    fasting: bool | None = Field(None, description="the visit includes tests that need fasting")


class AppointmentRescheduled(AppointmentBooked):
    appointment_id: str = Field(description=_APPOINTMENT_ID)
    previous_start: AwareDatetime | None = Field(None, description="the slot before the move")


class AppointmentCancelled(AppointmentRef):
    reason: str | None = Field(None, description="why it was cancelled, as the HIS says it")
    start: AwareDatetime | None = Field(None, description="when the cancelled visit was to start, if the HIS says "
                                                          "(for a cancellation notice)")
    department: str | None = Field(None, description="clinic department of the cancelled visit")


class AppointmentNoShow(AppointmentRef):
    pass


class VisitCheckedIn(Payload):
    appointment_id: str | None = Field(None, description=_APPOINTMENT_ID + "; absent for walk-ins")
    encounter_id: str | None = Field(None, description=_ENCOUNTER_ID + " the visit opened")
    queue_no: str | int | None = Field(None, description="the patient's number in the department queue (e.g. B017 or 17)")
    department: str | None = Field(None, description="clinic department")
    department_code: str | None = Field(None, description="the department's code in the HIS")


class PregnancyDated(Payload):
    """Issue 24: the dating of a pregnancy, as the obstetric record keeps it (末次月经, 预产期, 孕周)."""

    lmp: AwareDatetime = Field(description="the first day of the last menstrual period (末次月经), midnight local "
                                           "time with its offset; from a due date: the due date less 280 days")
    due_date: AwareDatetime | None = Field(None, description="the estimated due date (预产期) the doctor recorded")
    gestational_weeks: int | None = Field(None, ge=0, le=45, description="completed weeks of pregnancy (孕周) "
                                                                         "on the day it was dated")
    method: str | None = Field(None, description="how it was dated: lmp, ultrasound...")


class QueueCalled(Payload):
    appointment_id: str | None = Field(None, description=_APPOINTMENT_ID)
    queue_no: int | None = Field(None, description="the number called")
    room: str | None = Field(None, description="the consulting room to go to")


class ReportReady(Payload):
    report: str | None = Field(None, description="the report's display name, e.g. 血常规")
    report_id: str | None = Field(None, description="the report's id in the lab or imaging system")
    report_code: str | None = Field(None, description="the report's code (LOINC or local)")
    issued: AwareDatetime | None = Field(None, description="when the report was issued")
    appointment_id: str | None = Field(None, description=_APPOINTMENT_ID)
    order_id: str | None = Field(None, description="the order the report answers")
    abnormal: bool | None = Field(None, description="the report has results outside the reference range")


class Encounter(Payload):
    encounter_id: str | None = Field(None, description=_ENCOUNTER_ID)
    appointment_id: str | None = Field(None, description=_APPOINTMENT_ID + " (outpatient encounters)")
    department: str | None = Field(None, description="department or ward")
    department_code: str | None = Field(None, description="the department's code in the HIS")
    patient_class: str | None = Field(None, description="inpatient, outpatient, emergency... as the HIS codes it")


class EncounterAdmitted(Encounter):
    admitted_at: AwareDatetime | None = Field(None, description="when the patient was admitted")
    ward: str | None = Field(None, description="the ward")
    bed: str | None = Field(None, description="the bed number")


class EncounterDischarged(Encounter):
    discharged_at: AwareDatetime | None = Field(None, description="when the patient left")
    diagnosis: str | None = Field(None, description="discharge diagnosis (ICD-10 code or text)")
    disposition: str | None = Field(None, description="where the patient went: home, transfer...")


class EncounterReversal(Encounter):
    cancelled_at: AwareDatetime | None = Field(None, description="when it was reversed")
    reason: str | None = Field(None, description="why it was reversed")


class PatientUpdated(Payload):
    patient: dict[str, Any] | None = Field(None, description="the patient record (name, phone, birth_date...); "
                                                             "stored encrypted on the patient, never on the event")
    updated_at: AwareDatetime | None = Field(None, description="when the HIS changed the record")


_CHOSEN = "HH:MM in the patient's time zone; null clears it (the preference's default applies again)"


class PreferencesUpdated(Payload):
    """Issue 19: preferences a hospital declares in carepath.toml come as further fields of the same form."""

    medication_time: str | None = Field(None, description="when the patient takes their medication: " + _CHOSEN)
    measurement_time: str | None = Field(None, description="when the patient measures at home: " + _CHOSEN)
    checkin_time: str | None = Field(None, description="when the patient prefers a daily check-in prompt: " + _CHOSEN)


class PatientMerged(Payload):
    merged_mrn: str = Field(description="the MRN merged into this event's patient_mrn")


class PatientDeceased(Payload):
    # Text, not a date-time: a death must be applied whatever the HIS wrote here.
    deceased_at: str | None = Field(None, description="when the patient died (ISO 8601), as the HIS sends it")


class ConsentChanged(Payload):
    purpose: str = Field(description="what the consent covers: clinical, marketing, sensitive (separate consent to "
                                     "process sensitive personal information, e.g. sensitive diagnoses in "
                                     "segments), or template:<name> (one WeChat subscription template the "
                                     "patient accepted or rejected)")
    granted: bool = Field(description="true when given, false when withdrawn")
    channel: str = Field("*", description="the channel it applies to; * for all")
    via: str | None = Field(None, description="how the patient gave it: his (the hospital's systems; the default), "
                                               "patient_reply, staff (recorded by a staff member), web (a web page)")
    recorded_by: str | None = Field(None, max_length=128, description="the staff member who recorded it")
    reason: str | None = Field(None, max_length=255, description="why, in a few words (kept in the ledger)")

    @field_validator("via")
    @classmethod
    def _via(cls, v: str | None) -> str | None:
        if v is None or v in ("his", "patient_reply", "staff", "web"):
            return v
        raise ValueError("must be his, patient_reply, staff or web")

    @field_validator("purpose")
    @classmethod
    def _purpose(cls, v: str) -> str:
        if v in ("clinical", "marketing", "sensitive") or re.fullmatch(r"template:[A-Za-z0-9_\-]+", v):
            return v
        raise ValueError("must be clinical, marketing, sensitive or template:<template name>")


class MessageReplied(Payload):
    text: str = Field(description="what the patient wrote")
    channel: str | None = Field(None, description="the channel the reply came in on")
    provider_id: str | None = Field(None, description="the provider's id of the message replied to")
    related_person: str | None = Field(None, description="the ref of the patient's related person who wrote it "
                                                         "(from their own address), when not the patient")


class MessageReceipt(Payload):
    provider_id: str = Field(description="the provider's message id, as recorded when it was sent")
    reason: str | None = Field(None, description="the provider's status or error text")


class SurveyCompleted(Payload):
    # What carepath's survey connectors send (docs/surveys.md); the scores are always present, possibly null.
    survey: str = Field(description="the questionnaire's name")
    nps: int | None = Field(description="the 0-10 likelihood-to-recommend answer, or null")
    nps_category: Literal["promoter", "passive", "detractor"] | None = Field(
        description="promoter (9-10), passive (7-8), detractor (0-6), or null")
    satisfaction: float | None = Field(description="mean of the satisfaction items, or null")
    red_flags: list[str] = Field(description="ids of the red-flag questions answered yes (empty: none)")
    response_id: str | None = Field(None, description="the stored survey response")
    touchpoint_id: int | None = Field(None, description="the invitation it answers")
    journey: str | None = Field(None, description="the journey that sent the invitation")
    step: str | None = Field(None, description="the step that sent the invitation")
    episode_key: str | None = Field(None, description="the episode key of the enrollment invited")


class MessageClicked(Payload):
    touchpoint_id: int = Field(description="the message (touchpoint) whose link was opened")
    link: int | None = Field(None, description="which tracked link of the message (its id in tracked_links)")
    journey: str | None = Field(None, description="the journey that sent the message")
    step: str | None = Field(None, description="the step that sent the message")


class SegmentChange(Payload):
    segment: str = Field(description="the segment's name, e.g. activity-low")
    dimension: str = Field(description="its dimension: clinical, behaviour, value, demographic or custom")


class TaskSlaBreached(Payload):
    # What carepath.runtime.work_queue.check_slas stores for every breach it escalates.
    task_id: int = Field(description="the staff task")
    kind: str = Field(description="the task's kind, e.g. complaint, call_patient")
    team: str = Field(description="the team it belongs to")
    deadline: Literal["first_response", "resolution"] = Field(
        description="which deadline passed: first_response (nobody claimed it) or resolution (not closed)")
    level: int = Field(description="the escalation level it moved to (0 is the team's first role)")
    role: str = Field(description="the role it is now assigned to")


class VitalsReading(Payload):
    kind: str = Field(description="what was measured: systolic_bp, diastolic_bp, heart_rate, glucose, weight, "
                                  "temperature, spo2...")
    value: float = Field(description="the reading")
    unit: str | None = Field(None, description="unit of value, e.g. mmHg, mmol/L")
    code: str | None = Field(None, description="the measurement's code (LOINC)")
    device_id: str | None = Field(None, description="the measuring device")


class CheckinRecorded(Payload):
    # issue 19: what carepath.runtime.checkins tells journeys; the values are in the measure's own unit
    checkin: str = Field(description="the check-in's name (the checkin action's checkin field)")
    journey: str = Field(description="the journey whose prompt it answers")
    step: str = Field(description="the check-in step")
    day: date = Field(description="the patient-local day it counts for")
    source: Literal["reply", "page", "device"] = Field(description="how the patient checked in")
    measure: str | None = Field(None, description="what was measured (glucose, blood_pressure...), null for a keyword")
    value: float | None = Field(None, description="the value of a one-number measure, in unit")
    systolic_bp: float | None = Field(None, description="a blood-pressure check-in's upper number (mmHg)")
    diastolic_bp: float | None = Field(None, description="a blood-pressure check-in's lower number (mmHg)")
    unit: str | None = Field(None, description="the measure's unit (mmol/L, mmHg...)")


class RelatedPersonContact(Payload):
    name: str | None = Field(None, description="the person's name")
    phone: str | None = Field(None, description="their mobile number (for SMS)")
    openid: str | None = Field(None, description="their WeChat openid")


class RelatedPersonAdded(Payload):
    # issue 19, family and guardians: carepath.runtime.family
    ref: str = Field(description="the source's id of this person (FHIR RelatedPerson id, HL7 NK1 set id...): "
                                 "the same ref updates the same person")
    relationship: str = Field(description="mother, father, parent, guardian, spouse, child, sibling, "
                                          "grandparent, other... (free text, lower case)")
    guardian: bool = Field(False, description="the patient's legal guardian (receives a minor's messages)")
    contact: RelatedPersonContact = Field(default_factory=RelatedPersonContact,
                                          description="name, phone, openid (encrypted at rest)")
    marketing_consent: bool = Field(False, description="the person agreed to marketing messages (greetings...)")


class RelatedPersonRemoved(Payload):
    ref: str = Field(description="the ref the person was added with")
