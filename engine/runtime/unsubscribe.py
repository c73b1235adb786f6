"""Unsubscribe replies, in one place: "TD", "退订" (and configured words) from any channel or source.

Connectors only turn what a patient wrote into a ``message.replied`` event
(``payload.text``, ``payload.channel`` naming the connector it came in on).
The engine reads the reply's intent here, whoever sent it: the SMS provider,
WeChat, or another integration posting to ``POST /events``. An unsubscribe
withdraws the consents the channel's own rule names
(:meth:`carepath.plugins.contracts.Channel.unsubscribe_consents`: for SMS,
clinical and marketing messages on every SMS channel; by default, both on the
channel the reply came in on). A reply that names no configured channel
withdraws both purposes on every channel: the patient asked to stop, and no
channel can be said to be meant more than another. Urgent work then reaches
the patient through staff (a failed send opens a call task), as for any
withdrawn consent.

The reply stays a ``message.replied`` event whose outcome says what it
withdrew, so the patient's timeline shows which reply caused it; its
``intent`` is ``unsubscribe``, and it does not count as an answer for
``after_step ... unless: replied`` (a nurse still calls).

:func:`reply_intent` is the function the future conversation step (one
intent step for every inbound text: FAQ answers, routing) calls first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Collection

from sqlalchemy import Connection

from carepath.runtime.patients import record_consent
from carepath.settings import DEFAULT_UNSUBSCRIBE_WORDS

if TYPE_CHECKING:
    from carepath.definition.events import EventIn
    from carepath.engine import Engine

UNSUBSCRIBE = "unsubscribe"
DEFAULT_WORDS = DEFAULT_UNSUBSCRIBE_WORDS
_FRAME = " \t\r\n\u3000.,!?;:'\"()[]。，！？；：、~～（）【】「」"


def normalized(text: str) -> str:
    """``text`` as compared with the words: case folded, surrounding blanks and punctuation removed."""
    return (text or "").strip(_FRAME).casefold()


def reply_intent(text: str, words: Collection[str] = DEFAULT_WORDS) -> str | None:
    """``"unsubscribe"`` when the whole reply is one of ``words`` (any case, framed by blanks or punctuation).

    Only the whole reply counts: "TD" inside a sentence is not a request to stop.
    """
    said = normalized(text)
    return UNSUBSCRIBE if said and said in {normalized(w) for w in words} else None


@dataclass(frozen=True)
class Withdrawal:
    """What one unsubscribe reply withdrew: ``(purpose, channel)`` pairs, ``*`` for every channel."""

    word: str
    consents: tuple[tuple[str, str], ...]

    def summary(self) -> str:
        by_channel: dict[str, list[str]] = {}
        for purpose, channel in self.consents:
            by_channel.setdefault(channel, []).append(purpose)
        where = "; ".join(f"{' and '.join(p)} on {'every channel' if c == '*' else c}" for c, p in by_channel.items())
        return f"unsubscribe reply {self.word!r}: withdrew {where}"


def withdrawn_by(engine: "Engine", channel: str | None) -> tuple[tuple[str, str], ...]:
    """The consents an unsubscribe reply on ``channel`` withdraws, by that channel's rule."""
    configured = engine.channels.get(channel) if channel else None
    if configured is None:
        return (("clinical", "*"), ("marketing", "*"))
    return tuple(dict.fromkeys(configured.unsubscribe_consents(engine.channels)))


def apply_reply(conn: Connection, engine: "Engine", ev: "EventIn", patient_id: int, at: datetime) -> Withdrawal | None:
    """Withdraw what an unsubscribe reply asks for (inside the caller's transaction); None for any other text."""
    text = str(ev.payload.get("text") or "")
    if reply_intent(text, engine.settings.unsubscribe_words) != UNSUBSCRIBE:
        return None
    channel = ev.payload.get("channel")
    withdrawal = Withdrawal(normalized(text).upper() if normalized(text).isascii() else normalized(text),
                            withdrawn_by(engine, channel if isinstance(channel, str) else None))
    for purpose, name in withdrawal.consents:
        record_consent(conn, patient_id, purpose, False, channel=name, source=ev.source, at=at,
                       reason=f"reply {ev.source_id}: {withdrawal.word}", via="patient_reply")
    return withdrawal
