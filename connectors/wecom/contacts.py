"""Who a WeCom external contact is: the binding of a patient's ``external_userid`` to a staff member.

A patient becomes a contact by scanning their health manager's "contact me"
QR code; the hospital configures that code with a ``State`` from
:func:`issue_state` naming the patient (WeCom allows 30 characters: ``p<patient
id>.<expiry>.<keyed hash>``, both numbers in hex). The ``add_external_contact``
callback carries the State back with the staff member's userid and the
patient's external_userid; :class:`ContactBook` records the three together
(the external_userid encrypted, found again by its keyed hash).

Merge seam: :func:`on_contact_added` is the ONE place the health-manager
assignment (``carepath.runtime.managers.assign``) is to be called from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from carepath.store.schema import Patient
from carepath.store.schema_wecom import WecomContact

log = logging.getLogger(__name__)

ACTIVE, REMOVED = "active", "removed"
STATE_MAX = 30  # WeCom's limit for a contact way's state


def _sign(cipher: Any, connector: str, body: str) -> str:
    return (cipher.lookup_hash(f"wecom-state|{connector}|{body}") or "")[:10]


def issue_state(cipher: Any, connector: str, patient_id: int, expires_at: float) -> str:
    """The ``State`` of a QR code that binds whoever adds the staff member through it to ``patient_id``."""
    body = f"p{patient_id:x}.{int(expires_at):x}"
    state = f"{body}.{_sign(cipher, connector, body)}"
    if len(state) > STATE_MAX:
        raise ValueError(f"patient id {patient_id} makes a State longer than WeCom's {STATE_MAX} characters")
    return state


def patient_from_state(cipher: Any, connector: str, state: str, now: float) -> int | None:
    """The patient an authentic, unexpired State names; ``None`` (logged) for anything else."""
    parts = state.split(".")
    if len(parts) != 3 or not parts[0].startswith("p"):
        return None
    body = ".".join(parts[:2])
    # signed under any key of the ring: QR codes made before a key rotation still bind (issue 22)
    if len(parts[2]) != 10 or not cipher.lookup_matches(f"wecom-state|{connector}|{body}", parts[2]):
        log.warning("wecom %s: a contact's State is not signed by this carepath", connector)
        return None
    try:
        patient_id, expires = int(parts[0][1:], 16), int(parts[1], 16)
    except ValueError:
        return None
    if expires < now:
        log.warning("wecom %s: a contact's State has expired", connector)
        return None
    return patient_id


@dataclass(frozen=True)
class Contact:
    """A patient's active WeCom contact: whom to address, and which staff member sends."""

    external_userid: str
    staff_userid: str


class ContactBook:
    """The bindings of one connector (patient <-> external_userid <-> staff userid)."""

    def __init__(self, connector: str, cipher: Any) -> None:
        self.connector = connector
        self.cipher = cipher

    def key(self, external_userid: str) -> str:
        return self.cipher.lookup_hash(external_userid) or "-"

    def _is(self, external_userid: str):  # noqa: ANN202 - a SQL condition
        """Rows of ``external_userid`` under any key of the ring (a key rotation may be half-way)."""
        return WecomContact.external_key.in_(self.cipher.lookup_hashes(external_userid) or ["-"])

    def added(self, conn: Connection, external_userid: str, staff_userid: str, patient_id: int | None,
              now: datetime) -> int | None:
        """Record that ``staff_userid`` and ``external_userid`` are contacts; returns the patient bound.

        Without a patient from the State, a patient this external user is already bound to (through
        another staff member) is kept; an unknown contact is recorded unbound.
        """
        key = self.key(external_userid)
        if patient_id is not None and conn.execute(select(Patient.id).where(Patient.id == patient_id)).first() is None:
            log.warning("wecom %s: a contact's State names no patient", self.connector)
            patient_id = None
        if patient_id is None:
            patient_id = conn.execute(select(WecomContact.patient_id).where(
                WecomContact.connector == self.connector, self._is(external_userid),
                WecomContact.patient_id.is_not(None)).order_by(WecomContact.updated_at.desc())).scalar()
        where = (WecomContact.connector == self.connector, self._is(external_userid),
                 WecomContact.staff_userid == staff_userid)
        values = dict(status=ACTIVE, updated_at=now, external_key=key,
                      external_userid_enc=self.cipher.encrypt(external_userid))
        if patient_id is not None:
            values["patient_id"] = patient_id
        if not conn.execute(update(WecomContact).where(*where).values(**values)).rowcount:
            conn.execute(insert(WecomContact).values(connector=self.connector,
                                                     staff_userid=staff_userid, created_at=now,
                                                     patient_id=patient_id, **{k: v for k, v in values.items()
                                                                               if k != "patient_id"}))
        return patient_id

    def removed(self, conn: Connection, external_userid: str, staff_userid: str, now: datetime) -> int:
        """The two are no longer contacts (either deleted the other); returns how many bindings ended."""
        return conn.execute(update(WecomContact).where(
            WecomContact.connector == self.connector, self._is(external_userid),
            WecomContact.staff_userid == staff_userid, WecomContact.status == ACTIVE)
            .values(status=REMOVED, updated_at=now)).rowcount

    def contact_of(self, conn: Connection, patient_id: int) -> Contact | None:
        """The patient's most recent active contact (their health manager's), if any."""
        row = conn.execute(select(WecomContact.external_userid_enc, WecomContact.staff_userid).where(
            WecomContact.connector == self.connector, WecomContact.patient_id == patient_id,
            WecomContact.status == ACTIVE).order_by(WecomContact.updated_at.desc(), WecomContact.id.desc())).first()
        if row is None:
            return None
        return Contact(self.cipher.decrypt(row.external_userid_enc) or "", row.staff_userid)

    def patients(self, conn: Connection, external_userid: str) -> list[tuple[int, str]]:
        """``(patient id, MRN)`` of the patients ``external_userid`` is bound to (active or not)."""
        rows = conn.execute(select(Patient.id, Patient.mrn_enc, Patient.merged_into).join(
            WecomContact, WecomContact.patient_id == Patient.id).where(
            WecomContact.connector == self.connector, self._is(external_userid))
            .order_by(Patient.id)).all()
        found: dict[int, str] = {}
        for pid, mrn, merged_into in rows:
            found.setdefault(merged_into or pid, self.cipher.decrypt(mrn) or "")
        return list(found.items())


def on_contact_added(conn: Connection, engine: Any, connector: str, patient_id: int, staff_userid: str) -> None:
    """A patient added ``staff_userid`` on WeCom: that member becomes the patient's health manager
    (:mod:`carepath.runtime.managers`, in the binding's transaction), the owner of their routed messages.

    A WeCom user id that is not a configured staff account is not assigned (a warning says so); sends to
    the patient still go from the member they added (:meth:`ContactBook.contact_of`)."""
    from carepath.runtime.managers import ManagerError, assign_in

    try:
        assign_in(conn, engine, patient_id, staff_userid, source=f"wecom:{connector}")
    except ManagerError as exc:
        log.warning("wecom %s: patient %s added %s, not made their health manager: %s",
                    connector, patient_id, staff_userid, exc)
