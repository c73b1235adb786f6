"""The registry of per-patient data kinds: what export and erasure cover (issue 22, point 4).

One :class:`DataKind` per table holding a patient's data: how the patient's rows are found, which
columns hold ciphertext (decrypted in the export), which JSON columns may hold encrypted payload values,
which columns are personal and what they become on erasure, and whether erasure deletes the rows or keeps
them de-identified (so report counts stay right). A table added by another module (family members,
conversations, check-ins) joins with one :func:`register` call (or one line in :data:`KINDS`); export,
erasure and the export's manifest pick it up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Callable, Literal, Mapping

from sqlalchemy import Connection, ColumnElement, String, Table, cast, delete, literal, or_, select, update

from carepath.store.conversation_schema import ComplaintCase, ConversationTurn, HealthManager
from carepath.store.family_schema import RelatedPerson
from carepath.store.personal_data import ENCRYPTED, reveal_payload
from carepath.store.schema_checkins import CheckinRow, ReadingRow
from carepath.store.schema_experiments import ExperimentAssignment
from carepath.store.schema_wecom import WecomContact
from carepath.store.schema import (Consent, Delivery, Enrollment, Event, OutboxMessage, Patient, Portrait,
                                   PortraitCount, PortraitDay, SegmentMember, StaffTask, SurveyResponse, TaskNote,
                                   Touchpoint)

#: event payload fields kept when a payload is de-identified: what reports count (click targets, survey scores,
#: segment and consent changes), never a person nor a business id that could embed one (appointment ids...)
KEPT_PAYLOAD_FIELDS = frozenset({
    "touchpoint_id", "link", "journey", "step", "survey", "nps", "nps_category", "satisfaction", "red_flags",
    "response_id", "segment", "dimension", "purpose", "granted", "channel", "kind", "task_id", "deadline",
    "level", "role",
})


@dataclass(frozen=True)
class Subject:
    """The patient a request is about: the internal id and the keyed hash of their MRN (events held before
    the patient was registered carry only the hash)."""

    patient_id: int
    mrn_hash: str | None


Where = Callable[[Subject], ColumnElement[bool]]
#: what a personal column becomes on erasure: a value, or a function of the stored value (per row)
Cleared = Any


def deidentified_payload(payload: Any) -> dict[str, Any]:
    """An event payload with only :data:`KEPT_PAYLOAD_FIELDS` left (never an encrypted value)."""
    if not isinstance(payload, dict):
        return {}
    return {k: v for k, v in payload.items()
            if k in KEPT_PAYLOAD_FIELDS and not (isinstance(v, dict) and ENCRYPTED in v)}


@dataclass(frozen=True)
class DataKind:
    """One table's share of a patient's data (see the module docstring)."""

    name: str
    table: Table
    where: Where
    erase: Literal["delete", "deidentify", "keep"] = "deidentify"
    encrypted: tuple[str, ...] = ()
    payloads: tuple[str, ...] = ()
    personal: Mapping[str, Cleared] = field(default_factory=dict)
    hidden: tuple[str, ...] = ()  # internal columns left out of the export (keyed look-up hashes)
    description: str = ""

    def select(self, subject: Subject):  # noqa: ANN201 - a SQLAlchemy Select
        return select(self.table).where(self.where(subject)).order_by(*self.table.primary_key.columns)

    def export_rows(self, conn: Connection, cipher: Any, subject: Subject) -> list[dict[str, Any]]:
        """The patient's rows, decrypted, as JSON-ready dicts."""
        out = []
        for row in conn.execute(self.select(subject)).mappings():
            item: dict[str, Any] = {}
            for name, value in row.items():
                if name in self.hidden:
                    continue
                if name in self.encrypted:
                    item[name.removesuffix("_enc")] = cipher.decrypt(value) if value else None
                elif name in self.payloads:
                    item[name] = reveal_payload(value, cipher)
                else:
                    item[name] = value.isoformat() if isinstance(value, (datetime, date)) else value
            out.append(item)
        return out

    def apply_erasure(self, conn: Connection, subject: Subject) -> int:
        """Delete or de-identify the patient's rows; returns how many rows changed."""
        if self.erase == "keep":
            return 0
        if self.erase == "delete":
            return conn.execute(delete(self.table).where(self.where(subject))).rowcount or 0
        fixed = {k: v for k, v in self.personal.items() if not callable(v)}
        per_row = {k: v for k, v in self.personal.items() if callable(v)}
        changed = 0
        if per_row:  # values computed from the stored one (an event payload cut down), row by row, first:
            pk = list(self.table.primary_key.columns)  # the fixed values may change what ``where`` matches
            rows = conn.execute(select(*pk, *(self.table.c[k] for k in per_row)).where(self.where(subject))).all()
            for row in rows:
                values = {k: fn(row[len(pk) + i]) for i, (k, fn) in enumerate(per_row.items())}
                conn.execute(update(self.table).where(*(c == row[i] for i, c in enumerate(pk))).values(**values))
            changed = len(rows)
        if fixed:
            n = conn.execute(update(self.table).where(self.where(subject)).values(**fixed)).rowcount or 0
            changed = max(changed, n)
        return changed


