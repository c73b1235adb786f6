"""Patient records: upsert with encrypted contacts, bulk loading for planning and sending."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Callable, Iterable, Iterator, Mapping

from sqlalchemy import Connection, insert, select, update

from carepath.store.audit import audit
from carepath.definition.context import PatientView
from carepath.definition.portrait import EMPTY, PortraitView
from carepath.definition.events import PatientIn
from carepath.runtime.policy import zone
from carepath.store.crypto import Cipher
from carepath.store.schema import Patient


@dataclass(frozen=True)
class PatientRecord:
    """A loaded patient: the expression view plus decrypted addresses (never logged)."""

    view: PatientView
    addresses: Mapping[str, str | None]
    deceased: bool


#: Record fields stored in more than one column (encrypted value and lookup hash).
_COLUMNS_OF = {"name": ("name_enc",), "phone": ("phone_enc", "phone_hash"), "openid": ("openid_enc", "openid_hash")}


def upsert_patient(conn: Connection, cipher: Cipher, record: PatientIn, now: datetime, *, actor: str = "api") -> int:
    """Insert or update by MRN (found through its keyed hash); returns the internal id. Audited."""
    mrn_hash = cipher.lookup_hash(record.mrn)
    values = dict(
        name_enc=cipher.encrypt(record.name), phone_enc=cipher.encrypt(record.phone),
        phone_hash=cipher.lookup_hash(record.phone), openid_enc=cipher.encrypt(record.openid),
        openid_hash=cipher.lookup_hash(record.openid), key_id=cipher.current, birth_date=record.birth_date,
        sex=record.sex, conditions=list(record.conditions), tags=list(record.tags), tz=record.tz,
        language=record.language, channel_prefs=list(record.channel_prefs), updated_at=now,
        birthday_calendar=record.birthday_calendar,  # issue 19 (preferences: carepath.runtime.preferences)
    )
    found = conn.execute(select(Patient.id, Patient.merged_into, Patient.erased_at).where(  # any key of the ring
        Patient.mrn_hash.in_(cipher.lookup_hashes(record.mrn))).order_by(Patient.id)).first()
    if found is not None and found.erased_at is not None:
        return found.id  # issue 22: an erased patient's record is never filled again (carepath.privacy.erase)
    if found is not None and found.merged_into is not None:
        return found.merged_into  # a record under a merged MRN is stale: the surviving record stands
    existing = found.id if found is not None else None
    fields = sorted(record.model_fields_set - {"mrn", "preferences"})
    if existing is not None:
        # A record updates only the fields it carries: an HIS message with no phone keeps the stored one.
        columns = {c for f in fields for c in _COLUMNS_OF.get(f, (f,))} | {"key_id", "updated_at"}
        conn.execute(update(Patient).where(Patient.id == existing).values(
            **{k: v for k, v in values.items() if k in columns}))
        audit(conn, actor=actor, action="patient.updated", entity="patient", entity_id=existing, at=now,
              detail={"fields": fields})
        return existing
    new_id = conn.execute(insert(Patient).values(mrn_hash=mrn_hash, mrn_enc=cipher.encrypt(record.mrn),
                                                 created_at=now, **values).returning(Patient.id)).scalar_one()
    audit(conn, actor=actor, action="patient.created", entity="patient", entity_id=new_id, at=now,
          detail={"fields": fields})
    return new_id


def upsert_patients_bulk(conn: Connection, cipher: Cipher, records: list[PatientIn], now: datetime) -> list[int]:
    """Insert many new patients at once (bulk import, benchmarks); existing MRNs are updated one by one."""
    hashes = [cipher.lookup_hash(r.mrn) for r in records]
    known = _ids_by_mrn(conn, cipher, records)
    fresh = [(h, r) for h, r in zip(hashes, records) if r.mrn.strip() not in known]
    if fresh:
        conn.execute(insert(Patient), [dict(
            mrn_hash=h, mrn_enc=cipher.encrypt(r.mrn), name_enc=cipher.encrypt(r.name),
            phone_enc=cipher.encrypt(r.phone), phone_hash=cipher.lookup_hash(r.phone),
            openid_enc=cipher.encrypt(r.openid), openid_hash=cipher.lookup_hash(r.openid), key_id=cipher.current,
            birth_date=r.birth_date, sex=r.sex, conditions=list(r.conditions), tags=list(r.tags), tz=r.tz,
            language=r.language, channel_prefs=list(r.channel_prefs), created_at=now, updated_at=now,
            birthday_calendar=r.birthday_calendar,
        ) for h, r in fresh])
        audit(conn, actor="api", action="patients.imported", entity="patient", at=now, detail={"count": len(fresh)})
    for r in records:
        if r.mrn.strip() in known:
            upsert_patient(conn, cipher, r, now)
    ids = _ids_by_mrn(conn, cipher, records)
    return [ids[r.mrn.strip()] for r in records]


def _ids_by_mrn(conn: Connection, cipher: Cipher, records: list[PatientIn]) -> dict[str, int]:
    """Stored patients' ids by (stripped) MRN, found by the MRN's hash under any key of the ring."""
    by_hash = {h: r.mrn.strip() for r in records for h in cipher.lookup_hashes(r.mrn)}
    found: dict[str, int] = {}
    hashes = list(by_hash)
    for start in range(0, len(hashes), 5000):
        for h, pid in conn.execute(select(Patient.mrn_hash, Patient.id).where(
                Patient.mrn_hash.in_(hashes[start:start + 5000]))):
            found.setdefault(by_hash[h], pid)
    return found


def find_patient_id(conn: Connection, cipher: Cipher, mrn: str) -> int | None:
    """The patient an MRN names: a merged record's MRN names the patient it was merged into."""
    row = conn.execute(select(Patient.id, Patient.merged_into).where(
        Patient.mrn_hash.in_(cipher.lookup_hashes(mrn))).order_by(Patient.id)).first()
    if row is None:
        return None
    return row.merged_into or row.id


