"""Related persons of a patient (family members, guardians): kept from events, loaded per dispatch batch.

``patient.related_person_added`` adds or updates one person (found again by its ``ref``, the
source's id for them), ``patient.related_person_removed`` ends them. Their name and addresses are
encrypted with the store's cipher like the patient's, with keyed look-up hashes so that a reply
from their own phone finds them. Each person has their own consent: marketing only when they
agreed to it, nothing at all once they unsubscribed (:func:`unsubscribe_related`), and neither
ever changes the patient's consent. See docs/journeys.md ("Family and guardians").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from sqlalchemy import Connection, Integer, func, insert, select, update

from carepath.runtime.patients import Addresses
from carepath.store.audit import audit
from carepath.store.crypto import Cipher
from carepath.store.family_schema import RelatedPerson

if TYPE_CHECKING:
    from carepath.engine import Engine

#: the prefix of a touchpoint's ``recipient`` that names a related person (``rp:<id>``)
RECIPIENT_PREFIX = "rp:"
#: the reason of a ``to: guardian`` message skipped for want of a guardian (carepath.runtime.dispatch.recipients)
NO_GUARDIAN = "skipped: no guardian on record"
#: the staff task that asks for the guardian to be recorded (one open per patient), and its deadline
RECORD_GUARDIAN = "record_guardian"
RECORD_GUARDIAN_SLA = timedelta(days=1)
#: how far back :func:`missing_guardian_tasks` looks for such skipped messages
GUARDIAN_LOOKBACK = timedelta(days=7)


@dataclass(frozen=True)
class RelatedContact:
    """A related person as a dispatch batch sees them: addresses decrypted only when a channel asks."""

    id: int
    patient_id: int
    ref: str
    relationship: str
    guardian: bool
    marketing_consent: bool
    unsubscribed: bool
    addresses: Mapping[str, str | None]
    _name: Any = None  # the encrypted name and the cipher, decrypted on first use
    _cipher: Any = None

    @property
    def key(self) -> str:
        """The touchpoint ``recipient`` value naming this person."""
        return f"{RECIPIENT_PREFIX}{self.id}"

    @property
    def name(self) -> str:
        return (self._cipher.decrypt(self._name) if self._cipher and self._name else "") or ""

    def __repr__(self) -> str:  # never the contacts themselves
        return f"<RelatedContact {self.id} {self.relationship}{' guardian' if self.guardian else ''}>"


def load_related(conn: Connection, cipher: Cipher, patient_ids: Iterable[int]) -> dict[int, list[RelatedContact]]:
    """The current (not removed) related persons of ``patient_ids``, in the order they were added (bulk)."""
    from carepath.store.statements import chunks, fetch, id_in

    out: dict[int, list[RelatedContact]] = {}
    for part in chunks(list(set(patient_ids))):
        where, params = id_in(conn, "patient_id", part)
        rows = fetch(conn, "SELECT id, patient_id, ref, relationship, guardian, marketing_consent, unsubscribed_at, "
                           f"name_enc, phone_enc, openid_enc FROM related_persons WHERE {where} "
                           "AND removed_at IS NULL ORDER BY id", params)
        for rid, pid, ref, relationship, guardian, marketing, unsubscribed, name, phone, openid in rows:
            out.setdefault(pid, []).append(RelatedContact(
                rid, pid, ref, relationship, bool(guardian), bool(marketing), unsubscribed is not None,
                Addresses(cipher, phone=phone, openid=openid), name, cipher))
    return out


def add_related(conn: Connection, cipher: Cipher, patient_id: int, payload: Mapping[str, Any], now: datetime, *,
                actor: str) -> str:
    """Add or update the related person of a ``patient.related_person_added`` payload; returns a short note.

    The payload has been checked against the catalogue; a person added again after being removed comes
    back (their own unsubscribe stays in force: only they can take it back).
    """
    contact = payload.get("contact") or {}
    name, phone, openid = contact.get("name"), contact.get("phone"), contact.get("openid")
    values = dict(relationship=str(payload["relationship"]).strip().lower()[:32],
                  guardian=bool(payload.get("guardian", False)),
                  name_enc=cipher.encrypt(name), phone_enc=cipher.encrypt(phone), phone_hash=cipher.lookup_hash(phone),
                  openid_enc=cipher.encrypt(openid), openid_hash=cipher.lookup_hash(openid), key_id=cipher.current,
                  marketing_consent=bool(payload.get("marketing_consent", False)), removed_at=None, updated_at=now)
    ref = str(payload["ref"])[:128]
    found = conn.execute(select(RelatedPerson.id).where(RelatedPerson.patient_id == patient_id,
                                                        RelatedPerson.ref == ref)).scalar()
    if found is None:
        found = conn.execute(insert(RelatedPerson).values(patient_id=patient_id, ref=ref, created_at=now, **values)
                             .returning(RelatedPerson.id)).scalar_one()
        action = "related_person.added"
    else:
        conn.execute(update(RelatedPerson).where(RelatedPerson.id == found).values(**values))
        action = "related_person.updated"
    audit(conn, actor=actor, action=action, entity="patient", entity_id=patient_id, at=now,
          detail={"related_person": found, "relationship": values["relationship"], "guardian": values["guardian"]})
    return f"{action.split('.')[1]} {values['relationship']}{' (guardian)' if values['guardian'] else ''}"


def remove_related(conn: Connection, patient_id: int, ref: str, now: datetime, *, actor: str) -> str:
    """End the related person ``ref`` of the patient: nothing more goes to them; returns a short note."""
    changed = conn.execute(update(RelatedPerson).where(
        RelatedPerson.patient_id == patient_id, RelatedPerson.ref == ref, RelatedPerson.removed_at.is_(None))
        .values(removed_at=now, updated_at=now)).rowcount
    if not changed:
        return f"no current related person {ref!r}: nothing removed"
    audit(conn, actor=actor, action="related_person.removed", entity="patient", entity_id=patient_id, at=now,
          detail={"ref": ref})
    return "related person removed"


def unsubscribe_related(conn: Connection, patient_id: int, ref: str, now: datetime, *, actor: str,
                        reason: str) -> bool:
    """The related person ``ref`` asked to stop: nothing more goes to them; the patient's consent is untouched."""
    changed = conn.execute(update(RelatedPerson).where(
        RelatedPerson.patient_id == patient_id, RelatedPerson.ref == ref, RelatedPerson.unsubscribed_at.is_(None))
        .values(unsubscribed_at=now, updated_at=now)).rowcount
    if changed:
        audit(conn, actor=actor, action="related_person.unsubscribed", entity="patient", entity_id=patient_id,
              at=now, detail={"ref": ref, "reason": reason})
    return bool(changed)


