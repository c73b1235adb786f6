"""Inbound receipts and replies, the provider-neutral half.

Providers push to ``/hooks/<type>/<name>/<token>/receipts`` and
``.../replies`` without a signature: the secret token in the path is the
authentication, compared in constant time. Each provider's ``callbacks``
module turns its body into :class:`Receipt` / :class:`Reply` records; this
module turns those into events for the patient they concern.
"""

from __future__ import annotations

import hmac
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable
from zoneinfo import ZoneInfo

from sqlalchemy import select

from carepath.connectors.sms_common.numbers import national
from carepath.definition.events import EventIn
from carepath.masking import mask_phone
from carepath.plugins.contracts import CallbackRequest
from carepath.store.schema import Delivery, Patient, Touchpoint

if TYPE_CHECKING:
    from carepath.connectors.sms_common.channel import SmsChannel

log = logging.getLogger(__name__)
KINDS = ("receipts", "replies")
SMS_PURPOSES = ("clinical", "marketing")
BEIJING = ZoneInfo("Asia/Shanghai")


def beijing_time(text: str) -> datetime:
    """``2026-05-01 10:00:00`` (Beijing wall time, as both providers write it) as an aware datetime."""
    return datetime.strptime(str(text), "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)


def json_objects(body: bytes, *, single: bool = False) -> list[dict]:
    """A pushed JSON array of objects (or, when ``single``, one object); ``ValueError`` otherwise."""
    data = json.loads(body or b"null")
    items = [data] if single and isinstance(data, dict) else data
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        raise ValueError("expected a JSON array of objects")
    return items


@dataclass(frozen=True)
class Receipt:
    """A delivery report for one message to one number."""

    provider_id: str
    phone: str
    delivered: bool
    code: str
    at: datetime
    reference: str | None = None  # the idempotency key, when the provider echoes it (Aliyun out_id)


@dataclass(frozen=True)
class Reply:
    """A text a patient sent back (上行); ``source_id`` is the provider's dedup key for it."""

    source_id: str
    phone: str
    text: str
    at: datetime


def callback_kind(request: CallbackRequest, type_name: str, name: str, token: str | None) -> str | None:
    """``receipts`` or ``replies`` when ``request`` is a POST to this connector's path with the right token."""
    if not token or request.method.upper() != "POST":
        return None
    parts = [p for p in request.path.split("/") if p]
    if len(parts) < 4 or parts[-4:-2] != [type_name, name] or parts[-1] not in KINDS:
        return None
    if not hmac.compare_digest(parts[-2].encode(), token.encode()):
        return None
    return parts[-1]


def phone_variants(phone: str) -> list[str]:
    """The ways a mainland number may have been stored: bare, ``+86...``, ``86...``."""
    bare = national(phone)
    return list(dict.fromkeys([phone.strip(), bare, f"+86{bare}", f"86{bare}"]))


class PatientResolver:
    """Finds the MRN an inbound record is about, through the bound engine (``None`` when unbound)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def by_patient_id(self, patient_id: int) -> str | None:
        if self.engine is None:
            return None
        with self.engine.db.connect() as conn:
            token = conn.execute(select(Patient.mrn_enc).where(Patient.id == patient_id)).scalar()
        return self.engine.cipher.decrypt(token) if token else None

    def known_provider_id(self, receipt: Receipt) -> str:
        """The provider id the delivery was recorded with: the receipt's, or ``OutId:<key>`` when the
        message was found by lookup (Aliyun's QuerySendDetails does not return the BizId)."""
        if self.engine is None or not receipt.reference:
            return receipt.provider_id
        alias = lookup_provider_id(receipt.reference)
        with self.engine.db.connect() as conn:
            found = set(conn.execute(select(Delivery.provider_id).where(
                Delivery.provider_id.in_([receipt.provider_id, alias]))).scalars())
        return alias if alias in found and receipt.provider_id not in found else receipt.provider_id

    def by_provider_id(self, provider_id: str) -> str | None:
        if self.engine is None or not provider_id:
            return None
        with self.engine.db.connect() as conn:
            patient_id = conn.execute(select(Touchpoint.patient_id).join(
                Delivery, Delivery.touchpoint_id == Touchpoint.id).where(Delivery.provider_id == provider_id)
                .limit(1)).scalar()
        return self.by_patient_id(patient_id) if patient_id is not None else None

    def related_by_phone(self, phone: str) -> list[tuple[str, str]]:
        """``(patient MRN, related person ref)`` for each patient whose family member or guardian has ``phone``."""
        if self.engine is None or not phone:
            return []
        from carepath.runtime.family import related_by_phone

        with self.engine.db.connect() as conn:
            found = related_by_phone(conn, self.engine.cipher, phone_variants(phone))
        return [(mrn, ref) for pid, ref in found if (mrn := self.by_patient_id(pid))]

    def by_phone(self, phone: str) -> str | None:
        if self.engine is None or not phone:
            return None
        hashes = [h for p in phone_variants(phone) for h in self.engine.cipher.lookup_hashes(p)]
        with self.engine.db.connect() as conn:
            token = conn.execute(select(Patient.mrn_enc).where(Patient.phone_hash.in_(hashes))
                                 .order_by(Patient.id).limit(1)).scalar()
        return self.engine.cipher.decrypt(token) if token else None


def lookup_provider_id(idempotency_key: str) -> str:
    """The provider id recorded for a message found by lookup when the provider gives none back."""
    return f"OutId:{idempotency_key}"


def consent_withdrawals(channel: "SmsChannel", mrn: str, source_id: str, at: datetime,
                        reason: str) -> list[EventIn]:
    """``consent.changed`` events withdrawing SMS consent (every purpose, every SMS channel)."""
    return [EventIn(type="consent.changed", source=channel.source, source_id=f"{source_id}:{purpose}:{name}",
                    patient_mrn=mrn, occurred_at=at,
                    payload={"purpose": purpose, "granted": False, "channel": name, "reason": reason})
            for name in channel.sms_channel_names() for purpose in SMS_PURPOSES]


def receipt_events(channel: "SmsChannel", receipts: Iterable[Receipt]) -> list[EventIn]:
    """``message.delivered`` / ``message.failed`` events, one per message (repeated pushes deduplicate)."""
    resolver = PatientResolver(channel.engine)
    events = []
    for r in receipts:
        provider_id = resolver.known_provider_id(r)
        mrn = resolver.by_provider_id(provider_id) or resolver.by_phone(r.phone) or ""
        if not mrn and channel.engine is not None:
            _unknown(channel, "receipt", r.phone)
            continue
        events.append(EventIn(type="message.delivered" if r.delivered else "message.failed", source=channel.source,
                              source_id=f"receipt:{r.provider_id}", patient_mrn=mrn, occurred_at=r.at,
                              payload={"provider_id": provider_id, "code": r.code, "channel": channel.name}))
    return events


def reply_events(channel: "SmsChannel", replies: Iterable[Reply]) -> list[EventIn]:
    """Every reply is a ``message.replied`` event; the engine reads unsubscribe words (``carepath.runtime.unsubscribe``)."""
    resolver = PatientResolver(channel.engine)
    events = []
    for r in replies:
        mrn = resolver.by_phone(r.phone) or ""
        if not mrn and channel.engine is not None:
            family = resolver.related_by_phone(r.phone)  # a family member or guardian writing back (issue 19)
            if not family:
                _unknown(channel, "reply", r.phone)
            events += [EventIn(type="message.replied", source=channel.source, source_id=f"reply:{r.source_id}:{ref}",
                               patient_mrn=their_mrn, occurred_at=r.at,
                               payload={"text": r.text, "channel": channel.name, "related_person": ref})
                       for their_mrn, ref in family]
            continue
        events.append(EventIn(type="message.replied", source=channel.source, source_id=f"reply:{r.source_id}",
                              patient_mrn=mrn, occurred_at=r.at, payload={"text": r.text, "channel": channel.name}))
    return events


def _unknown(channel: "SmsChannel", what: str, phone: str) -> None:
    """A push about a number no patient has (a message another system sent on a shared account): acknowledged,
    so that the provider does not push the whole batch again, and logged (masked)."""
    log.info("%s %s: %s for %s, which is no patient's number: acknowledged, not stored", channel.type_name,
             channel.name, what, mask_phone(phone))
