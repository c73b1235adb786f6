"""The event catalogue: every event type the engine knows, with a typed payload model.

Built-in types are below (their payload models in :mod:`carepath.definition.payloads`, importable
from here too); plugins add theirs with the ``carepath_event_types``
hook. The catalogue serves three readers: ingest (a payload of a known type
that does not fit its model is stored and not applied, with the field named),
the journey validator (which fields a template or condition may use, and which
need a default) and ``carepath events types`` / docs/events.md.

A payload may carry more fields than its model names (hospital systems send
more than the engine reads): extra fields are kept, but journeys can rely only
on the fields named here.
"""

from __future__ import annotations

import functools
import types
import typing
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal, Union

from pydantic import AwareDatetime, BaseModel, ValidationError

from carepath.definition.payloads import (
    Payload, AppointmentRef, AppointmentBooked, AppointmentRescheduled, AppointmentCancelled, AppointmentNoShow,
    VisitCheckedIn, PregnancyDated, QueueCalled, ReportReady, Encounter, EncounterAdmitted, EncounterDischarged,
    EncounterReversal, PatientUpdated, PreferencesUpdated, PatientMerged, PatientDeceased, ConsentChanged,
    MessageReplied, MessageReceipt, SurveyCompleted, MessageClicked, SegmentChange, TaskSlaBreached,
    VitalsReading, CheckinRecorded, RelatedPersonContact, RelatedPersonAdded, RelatedPersonRemoved)


#: the catalogue's own names and every payload model (they live in carepath.definition.payloads)
__all__ = ["PayloadField", "EventType", "BUILTIN_EVENT_TYPES", "build_catalogue", "event_types", "reload_event_types",
           "unknown_type_problem", "payload_problems", "payload_refusal", "Payload", "AppointmentRef",
           "AppointmentBooked", "AppointmentRescheduled", "AppointmentCancelled", "AppointmentNoShow",
           "VisitCheckedIn", "PregnancyDated", "QueueCalled", "ReportReady", "Encounter", "EncounterAdmitted",
           "EncounterDischarged", "EncounterReversal", "PatientUpdated", "PreferencesUpdated", "PatientMerged",
           "PatientDeceased", "ConsentChanged", "MessageReplied", "MessageReceipt", "SurveyCompleted",
           "MessageClicked", "SegmentChange", "TaskSlaBreached", "VitalsReading", "CheckinRecorded",
           "RelatedPersonContact", "RelatedPersonAdded", "RelatedPersonRemoved"]


@dataclass(frozen=True)
class PayloadField:
    """One field of a payload model as users see it."""

    name: str
    type: str
    required: bool
    description: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "required": self.required, "description": self.description}


@dataclass(frozen=True)
class EventType:
    """An event type: its name (``appointment.booked``), what it means, its payload model.

    ``effect`` says what the engine itself does with it besides running
    journeys (recording consent, marking a death...); ``source`` is
    ``builtin`` or the plugin that added it.
    """

    name: str
    summary: str
    payload: type[BaseModel]
    effect: str = ""
    source: str = "builtin"

    def fields(self) -> list[PayloadField]:
        return [PayloadField(name, _type_name(info.annotation), info.is_required(), info.description or "")
                for name, info in self.payload.model_fields.items()]

    def field(self, name: str) -> PayloadField | None:
        return next((f for f in self.fields() if f.name == name), None)

    def problems(self, payload: dict[str, Any]) -> list[str]:
        """What is wrong with ``payload`` for this type, each naming the field; empty when it fits."""
        try:
            self.payload.model_validate(payload)
        except ValidationError as exc:
            return [f"payload field '{'.'.join(map(str, e['loc'])) or '?'}': {e['msg'].removeprefix('Value error, ')}"
                    for e in exc.errors(include_url=False)]
        return []

    def to_json(self) -> dict[str, Any]:
        return {"type": self.name, "summary": self.summary, "effect": self.effect, "source": self.source,
                "fields": [f.to_json() for f in self.fields()]}


_TYPE_NAMES = {str: "text", bool: "true/false", int: "integer", float: "number", datetime: "date-time",
               AwareDatetime: "date-time with offset", date: "date", dict: "object", list: "list"}


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation) if a is not type(None))
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if origin is not None:
        return _TYPE_NAMES.get(origin, getattr(origin, "__name__", str(origin)))
    return _TYPE_NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