def related_by_phone(conn: Connection, cipher: Cipher, phones: Iterable[str]) -> list[tuple[int, str]]:
    """``(patient id, ref)`` of the current related persons whose phone is one of ``phones`` (keyed hashes)."""
    hashes = [h for p in phones if p for h in cipher.lookup_hashes(p)]  # any key of the ring (rotation)
    if not hashes:
        return []
    return [(r.patient_id, r.ref) for r in conn.execute(select(RelatedPerson.patient_id, RelatedPerson.ref).where(
        RelatedPerson.phone_hash.in_(hashes), RelatedPerson.removed_at.is_(None)).order_by(RelatedPerson.id))]


def related_labels(conn: Connection, cipher: Cipher, patient_id: int) -> dict[str, dict[str, Any]]:
    """A patient's related persons (removed ones included) by touchpoint ``recipient`` key, masked, for the
    timeline: ``{"rp:3": {"relationship": "mother", "name": "王**", "phone": "139****0000", ...}}``."""
    from carepath.masking import mask_name, mask_openid, mask_phone

    out = {}
    for r in conn.execute(select(RelatedPerson.__table__).where(RelatedPerson.patient_id == patient_id)
                          .order_by(RelatedPerson.id)):
        out[f"{RECIPIENT_PREFIX}{r.id}"] = {
            "relationship": r.relationship, "guardian": bool(r.guardian), "name": mask_name(cipher.decrypt(r.name_enc)),
            "phone": mask_phone(cipher.decrypt(r.phone_enc)), "openid": mask_openid(cipher.decrypt(r.openid_enc)),
            "unsubscribed": r.unsubscribed_at is not None, "removed": r.removed_at is not None}
    return out


def apply_family_event(conn: Connection, engine: Any, ev: Any, patient_id: int, now: datetime) -> str | None:
    """The engine's own effect of a family event on ``patient_id`` (inside ingest's transaction): a note for
    the event's outcome, or ``None`` when ``ev`` is no family event nor a related person's reply."""
    actor = f"event:{ev.source}"
    if ev.type == "patient.related_person_added":
        note = add_related(conn, engine.cipher, patient_id, ev.payload, now, actor=actor)
        if ev.payload.get("guardian") and close_guardian_tasks(conn, patient_id, now):
            note += "; the task asking for a guardian is done"
        return note
    if ev.type == "patient.related_person_removed":
        return remove_related(conn, patient_id, str(ev.payload["ref"]), now, actor=actor)
    if ev.type == "message.replied" and ev.payload.get("related_person"):
        from carepath.runtime.unsubscribe import UNSUBSCRIBE, normalized, reply_intent

        text = str(ev.payload.get("text") or "")
        if reply_intent(text, engine.settings.unsubscribe_words) != UNSUBSCRIBE:
            return "reply from a related person"
        ref = str(ev.payload["related_person"])
        done = unsubscribe_related(conn, patient_id, ref, now, actor=actor,
                                   reason=f"reply {ev.source_id}: {normalized(text)}")
        return (f"unsubscribe reply from related person {ref!r}: nothing more is sent to them "
                "(the patient's consent is unchanged)" if done else f"related person {ref!r}: already unsubscribed "
                                                                      "or unknown")
    return None


