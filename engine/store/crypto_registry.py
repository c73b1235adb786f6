"""Every encrypted column and keyed look-up hash of the store, one entry each: what key rotation, ``keys status``
and a patient's export and erasure walk.

A new table holding personal data adds its columns with one line each::

    register(Encrypted("family_members", "phone_enc", patient_column="patient_id"))
    register(KeyedHash("family_members", "phone_hash", source="phone_enc"))

Kinds of encrypted column: ``text`` (a ``keyid:base64`` token, :class:`carepath.store.crypto.Cipher`)
and ``json`` (a JSON document whose personal values are ``{"$encrypted": token}``,
:mod:`carepath.store.personal_data`). A keyed hash is always written together with the encrypted column
holding its plain value (``source``), under the same key: rotation re-encrypts the value and recomputes
its hashes in one update.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from sqlalchemy import Table

TEXT, JSON_DOC = "text", "json"


@dataclass(frozen=True)
class Encrypted:
    """An encrypted column. ``key_id_column``: a column of the row naming the key (set on rotation);
    ``patient_column``: the column naming the patient the value belongs to (``id`` on ``patients``);
    ``where``: a filter when only some rows hold encrypted values (given the table, returns a clause)."""

    table: str
    column: str
    kind: str = TEXT
    key_id_column: str | None = None
    patient_column: str | None = "patient_id"
    where: Callable[[Table], Any] | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"


@dataclass(frozen=True)
class KeyedHash:
    """A keyed look-up hash (HMAC-SHA256 under the ring's key) of the plain value of ``source`` (same table)."""

    table: str
    column: str
    source: str
    patient_column: str | None = "patient_id"

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"


#: the registry, in the order rotation walks it
REGISTRY: list[Encrypted | KeyedHash] = []


def register(entry: Encrypted | KeyedHash) -> None:
    """Add an entry (once; registering the same column again is a no-op, a different entry for it an error)."""
    for known in REGISTRY:
        if known.name == entry.name:
            if known != entry:
                raise ValueError(f"{entry.name} is registered already as {known}")
            return
    if isinstance(entry, KeyedHash) and not any(isinstance(e, Encrypted) and e.table == entry.table
                                                and e.column == entry.source for e in REGISTRY):
        raise ValueError(f"{entry.name}: register its source {entry.table}.{entry.source} first")
    REGISTRY.append(entry)


def encrypted_columns(table: str | None = None) -> list[Encrypted]:
    """The encrypted columns (of ``table``, or all)."""
    return [e for e in REGISTRY if isinstance(e, Encrypted) and table in (None, e.table)]


def keyed_hashes(table: str | None = None) -> list[KeyedHash]:
    """The keyed hashes (of ``table``, or all)."""
    return [e for e in REGISTRY if isinstance(e, KeyedHash) and table in (None, e.table)]


def hashes_of(entry: Encrypted) -> list[KeyedHash]:
    """The keyed hashes computed from ``entry``'s plain value."""
    return [h for h in keyed_hashes(entry.table) if h.source == entry.column]


def tables() -> Iterator[str]:
    """The tables holding encrypted values, each once."""
    seen: set[str] = set()
    for e in REGISTRY:
        if e.table not in seen:
            seen.add(e.table)
            yield e.table


def table_of(name: str) -> Table:
    """The mapped table called ``name`` (every registered table must be on the store's metadata)."""
    from carepath.store.schema import Base

    try:
        return Base.metadata.tables[name]
    except KeyError:
        raise ValueError(f"registered table {name!r} is not in the store's schema") from None


def _builtin() -> None:
    for column in ("mrn_enc", "name_enc", "phone_enc", "openid_enc", "preferences_enc"):
        register(Encrypted("patients", column, key_id_column="key_id", patient_column="id"))
    register(KeyedHash("patients", "mrn_hash", source="mrn_enc", patient_column="id"))
    register(KeyedHash("patients", "phone_hash", source="phone_enc", patient_column="id"))
    register(KeyedHash("patients", "openid_hash", source="openid_enc", patient_column="id"))
    register(Encrypted("portraits", "facts_enc", key_id_column="key_id"))
    # every event payload's personal values, refused event bodies included (carepath.runtime.refused)
    register(Encrypted("events", "payload", kind=JSON_DOC))
    register(Encrypted("enrollments", "context", kind=JSON_DOC))  # the enrolling event's payload
    register(Encrypted("survey_responses", "response", kind=JSON_DOC))  # what the patient answered
    register(Encrypted("events", "mrn_enc"))  # beside mrn_hash while an event waits for its patient
    register(KeyedHash("events", "mrn_hash", source="mrn_enc"))
    # conversations and complaint cases (carepath.runtime.conversations, carepath.runtime.complaints)
    register(Encrypted("conversation_turns", "text_enc"))
    for column in ("summary_enc", "resolution_enc"):
        register(Encrypted("complaint_cases", column, key_id_column="key_id"))
    # family members and guardians (carepath.runtime.family)
    for column in ("name_enc", "phone_enc", "openid_enc"):
        register(Encrypted("related_persons", column, key_id_column="key_id"))
    register(KeyedHash("related_persons", "phone_hash", source="phone_enc"))
    register(KeyedHash("related_persons", "openid_hash", source="openid_enc"))
    # check-in values and device readings (carepath.runtime.checkins, carepath.runtime.readings)
    register(Encrypted("checkins", "value_enc"))
    register(Encrypted("readings", "value_enc"))
    # WeCom external contacts (carepath.connectors.wecom.contacts): the patient's external_userid
    register(Encrypted("wecom_contacts", "external_userid_enc"))
    register(KeyedHash("wecom_contacts", "external_key", source="external_userid_enc"))
    # a WeChat connector's access token (carepath.connectors.wechat.token); other keys there are not encrypted
    register(Encrypted("connector_state", "value", patient_column=None,
                       where=lambda t: t.c.key == "access_token"))


_builtin()