BUILTIN_EVENT_TYPES: tuple[EventType, ...] = (
    EventType("appointment.booked", "An outpatient appointment was booked.", AppointmentBooked),
    EventType("appointment.rescheduled", "An appointment moved to another slot.", AppointmentRescheduled),
    EventType("appointment.cancelled", "An appointment was cancelled.", AppointmentCancelled),
    EventType("appointment.no_show", "The patient did not come to an appointment.", AppointmentNoShow),
    EventType("visit.checked_in", "The patient checked in at the clinic.", VisitCheckedIn),
    EventType("queue.called", "The patient's queue number was called.", QueueCalled),
    EventType("pregnancy.dated", "A pregnancy was dated: its last menstrual period (and due date) recorded.",
              PregnancyDated),
    EventType("report.ready", "A lab or imaging report is available.", ReportReady),
    EventType("encounter.admitted", "The patient was admitted.", EncounterAdmitted),
    EventType("encounter.discharged", "The patient was discharged (or an outpatient visit ended).",
              EncounterDischarged),
    EventType("encounter.discharge_cancelled", "A discharge was reversed: the patient stays.", EncounterReversal),
    EventType("encounter.admission_cancelled", "An admission was reversed.", EncounterReversal),
    EventType("patient.updated", "The HIS changed the patient record.", PatientUpdated,
              effect="a carried patient record updates the patient (contacts encrypted)"),
    EventType("patient.merged", "Two records of the same patient were merged in the HIS.", PatientMerged),
    EventType("patient.preferences_updated", "The patient chose a time (for their medication reminder...).",
              PreferencesUpdated, effect="merges the values into the patient's preferences (encrypted) and re-times "
                                         "every future occurrence of the steps that use them; unknown preferences "
                                         "or values that are no time refuse the event"),
    EventType("patient.deceased", "The patient died.", PatientDeceased,
              effect="marks the patient deceased and exits every journey; nothing more is sent"),
    EventType("consent.changed", "The patient gave or withdrew consent.", ConsentChanged,
              effect="records the consent; marketing needs it granted, clinical messages stop when withdrawn"),
    EventType("message.replied", "The patient replied to a message.", MessageReplied,
              effect="after_step triggers with unless: replied are skipped; a whole reply of an unsubscribe "
                     "word (TD, 退订, ...) withdraws the consent the channel's rule names instead; a whole reply "
                     "answering a check-in prompt (打卡, 6.1, 150/95) is recorded as a check-in; the text becomes "
                     "a conversation turn that is answered, routed to a person or recorded as ignorable "
                     "(docs/conversations.md)"),
    EventType("message.delivered", "A provider confirmed delivery.", MessageReceipt,
              effect="marks the delivery and its touchpoint delivered"),
    EventType("message.failed", "A provider reported a delivery failure.", MessageReceipt,
              effect="marks the delivery and its touchpoint failed (with payload status capped, a provider's "
                     "own limit refused it: the touchpoint is skipped instead)"),
    EventType("message.clicked", "The patient opened a tracked link in a message (once per link and message).",
              MessageClicked, effect="counts a click on the patient's portrait (clicks_30d...)"),
    EventType("survey.completed", "The patient completed a survey.", SurveyCompleted),
    EventType("segment.entered", "The patient entered a segment (carepath derives it from the portrait).",
              SegmentChange),
    EventType("segment.left", "The patient left a segment (carepath derives it from the portrait).",
              SegmentChange),
    EventType("vitals.reading", "A home or ward device sent a measurement.", VitalsReading,
              effect="stored as a reading (rejected with the reason when its measure, unit or value is impossible); "
                     "reading triggers are evaluated, one episode (one task) at a time"),
    EventType("checkin.recorded", "The patient checked in (打卡) for a checkin prompt, by reply, page or device.",
              CheckinRecorded, effect="derived by carepath; stored only when a journey listens to it"),
    EventType("patient.related_person_added", "A family member or guardian of the patient was recorded "
              "(or changed).", RelatedPersonAdded,
              effect="adds or updates the related person (contacts encrypted); send steps with to: guardian, "
                     "family or patient+family reach them"),
    EventType("patient.related_person_removed", "A family member or guardian is no longer the patient's.",
              RelatedPersonRemoved, effect="nothing more is sent to them; their planned messages are skipped"),
    EventType("task.sla_breached", "A staff task missed a deadline and moved up its team's escalation chain.",
              TaskSlaBreached),
)


# ------------------------------------------------------------------ catalogue


def _plugin_event_types() -> list[EventType]:
    from carepath.plugins.manager import get_plugin_manager

    return get_plugin_manager().event_types()


@functools.lru_cache(maxsize=1)
def _cached_catalogue() -> dict[str, EventType]:
    return build_catalogue(_plugin_event_types())


def build_catalogue(extra: list[EventType]) -> dict[str, EventType]:
    """The built-in types plus ``extra``; a built-in name cannot be redefined."""
    found = {t.name: t for t in BUILTIN_EVENT_TYPES}
    for event_type in extra:
        found.setdefault(event_type.name, event_type)
    return found


def event_types() -> dict[str, EventType]:
    """Every known event type by name (built-in and from plugins; ``reload_event_types()`` re-reads plugins)."""
    return _cached_catalogue()


def reload_event_types() -> None:
    _cached_catalogue.cache_clear()


def unknown_type_problem(event_type: str) -> str | None:
    """Why an event of ``event_type`` is refused at ingest (a type the catalogue does not know, with the
    nearest known name), or None for a known type."""
    known = event_types()
    if event_type in known:
        return None
    import difflib

    close = difflib.get_close_matches(event_type, sorted(known), n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return (f"unknown event type '{event_type}'{hint} (`carepath events types` lists the known ones; a plugin "
            f"adds its own with the carepath_event_types hook)")


def payload_problems(event_type: str, payload: dict[str, Any]) -> list[str]:
    """Problems of ``payload`` for a known ``event_type`` (none for unknown types)."""
    known = event_types().get(event_type)
    return known.problems(payload) if known is not None else []


def payload_refusal(event_type: str, payload: dict[str, Any]) -> str | None:
    """The ingest outcome of an event whose payload does not fit its known type, or None when it fits."""
    problems = payload_problems(event_type, payload)
    if not problems:
        return None
    return f"stored, not applied: {event_type} {'; '.join(problems)}"
