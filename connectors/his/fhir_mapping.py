"""FHIR R4 resources -> carepath events, read through the ``fhir.resources`` R4B models.

A search returns each resource's current version only, so a change is
recognised from what the version says: an Appointment that is ``booked`` at
version 2 or later is also a reschedule to its current ``start`` (stored once
per distinct start, like HL7 SIU^S14); an Encounter back ``in-progress`` after
an update may have had its discharge reversed.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo

from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from pydantic import ValidationError

from carepath.connectors.his.hl7_mapping import DEFAULT_VITALS, PREGNANCY_DATING
from carepath.connectors.his.identity import his_event
from carepath.connectors.his.related_mapping import fhir_related_person
from carepath.definition.events import EventIn

LOINC = "http://loinc.org"
ICD10_SYSTEMS = ("http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-cn", "urn:oid:2.16.840.1.113883.6.3")


class FhirProblem(ValueError):
    """A resource that cannot be mapped; the message names the resource and the element."""


def version_of(resource: Mapping[str, Any]) -> str:
    return str((resource.get("meta") or {}).get("versionId") or "1")


def _text(concepts: Any) -> str:
    for concept in concepts or []:
        if concept.text:
            return concept.text
        for coding in concept.coding or []:
            if coding.display or coding.code:
                return coding.display or coding.code
    return ""


def _ref_id(reference: Any) -> str:
    ref = getattr(reference, "reference", None) or ""
    return ref.rsplit("/", 1)[-1] if ref else ""


def mrn_of(patient: Patient, mrn_system: str | None) -> str:
    """The medical record number: the identifier typed ``MR``, else of ``mrn_system``, else the first."""
    ids = patient.identifier or []
    for ident in ids:
        if any(c.code == "MR" for c in ((ident.type.coding or []) if ident.type else [])) and ident.value:
            return ident.value
    for ident in ids:
        if mrn_system and ident.system == mrn_system and ident.value:
            return ident.value
    for ident in ids:
        if ident.value:
            return ident.value
    raise FhirProblem(f"Patient/{patient.id}: identifier has no value (no MRN)")


def patient_record(patient: Patient, conditions: list[str] | None = None) -> dict[str, Any]:
    """Demographics as a carepath patient record (only what the resource carries)."""
    record: dict[str, Any] = {}
    if patient.name:
        name = patient.name[0]
        record["name"] = name.text or "".join([name.family or "", *(name.given or [])])
    phones = [t.value for t in patient.telecom or [] if t.system == "phone" and t.value]
    if phones:
        record["phone"] = phones[0]
    if patient.birthDate:
        record["birth_date"] = patient.birthDate.isoformat()
    if patient.gender:
        record["sex"] = {"male": "M", "female": "F"}.get(patient.gender, "O")
    if conditions is not None:
        record["conditions"] = conditions
    return record


def icd10_codes(conditions: list[Mapping[str, Any]]) -> list[str]:
    """ICD-10 codes of active Condition resources."""
    from fhir.resources.R4B.condition import Condition

    codes = []
    for raw in conditions:
        cond = Condition.model_validate(raw)
        status = _text([cond.clinicalStatus]) if cond.clinicalStatus else "active"
        if status not in ("active", "recurrence", "relapse"):
            continue
        for coding in (cond.code.coding or []) if cond.code else []:
            if coding.system in ICD10_SYSTEMS and coding.code:
                codes.append(coding.code)
    return sorted(set(codes))


def _when(value: Any, fallback: datetime) -> datetime:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value
    return fallback


class ResourceMapper:
    """Maps one resource at a time; ``patient_of(reference) -> (mrn, record)`` resolves subjects."""

    def __init__(self, system: str, patient_of: Callable[[str], tuple[str, dict[str, Any]]],
                 vitals: Mapping[str, str] | None = None, mrn_system: str | None = None,
                 tz: ZoneInfo = ZoneInfo("Asia/Shanghai")) -> None:
        self.system = system
        self.patient_of = patient_of
        self.vitals = {**DEFAULT_VITALS, **(vitals or {})}
        self.mrn_system = mrn_system
        self.tz = tz  # of a date without a time (a last menstrual period)

    def events(self, raw: Mapping[str, Any]) -> list[EventIn]:
        """Every event one resource stands for (empty for states carepath does not act on)."""
        kind = raw.get("resourceType")
        handler = {"Appointment": self._appointment, "Encounter": self._encounter,
                   "DiagnosticReport": self._report, "Patient": self._patient,
                   "Observation": self._observation, "RelatedPerson": self._related_person}.get(str(kind))
        if handler is None:
            return []
        try:
            return handler(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise FhirProblem(f"{kind}/{raw.get('id')}: {where}: {first['msg']}") from None

    def _updated(self, resource: Any) -> datetime:
        meta = resource.meta
        if meta is None or meta.lastUpdated is None:
            raise FhirProblem(f"{resource.get_resource_type()}/{resource.id}: meta.lastUpdated is missing")
        return meta.lastUpdated

    def _with_patient(self, reference: str, payload: dict[str, Any]) -> str:
        mrn, record = self.patient_of(reference)
        if record:
            payload["patient"] = record
        return mrn

    def _appointment(self, raw: Mapping[str, Any]) -> list[EventIn]:
        appt = Appointment.model_validate(raw)
        subject = next((p.actor.reference for p in appt.participant or []
                        if p.actor and (p.actor.reference or "").startswith("Patient/")), None)
        if subject is None:
            raise FhirProblem(f"Appointment/{appt.id}: participant has no Patient actor")
        updated = self._updated(appt)
        payload: dict[str, Any] = {"appointment_id": appt.id}
        if appt.start:
            payload["start"] = appt.start.isoformat()
        department = _text(appt.specialty) or _text(appt.serviceType)
        if department:
            payload["department"] = department
        reason = _text([appt.appointmentType]) if appt.appointmentType else ""
        if reason:
            payload["reason"] = reason
        mrn = self._with_patient(subject, payload)
        status = appt.status
        if status in ("booked", "pending", "proposed"):
            if not appt.start:
                raise FhirProblem(f"Appointment/{appt.id}: start is required when status is {status}")
            out = [his_event(self.system, "appointment.booked", mrn, updated, (appt.id,), payload)]
            if version_of(raw) != "1":
                out.append(his_event(self.system, "appointment.rescheduled", mrn, updated, (appt.id, appt.start),
                                     payload))
            return out
        simple = {"cancelled": "appointment.cancelled", "noshow": "appointment.no_show",
                  "arrived": "visit.checked_in", "checked-in": "visit.checked_in"}
        if status in simple:
            return [his_event(self.system, simple[status], mrn, updated, (appt.id,), payload)]
        return []

    def _encounter(self, raw: Mapping[str, Any]) -> list[EventIn]:
        enc = Encounter.model_validate(raw)
        if enc.subject is None or not (enc.subject.reference or "").startswith("Patient/"):
            raise FhirProblem(f"Encounter/{enc.id}: subject is not a Patient reference")
        updated = self._updated(enc)
        payload: dict[str, Any] = {"encounter_id": enc.id}
        appointment = next((_ref_id(a) for a in enc.appointment or []), "")
        if appointment:
            payload["appointment_id"] = appointment
        department = _text(enc.serviceType and [enc.serviceType])
        if department:
            payload["department"] = department
        mrn = self._with_patient(enc.subject.reference, payload)
        period = enc.period
        if enc.status == "finished":
            end = _when(period.end if period else None, updated)
            payload["discharged_at"] = end.isoformat()
            return [his_event(self.system, "encounter.discharged", mrn, end, (enc.id, end), payload)]
        if enc.status == "in-progress":
            start = _when(period.start if period else None, updated)
            payload["admitted_at"] = start.isoformat()
            out = [his_event(self.system, "encounter.admitted", mrn, start, (enc.id,), payload)]
            if version_of(raw) != "1":  # back in progress after an update: a discharge may have been reversed
                out.append(his_event(self.system, "encounter.discharge_cancelled", mrn, updated,
                                     (enc.id, updated), payload))
            return out
        if enc.status in ("cancelled", "entered-in-error"):
            return [his_event(self.system, "encounter.admission_cancelled", mrn, updated, (enc.id,), payload)]
        return []

    def _report(self, raw: Mapping[str, Any]) -> list[EventIn]:
        report = DiagnosticReport.model_validate(raw)
        if report.status not in ("final", "amended", "corrected"):
            return []
        if report.subject is None:
            raise FhirProblem(f"DiagnosticReport/{report.id}: subject is missing")
        issued = report.issued or self._updated(report)
        payload: dict[str, Any] = {"report_id": report.id, "report": _text([report.code]), "issued": issued.isoformat()}
        appointment = next((_ref_id(b) for b in report.basedOn or []), "")
        if appointment:
            payload["order_id"] = appointment
        mrn = self._with_patient(report.subject.reference, payload)
        return [his_event(self.system, "report.ready", mrn, issued, (report.id,), payload)]

    def _patient(self, raw: Mapping[str, Any]) -> list[EventIn]:
        patient = Patient.model_validate(raw)
        updated = self._updated(patient)
        mrn = mrn_of(patient, self.mrn_system)
        _, record = self.patient_of(f"Patient/{patient.id}")
        record = record or patient_record(patient)
        out = [his_event(self.system, "patient.updated", mrn, updated, (mrn, updated), {"patient": record})]
        for link in patient.link or []:
            if link.type == "replaced-by" and link.other and link.other.reference:
                survivor, _ = self.patient_of(link.other.reference)
                out.append(his_event(self.system, "patient.merged", survivor, updated, (mrn,), {"merged_mrn": mrn}))
        died = patient.deceasedDateTime or (updated if patient.deceasedBoolean else None)
        if died is not None:
            out.append(his_event(self.system, "patient.deceased", mrn, _when(died, updated), (mrn,),
                                 {"deceased_at": _when(died, updated).isoformat()}))
        return out

    def _observation(self, raw: Mapping[str, Any]) -> list[EventIn]:
        """A vital sign's value, and (issue 19) each vital component of a panel (a blood-pressure Observation,
        85354-9, carries systolic and diastolic as components): one ``vitals.reading`` each, at the same time."""
        obs = Observation.model_validate(raw)
        if obs.subject is None or obs.status not in ("final", "amended"):
            return []
        dating = next((PREGNANCY_DATING[c.code] for c in (obs.code.coding or [])
                       if c.code in PREGNANCY_DATING and c.system in (None, LOINC)), None)
        if dating is not None:
            return self._pregnancy_dating(obs, dating)
        parts = [(obs.code, obs.valueQuantity), *((c.code, c.valueQuantity) for c in (obs.component or []))]
        found = [(code, quantity) for concept, quantity in parts if quantity is not None and quantity.value is not None
                 for code in [next((c.code for c in (concept.coding or []) if c.code in self.vitals), None)] if code]
        if not found:
            return []
        when = _when(obs.effectiveDateTime, self._updated(obs))
        mrn, _ = self.patient_of(obs.subject.reference)
        return [his_event(self.system, "vitals.reading", mrn, when, (mrn, self.vitals[code], when),
                          {"kind": self.vitals[code], "code": code, "value": float(quantity.value),
                           "unit": quantity.unit or ""}) for code, quantity in found]

    def _pregnancy_dating(self, obs: Observation, field: str) -> list[EventIn]:
        """An Observation of LOINC 8665-2 (last menstrual period start date, ``valueDateTime``) as
        ``pregnancy.dated``: the day's midnight in the source's time zone, once per patient and date."""
        value = obs.valueDateTime
        if isinstance(value, datetime):
            value = value.astimezone(self.tz).date() if value.tzinfo else value.date()
        if not isinstance(value, date):
            raise FhirProblem(f"Observation/{obs.id}: valueDateTime must be the day of the last menstrual period "
                              f"(YYYY-MM-DD), got {obs.valueDateTime!r}")
        lmp = datetime(value.year, value.month, value.day, tzinfo=self.tz)
        when = _when(obs.effectiveDateTime, self._updated(obs))
        mrn, _ = self.patient_of(obs.subject.reference)
        return [his_event(self.system, "pregnancy.dated", mrn, when, (mrn, field, value.isoformat()),
                          {field: lmp.isoformat(), "method": "lmp"})]

    def _related_person(self, raw: Mapping[str, Any]) -> list[EventIn]:
        """A family member or guardian (issue 19): added or changed, or removed once no longer ``active``."""
        subject, event_type, updated, payload = fhir_related_person(raw)
        if not (subject or "").startswith("Patient/"):
            raise FhirProblem(f"RelatedPerson/{raw.get('id')}: patient is not a Patient reference")
        if updated is None:
            raise FhirProblem(f"RelatedPerson/{raw.get('id')}: meta.lastUpdated is missing")
        mrn, _ = self.patient_of(subject)
        return [his_event(self.system, event_type, mrn, updated, (payload["ref"], updated), payload)]
