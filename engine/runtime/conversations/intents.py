"""The ordered intent-handler registry: each inbound turn is offered to the handlers in turn; the first that
takes it decides its outcome. A turn nobody takes goes to the patient's health manager (never dropped).

Built in, in this order: ``unsubscribe`` (the withdrawal :mod:`carepath.runtime.unsubscribe` applied at
ingest), ``checkin`` (a reply :mod:`carepath.runtime.checkins` recorded as a check-in at ingest), ``red_flag`` (an urgent care-team task and the holding reply), ``satisfaction`` (a 1-5 answer to
the question asked after a complaint closed), ``complaint``, ``faq`` (the answer), ``ignorable``.
Another module adds its own with one line, e.g.::

    register_intent("medication_question", handler, before="faq")

A handler is ``handler(ctx: TurnContext) -> Outcome | None``: ``None`` lets the next one look; it runs inside
the routing transaction (``ctx.conn``, rolled back to a savepoint if it raises), must not call providers (put
the text to send in ``Outcome.reply``: it is sent after the commit) and must finish quickly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Literal

from sqlalchemy import Connection

from carepath.runtime.conversations.classify import Classification
from carepath.runtime.conversations.turns import Turn

if TYPE_CHECKING:
    from carepath.engine import Engine

Status = Literal["answered", "routed", "ignorable"]


@dataclass
class TurnContext:
    """What a handler sees: the turn, the conversation before it, its classification, the patient."""

    engine: "Engine"
    conn: Connection
    turn: Turn
    history: list[Turn]
    classification: Classification
    now: datetime
    patient_name: str | None = None
    event_intent: str | None = None  # what ingest read in the reply (``unsubscribe``)
    event_outcome: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """How a turn ended: ``answered`` (a reply goes out), ``routed`` (a person or an engine rule has it),
    ``ignorable`` (a rule says nothing needs doing); ``rule`` names the rule, for the record."""

    status: Status
    intent: str
    rule: str
    reply: str | None = None
    task_id: int | None = None
    complaint_id: int | None = None


IntentHandler = Callable[[TurnContext], "Outcome | None"]
_HANDLERS: list[tuple[str, IntentHandler]] = []


def register_intent(name: str, handler: IntentHandler, *, before: str | None = None) -> None:
    """Add (or replace, keeping its place) the handler ``name``; ``before`` puts a new one ahead of that handler
    (it must exist), else it goes last."""
    for i, (existing, _) in enumerate(_HANDLERS):
        if existing == name:
            _HANDLERS[i] = (name, handler)
            return
    if before is None:
        _HANDLERS.append((name, handler))
        return
    names = [n for n, _ in _HANDLERS]
    if before not in names:
        raise ValueError(f"no intent handler {before!r} to put {name!r} before (registered: {', '.join(names)})")
    _HANDLERS.insert(names.index(before), (name, handler))


def unregister_intent(name: str) -> None:
    """Remove a handler (tests, or a hospital that does not want one)."""
    _HANDLERS[:] = [(n, h) for n, h in _HANDLERS if n != name]


def intent_handlers() -> list[tuple[str, IntentHandler]]:
    """The handlers in the order they are asked."""
    from carepath.runtime.conversations import handlers  # noqa: F401 - registers the built-in ones

    return list(_HANDLERS)