def move_related(conn: Connection, *, survivor: int, merged: int) -> None:
    """A merge moves the merged record's related persons to the survivor, but for refs the survivor already
    has (the survivor's own record of that person stands)."""
    taken = select(RelatedPerson.ref).where(RelatedPerson.patient_id == survivor).scalar_subquery()
    conn.execute(update(RelatedPerson).where(RelatedPerson.patient_id == merged, RelatedPerson.ref.not_in(taken))
                 .values(patient_id=survivor))


def missing_guardian_tasks(engine: "Engine", *, limit: int = 500) -> int:
    """A staff task for each patient whose ``to: guardian`` message was skipped for want of a guardian
    (``no guardian on record``): "record the child's guardian", for the journey's team (``team``, default
    ``nursing``) within a day. At most one such task is open per patient, whatever number of messages were
    skipped; a message skipped after the last task was closed opens a new one, unless a guardian is on record
    by then. Recording a guardian (``patient.related_person_added`` with ``guardian: true``) closes the task.
    A maintenance job (``carepath serve`` runs it with the delivery fallback); returns how many tasks opened."""
    from carepath.runtime.patients import load_patients
    from carepath.runtime.work_queue import OPEN_STATUSES, new_task
    from carepath.store.schema import Enrollment, StaffTask, Touchpoint

    now = engine.clock.now()
    opened = 0
    with engine.db.begin() as conn:
        skipped = conn.execute(select(Touchpoint.id, Touchpoint.patient_id, Touchpoint.enrollment_id,
                                      Touchpoint.journey, Touchpoint.step, Touchpoint.updated_at, Enrollment.version)
                               .join(Enrollment, Enrollment.id == Touchpoint.enrollment_id)
                               .where(Touchpoint.status == "skipped", Touchpoint.reason == NO_GUARDIAN,
                                      Touchpoint.updated_at >= now - GUARDIAN_LOOKBACK)
                               .order_by(Touchpoint.updated_at, Touchpoint.id).limit(limit)).all()
        if not skipped:
            return 0
        pids = {r.patient_id for r in skipped}
        tasks = conn.execute(select(StaffTask.patient_id, func.max(StaffTask.created_at),
                                    func.sum(StaffTask.status.in_(OPEN_STATUSES).cast(Integer)))
                             .where(StaffTask.kind == RECORD_GUARDIAN, StaffTask.patient_id.in_(pids))
                             .group_by(StaffTask.patient_id)).all()
        last = {pid: (latest, bool(open_)) for pid, latest, open_ in tasks}
        guarded = {pid for pid, people in load_related(conn, engine.cipher, pids).items()
                   if any(p.guardian and not p.unsubscribed for p in people)}
        patients = load_patients(conn, engine.cipher, pids, now, with_addresses=False)
        done: set[int] = set()
        for row in skipped:
            pid = row.patient_id
            latest, has_open = last.get(pid, (None, False))
            if pid in done or has_open or pid in guarded or (latest is not None and row.updated_at <= latest):
                continue
            patient = patients.get(pid)
            if patient is None or patient.deceased:
                continue
            journey = engine.journey_version(row.journey, row.version)
            team = journey.calling_team if journey is not None else "nursing"
            conn.execute(insert(StaffTask).values(
                patient_id=pid, enrollment_id=row.enrollment_id, touchpoint_id=row.id, kind=RECORD_GUARDIAN,
                team=team, detail=(f"no guardian on record: please record the child's guardian (parent or appointed "
                                   f"guardian, with a phone number) in the HIS; message of step {row.step} of "
                                   f"{row.journey} was not sent"),
                **new_task(engine.config.team(team), now=now, sla=RECORD_GUARDIAN_SLA)))
            done.add(pid)
            opened += 1
    return opened


def close_guardian_tasks(conn: Connection, patient_id: int, now: datetime) -> int:
    """Close the patient's open "record the guardian" task (a guardian was recorded); how many closed."""
    from carepath.runtime.work_queue import OPEN_STATUSES
    from carepath.store.schema import StaffTask

    return conn.execute(update(StaffTask).where(
        StaffTask.patient_id == patient_id, StaffTask.kind == RECORD_GUARDIAN,
        StaffTask.status.in_(OPEN_STATUSES)).values(
        status="done", closed_at=now, resolution="guardian recorded")).rowcount