def _own(column: Any) -> Where:
    return lambda s: column == s.patient_id


def _events(s: Subject) -> ColumnElement[bool]:
    held = Event.mrn_hash == s.mrn_hash if s.mrn_hash else None
    return or_(Event.patient_id == s.patient_id, held) if held is not None else Event.patient_id == s.patient_id


def _touchpoints_of(s: Subject):  # noqa: ANN202
    return select(Touchpoint.id).where(Touchpoint.patient_id == s.patient_id)


def _tasks_of(s: Subject):  # noqa: ANN202
    return select(StaffTask.id).where(StaffTask.patient_id == s.patient_id)


def _row_tag(column: Any, prefix: str = "erased:") -> Any:
    """A SQL value naming a row by its id only (``erased:<id>``): business ids may embed personal values."""
    return literal(prefix, String) + cast(column, String)


KINDS: list[DataKind] = [
    DataKind("record", Patient.__table__, lambda s: Patient.id == s.patient_id,
             encrypted=("mrn_enc", "name_enc", "phone_enc", "openid_enc", "preferences_enc"),
             hidden=("mrn_hash", "phone_hash", "openid_hash", "key_id"),
             personal={"mrn_enc": "", "name_enc": None, "phone_enc": None, "phone_hash": None, "openid_enc": None,
                       "openid_hash": None, "preferences_enc": None, "birth_date": None, "sex": None,
                       "conditions": [], "tags": [], "channel_prefs": [], "birthday_calendar": None},
             description="the patient record: MRN, name, phone, WeChat openid, birth date, sex, conditions, tags, "
                         "preferences; kept as an anonymous row so counts and later refusals still work"),
    DataKind("related_persons", RelatedPerson.__table__, _own(RelatedPerson.patient_id), erase="delete",
             encrypted=("name_enc", "phone_enc", "openid_enc"), hidden=("phone_hash", "openid_hash", "key_id"),
             description="family members and guardians: relationship, name, phone, WeChat openid, consent"),
    DataKind("wecom_contacts", WecomContact.__table__, _own(WecomContact.patient_id), erase="delete",
             encrypted=("external_userid_enc",), hidden=("external_key",),
             description="WeCom contacts: the patient's external user id and the staff member they added"),
    DataKind("health_manager", HealthManager.__table__, _own(HealthManager.patient_id), erase="delete",
             description="the patient's assigned health manager"),
    DataKind("consents", Consent.__table__, _own(Consent.patient_id), erase="delete",
             description="consent history per purpose and channel, with source and time"),
    DataKind("events", Event.__table__, _events, payloads=("payload",), hidden=("mrn_hash",),
             personal={"payload": deidentified_payload, "outcome": None, "mrn_hash": None, "hold_key": None,
                       "source_id": _row_tag(Event.id)},
             description="events received about the patient (payload decrypted)"),
    DataKind("enrollments", Enrollment.__table__, _own(Enrollment.patient_id), personal={"context": {}, "key": None},
             description="journeys the patient was enrolled on, with anchors"),
    DataKind("touchpoints", Touchpoint.__table__, _own(Touchpoint.patient_id),
             personal={"occurrence": _row_tag(Touchpoint.id, "x"),
                       "idempotency_key": _row_tag(Touchpoint.id, "erased:")},
             description="messages, tasks and tags planned for the patient, with status"),
    DataKind("deliveries", Delivery.__table__, lambda s: Delivery.touchpoint_id.in_(_touchpoints_of(s)),
             personal={"error": None}, description="provider calls made for those touchpoints"),
    DataKind("messages", OutboxMessage.__table__, _own(OutboxMessage.patient_id),
             personal={"title": "", "body": "", "address_masked": "",
                       "idempotency_key": _row_tag(OutboxMessage.id)},
             description="message texts as the outbox channel recorded them"),
    DataKind("staff_tasks", StaffTask.__table__, _own(StaffTask.patient_id),
             personal={"detail": None, "resolution": None}, description="staff work about the patient"),
    DataKind("task_notes", TaskNote.__table__, lambda s: TaskNote.task_id.in_(_tasks_of(s)), erase="delete",
             description="staff notes on those tasks"),
    DataKind("survey_answers", SurveyResponse.__table__, _own(SurveyResponse.patient_id),
             payloads=("response",), personal={"response": {}},
             description="answered questionnaires (scores kept on erasure for reports)"),
    DataKind("conversations", ConversationTurn.__table__, _own(ConversationTurn.patient_id),
             encrypted=("text_enc",), personal={"text_enc": None, "error": None},
             description="messages the patient wrote and the answers (texts removed on erasure, counts kept)"),
    DataKind("complaints", ComplaintCase.__table__, _own(ComplaintCase.patient_id),
             encrypted=("summary_enc", "resolution_enc"), hidden=("key_id",),
             personal={"summary_enc": None, "resolution_enc": None, "source_ref": _row_tag(ComplaintCase.id)},
             description="complaint cases with their deadlines (texts removed on erasure, counts kept)"),
    DataKind("checkins", CheckinRow.__table__, _own(CheckinRow.patient_id), encrypted=("value_enc",),
             personal={"value_enc": None, "reason": None},
             description="check-ins (打卡) with their values (values removed on erasure, completion kept)"),
    DataKind("readings", ReadingRow.__table__, _own(ReadingRow.patient_id), encrypted=("value_enc",),
             personal={"value_enc": None, "reason": None, "device_id": None},
             description="device and HIS readings (values removed on erasure)"),
    DataKind("portrait", Portrait.__table__, _own(Portrait.patient_id), erase="delete", encrypted=("facts_enc",),
             hidden=("key_id",), description="the patient's portrait: clinical and engagement facts"),
    DataKind("portrait_counts", PortraitCount.__table__, _own(PortraitCount.patient_id), erase="delete",
             description="counts of interactions per kind"),
    DataKind("portrait_days", PortraitDay.__table__, _own(PortraitDay.patient_id), erase="delete",
             description="interactions per day (windowed counts)"),
    DataKind("segments", SegmentMember.__table__, _own(SegmentMember.patient_id), erase="keep",
             description="segment stays (membership of an anonymous patient, kept for reports)"),
    DataKind("experiment_arms", ExperimentAssignment.__table__, _own(ExperimentAssignment.patient_id), erase="keep",
             description="experiment arms (issue 23: which variant or holdout; no personal data, kept for reports)"),
]


def register(kind: DataKind) -> None:
    """Add a table to export and erasure (a module holding per-patient data calls this at import)."""
    global KINDS
    KINDS = [k for k in KINDS if k.name != kind.name] + [kind]


def kinds() -> list[DataKind]:
    """Every registered kind, in export order."""
    return list(KINDS)
