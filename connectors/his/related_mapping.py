"""Family members and guardians from the HIS: FHIR RelatedPerson and HL7 v2 NK1 -> carepath family events.

Both end as ``patient.related_person_added`` (or ``patient.related_person_removed`` for a
RelatedPerson no longer ``active``), whose ``contact`` (name, phone) is encrypted at rest by the
engine. Relationship codes are read from HL7 v3 RoleCode (FHIR ``RelatedPerson.relationship``)
and HL7 v2 table 0063 (NK1-3); a guardian is a person coded as one (``GUARD``, ``GRD``) or a
parent (parents are a minor's legal guardians: PRC Civil Code art. 27).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

#: HL7 v3 RoleCode and v2 table 0063 codes -> carepath's relationship words
RELATIONSHIPS = {
    "MTH": "mother", "NMTH": "mother", "FTH": "father", "NFTH": "father", "PRN": "parent", "PAR": "parent",
    "GUARD": "guardian", "GRD": "guardian", "SPS": "spouse", "SPO": "spouse", "HUSB": "spouse", "WIFE": "spouse",
    "DOMPART": "partner", "DOM": "partner", "CHILD": "child", "CHD": "child", "SON": "child", "DAU": "child",
    "SIB": "sibling", "BRO": "sibling", "SIS": "sibling", "GRPRN": "grandparent", "GRMTH": "grandparent",
    "GRFTH": "grandparent", "GRP": "grandparent", "FRND": "friend", "FND": "friend", "EMC": "emergency contact",
    "ECON": "emergency contact", "C": "emergency contact", "N": "next of kin", "NOK": "next of kin",
}
GUARDIAN_WORDS = frozenset({"guardian", "mother", "father", "parent"})


def relationship_of(codes: list[str], text: str = "") -> str:
    """The relationship word for the first known code, else the text given, else ``other``."""
    for code in codes:
        if code and code.upper() in RELATIONSHIPS:
            return RELATIONSHIPS[code.upper()]
    return (text or "other").strip().lower()[:32] or "other"


def added_payload(ref: str, relationship: str, name: str | None, phone: str | None) -> dict[str, Any]:
    """A ``patient.related_person_added`` payload (the contact is encrypted at rest by the engine)."""
    contact = {k: v for k, v in (("name", name), ("phone", phone)) if v}
    return {"ref": ref, "relationship": relationship, "guardian": relationship in GUARDIAN_WORDS, "contact": contact}


def fhir_related_person(raw: Mapping[str, Any]) -> tuple[str, str, datetime | None, dict[str, Any]]:
    """``(patient reference, event type, when, payload)`` of a FHIR R4 RelatedPerson (validated by the caller)."""
    from fhir.resources.R4B.relatedperson import RelatedPerson

    person = RelatedPerson.model_validate(raw)
    ref = f"RelatedPerson/{person.id}"
    updated = person.meta.lastUpdated if person.meta else None
    if person.active is False:
        return person.patient.reference, "patient.related_person_removed", updated, {"ref": ref}
    codes, text = [], ""
    for concept in person.relationship or []:
        codes += [c.code for c in concept.coding or [] if c.code]
        text = text or concept.text or next((c.display for c in concept.coding or [] if c.display), "") or ""
    name = next((n.text or "".join([*(n.family and [n.family] or []), *(n.given or [])])
                 for n in person.name or []), None)
    phone = next((t.value for t in person.telecom or [] if t.system in ("phone", "sms") and t.value), None)
    return person.patient.reference, "patient.related_person_added", updated, \
        added_payload(ref, relationship_of(codes, text), name or None, phone)
