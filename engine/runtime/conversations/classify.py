"""The intent step's classifier: a ``carepath_classify_message`` plugin (bounded by a timeout), else the FAQ matcher.

A hospital plugs in its own NLU or LLM service through the hook; whatever it answers is checked (a known
intent, an FAQ entry that exists), and a slow, failing or unusable answer falls back to the FAQ matcher, so a
broken service never leaves a message unhandled.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from carepath.runtime.conversations.faq import FaqMatch, FaqSet
from carepath.runtime.conversations.turns import Turn

if TYPE_CHECKING:
    from carepath.engine import Engine

log = logging.getLogger(__name__)
FAQ, COMPLAINT, IGNORABLE, UNRECOGNISED = "faq", "complaint", "ignorable", "unrecognised"
INTENTS = (FAQ, COMPLAINT, IGNORABLE, UNRECOGNISED)
_ACTIONS = {"answer": FAQ, "complaint": COMPLAINT, "ignore": IGNORABLE}
_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="carepath-classify")


@dataclass(frozen=True)
class Classification:
    """What a message means: ``intent`` (one of :data:`INTENTS`), the FAQ entry when there is one, and
    ``rule``, the reason recorded on the turn (``faq:booking``, ``plugin:hospital-nlu:faq:booking``, ``no_match``)."""

    intent: str
    rule: str
    faq: FaqMatch | None = None
    note: str | None = None  # why a plugin's answer was not used


def match(faq: FaqSet, text: str) -> Classification:
    """The FAQ matcher: the best entry's action, or ``unrecognised``."""
    found = faq.match(text)
    if found is None:
        return Classification(UNRECOGNISED, "no_match")
    return Classification(_ACTIONS[found.entry.action], found.rule, found)


def classify(engine: "Engine", text: str, channel: str | None, history: Sequence[Turn]) -> Classification:
    """Ask the plugin (within ``classifier_timeout``), fall back to the matcher; never raises."""
    faq: FaqSet = engine.config.faq
    caller = getattr(engine.plugins.pm.hook, "carepath_classify_message", None)
    if caller is None or not caller.get_hookimpls():
        return match(faq, text)
    timeout = engine.config.conversations.classifier_timeout
    kwargs = dict(text=text, channel=channel,
                  history=[{"direction": t.direction, "text": t.text, "at": t.at.isoformat()} for t in history],
                  faq=[{"id": e.id, "category": e.category, "patterns": list(e.patterns)} for e, _ in faq.entries])
    future = _pool.submit(lambda: caller(**kwargs))
    try:
        answer = future.result(timeout=timeout)
    except FutureTimeout:
        return _fallback(faq, text, f"classifier plugin did not answer within {timeout:g} s")
    except Exception as exc:  # a plugin's failure must not lose the message
        return _fallback(faq, text, f"classifier plugin failed: {type(exc).__name__}")
    if answer is None:
        return match(faq, text)
    return _checked(faq, text, answer)


def _checked(faq: FaqSet, text: str, answer: Any) -> Classification:
    if not isinstance(answer, Mapping) or answer.get("intent") not in INTENTS:
        return _fallback(faq, text, f"classifier plugin answered no known intent (known: {', '.join(INTENTS)})")
    intent = str(answer["intent"])
    if intent == FAQ:
        entry = faq.get(str(answer.get("faq") or ""))
        if entry is None or entry.entry.action != "answer":
            return _fallback(faq, text, f"classifier plugin named FAQ entry {answer.get('faq')!r}, which has no answer")
        return Classification(FAQ, f"plugin:{entry.rule}", entry)
    return Classification(intent, f"plugin:{intent}")


def _fallback(faq: FaqSet, text: str, why: str) -> Classification:
    log.warning("%s: the FAQ matcher decides", why)
    found = match(faq, text)
    return Classification(found.intent, found.rule, found.faq, note=why)
