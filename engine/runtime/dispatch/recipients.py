"""Recipients: who a send step's message goes to, decided at send time from the batch's related persons.

A step's ``send.to`` names the audience: ``patient``, ``guardian`` (the patient's guardians),
``family`` (every current related person, guardians included) or ``patient+family``. Unset, it is
the patient, or for a minor (younger than ``CAREPATH_MINOR_AGE``, 18 by default, from the birth
date) the guardians; a minor with no guardian on record is written to directly, as before.

One touchpoint goes to one person. The planned touchpoint goes to the first recipient (the patient,
or the first guardian: then its ``recipient`` is pinned on the row, so a retry goes to the same
person); every further recipient gets a copy: its own touchpoint, due at once, whose idempotency
key is the original's plus ``|to:rp:<id>`` (created once, whatever happens to the batch), and which
then goes through every send-time check for that person on its own: their consent, their daily
cap, quiet hours, their addresses. The provider's idempotency key includes the recipient too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from carepath.definition.model import Category
from carepath.runtime.family import RelatedContact

#: what a copy's idempotency key adds to the planned touchpoint's: ``<key>|to:rp:<id>``
COPY_MARK = "|to:"


@dataclass(frozen=True)
class Route:
    """Where one touchpoint goes: ``recipient`` (``None``: the patient), the ``copies`` to create for the
    other recipients, whether the recipient must be ``pinned`` on the row, or why nobody (``skip``)."""

    recipient: RelatedContact | None = None
    copies: tuple[RelatedContact, ...] = ()
    pin: bool = False
    skip: str | None = None


TO_PATIENT = Route()


def is_copy(tp: Any) -> bool:
    """Whether ``tp`` is a copy made for a further recipient (it plans no follower steps)."""
    return COPY_MARK in tp.idempotency_key


def copy_key(idempotency_key: str, person: RelatedContact) -> str:
    return f"{idempotency_key}{COPY_MARK}{person.key}"


def audience(to: str | None, patient: Any, related: Sequence[RelatedContact],
             minor_age: int) -> tuple[list[RelatedContact | None], str | None]:
    """The recipients of a message to ``to`` (``None`` in the list is the patient) and, when there are none,
    why. Unsubscribed persons are left out."""
    reachable = [r for r in related if not r.unsubscribed]
    guardians = [r for r in reachable if r.guardian]
    if to is None:
        age = patient.view.age
        if age is not None and age < minor_age and guardians:
            return list(guardians), None
        return [None], None
    if to == "patient":
        return [None], None
    if to == "guardian":
        if guardians:
            return list(guardians), None
        gone = any(r.guardian for r in related)
        return [], "guardian unsubscribed" if gone else "no guardian on record"
    family: list[RelatedContact | None] = list(reachable)
    if to == "patient+family":
        return [None, *family], None
    if family:
        return family, None
    return [], "every family member unsubscribed" if related else "no family member on record"


def route(tp: Any, to: str | None, patient: Any, related: Sequence[RelatedContact], minor_age: int) -> Route:
    """Where touchpoint ``tp`` goes now (see the module docstring)."""
    if tp.recipient:  # a copy, or a planned touchpoint pinned to its first recipient
        person = next((r for r in related if r.key == tp.recipient), None)
        if person is None:
            return Route(skip="related person removed")
        if person.unsubscribed:
            return Route(skip=f"{person.relationship} unsubscribed")
        return Route(recipient=person)
    if not related and to in (None, "patient"):
        return TO_PATIENT  # the common case, at no cost
    people, why = audience(to, patient, related, minor_age)
    if not people:
        return Route(skip=why)
    first, rest = people[0], tuple(r for r in people[1:] if r is not None)
    return Route(recipient=first, copies=rest, pin=first is not None)


def consents(person: RelatedContact, category: Category) -> bool:
    """A related person's own consent: marketing only when they agreed to it; nothing once unsubscribed."""
    if person.unsubscribed:
        return False
    return person.marketing_consent if category is Category.marketing else True


# a copy: the planned touchpoint's row with its own key and recipient, due now; created once
_COPY_SQL = ("INSERT INTO touchpoints (enrollment_id, patient_id, journey, step, stage, category, action, occurrence, "
             "idempotency_key, anchor, anchor_at, status, planned_at, due_at, reason, attempts, claims, "
             "channel_index, event_id, recipient, created_at, updated_at) "
             "SELECT enrollment_id, patient_id, journey, step, stage, category, action, occurrence, ?, anchor, "
             "anchor_at, 'scheduled', ?, ?, ?, 0, 0, 0, event_id, ?, ?, ? FROM touchpoints WHERE id = ? "
             "ON CONFLICT (idempotency_key) DO NOTHING")
_PIN_SQL = "UPDATE touchpoints SET recipient = ? WHERE id = ? AND recipient IS NULL"


def write_routes(conn: Any, ctx: Any, held: set[int], now: Any) -> tuple[list, list]:
    """Pin recipients and create copies decided in this batch for the touchpoints this transaction holds
    (fencing): a touchpoint's routing is written with its own decision or first provider call.

    Inside the batch's transaction; safe to run twice (a copy's key is unique, a pin sets an empty column).
    Returns the ``(pins, copies)`` of touchpoints not written yet (the caller keeps them once committed)."""
    from carepath.store.statements import db_time, execute

    if not (ctx.pins or ctx.copies):
        return [], []
    t = db_time(conn, now)
    for tp_id, key in ctx.pins:
        if tp_id in held:
            execute(conn, _PIN_SQL, [key, tp_id])
    for tp, person in ctx.copies:
        if tp.id in held:
            execute(conn, _COPY_SQL, [copy_key(tp.idempotency_key, person), t, t,
                                      f"for the {person.relationship} (a copy of touchpoint {tp.id})",
                                      person.key, t, t, tp.id])
    return [p for p in ctx.pins if p[0] not in held], [c for c in ctx.copies if c[0].id not in held]