class _Sealed:
    """An encrypted value and the cipher that opens it."""

    __slots__ = ("cipher", "token")

    def __init__(self, cipher: Cipher, token: str | None) -> None:
        self.cipher, self.token = cipher, token

    def open(self) -> str:
        return (self.cipher.decrypt(self.token) if self.token else "") or ""


class PortraitOnRead:
    """A portrait read the first time something reads ``patient.portrait`` (``load`` returns it)."""

    __slots__ = ("load",)

    def __init__(self, load: Callable[[], PortraitView]) -> None:
        self.load = load

    def open(self) -> PortraitView:
        return self.load()


class _OpenedOnRead:
    """A field of a loaded patient's view kept in ``slot`` as it is, or as something to open the first time it is
    read (a :class:`_Sealed` name, a :class:`PortraitOnRead`)."""

    def __init__(self, slot: str, pending: type) -> None:
        self.slot, self.pending = slot, pending

    def __set__(self, view: PatientView, value: Any) -> None:
        view.__dict__[self.slot] = value

    def __get__(self, view: PatientView | None, owner: type | None = None) -> Any:
        if view is None:
            return self
        value = view.__dict__[self.slot]
        if isinstance(value, self.pending):
            value = view.__dict__[self.slot] = value.open()
        return value


class LoadedPatientView(PatientView):
    """A :class:`PatientView` read from the database: a touchpoint that is only deferred or skipped (quiet hours,
    consent, a false condition on age) never decrypts the patient's name, and a portrait the dispatcher did not
    load with its batch is read when something reads it."""

    name = _OpenedOnRead("_name", _Sealed)  # type: ignore[assignment]  # decrypted when read
    portrait = _OpenedOnRead("_portrait", PortraitOnRead)  # type: ignore[assignment]

    @classmethod
    def from_row(cls, **values: Any) -> "LoadedPatientView":
        """The view of one loaded row without the dataclass's ``__init__`` (which sets each field through
        ``object.__setattr__``, frozen as it is): ``values`` are every field but ``extra`` and ``portrait``,
        ``name`` sealed (:class:`_Sealed`)."""
        view = object.__new__(cls)
        state = view.__dict__
        state.update(values)
        state["_name"] = state.pop("name")
        state["extra"] = {}
        state["_portrait"] = EMPTY
        return view


def load_patients(conn: Connection, cipher: Cipher, ids: Iterable[int], today_at: datetime,
                  *, with_addresses: bool = True) -> dict[int, PatientRecord]:
    """Patients by id, with ``today`` in each patient's own zone; names and contacts are decrypted when read.

    Read through the driver (the dispatcher loads a batch's patients with it): rows as plain
    tuples, JSON lists decoded once per distinct text.
    """
    from carepath.store.statements import fetch, id_in, json_value

    out: dict[int, PatientRecord] = {}
    id_list = list(set(ids))
    today: dict[str, date] = {}
    for chunk_start in range(0, len(id_list), 5000):
        chunk = id_list[chunk_start:chunk_start + 5000]
        where, params = id_in(conn, "id", chunk)
        rows = fetch(conn, f"SELECT id, name_enc, phone_enc, openid_enc, birth_date, sex, conditions, tags, tz, "
                           f"language, deceased FROM patients WHERE {where}", params)
        for pid, name_enc, phone_enc, openid_enc, birth, sex, conditions, tags, tz, language, deceased in rows:
            if tz not in today:
                today[tz] = today_at.astimezone(zone(tz)).date()
            view = LoadedPatientView.from_row(
                id=pid, name=_Sealed(cipher, name_enc), sex=sex,
                birth_date=date.fromisoformat(birth) if isinstance(birth, str) else birth,
                conditions=json_value(conditions), tags=json_value(tags), tz=tz, language=language, today=today[tz],
            )
            addresses = Addresses(cipher, phone=phone_enc, openid=openid_enc) if with_addresses else {}
            out[pid] = PatientRecord(view, addresses, bool(deceased))
    return out


class Addresses(Mapping[str, str | None]):
    """A patient's contacts by address kind, decrypted only when a channel asks for one."""

    def __init__(self, cipher: Cipher, **encrypted: str | None) -> None:
        self._cipher = cipher
        self._encrypted = {**encrypted, "none": None}
        self._plain: dict[str, str | None] = {"none": "-"}

    def __getitem__(self, kind: str) -> str | None:
        if kind not in self._plain:
            self._plain[kind] = self._cipher.decrypt(self._encrypted[kind])
        return self._plain[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._encrypted)

    def __len__(self) -> int:
        return len(self._encrypted)

    def __repr__(self) -> str:  # never the contacts themselves
        return f"<Addresses {sorted(k for k, v in self._encrypted.items() if v)}>"


def consent_state(conn: Connection, patient_ids: Iterable[int]) -> dict[tuple[int, str, str], bool]:
    """Consent in force per ``(patient, purpose, channel)``; ``channel='*'`` covers all channels."""
    from carepath.store.statements import fetch, id_in

    state: dict[tuple[int, str, str], bool] = {}
    ids = list(set(patient_ids))
    for start in range(0, len(ids), 5000):
        part = ids[start:start + 5000]
        where, params = id_in(conn, "patient_id", part)
        rows = fetch(conn, f"SELECT patient_id, purpose, channel, granted FROM consents WHERE {where} "
                           "ORDER BY at, id", params)
        for pid, purpose, channel, granted in rows:
            state[(pid, purpose, channel)] = bool(granted)
    return state


def record_consent(conn: Connection, patient_id: int, purpose: str, granted: bool, *, channel: str = "*",
                   source: str, at: datetime, reason: str | None = None, via: str | None = None,
                   recorded_by: str | None = None) -> None:
    """Append to the consent ledger (the newest row is in force) and to the audit log
    (:func:`carepath.runtime.consent_ledger.record`)."""
    from carepath.runtime.consent_ledger import record

    record(conn, patient_id, purpose, granted, channel=channel, source=source, at=at, via=via,
           recorded_by=recorded_by, reason=reason)


def patients_by_openid(conn: Connection, cipher: Cipher, openid: str) -> list[tuple[int, str]]:
    """``(id, mrn)`` of the patients bound to ``openid`` (a guardian's WeChat may serve several).

    A merged record counts as the patient it was merged into (once, whichever MRN names it).
    """
    rows = conn.execute(select(Patient.id, Patient.mrn_enc, Patient.merged_into)
                        .where(Patient.openid_hash.in_(cipher.lookup_hashes(openid))).order_by(Patient.id)).all()
    found: dict[int, str] = {}
    for pid, mrn, merged_into in rows:
        found.setdefault(merged_into or pid, cipher.decrypt(mrn) or "")
    return list(found.items())


def bind_openid(conn: Connection, cipher: Cipher, patient_id: int, openid: str, now: datetime, *, actor: str) -> bool:
    """Link a WeChat openid to a patient (encrypted, found again by its keyed hash); ``False`` if no such patient."""
    changed = conn.execute(update(Patient).where(Patient.id == patient_id).values(
        openid_enc=cipher.encrypt(openid), openid_hash=cipher.lookup_hash(openid), updated_at=now)).rowcount
    if not changed:
        return False
    audit(conn, actor=actor, action="patient.openid_bound", entity="patient", entity_id=patient_id, at=now)
    return True
