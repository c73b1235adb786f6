"""Deprecated: unsubscribe replies are read by the engine, whatever the channel (``carepath.runtime.unsubscribe``).

``is_unsubscribe`` and ``UNSUBSCRIBE_KEYWORDS`` stay importable for one release,
with a ``DeprecationWarning`` naming the new place.
"""

from __future__ import annotations

import warnings
from typing import Any

_MOVED = "carepath.connectors.sms_common.replies.{name} moved: use carepath.runtime.unsubscribe.reply_intent " \
         "(words from CAREPATH_UNSUBSCRIBE_WORDS)"


def is_unsubscribe(text: str) -> bool:
    """Deprecated: ``carepath.runtime.unsubscribe.reply_intent(text) == "unsubscribe"``."""
    from carepath.runtime.unsubscribe import UNSUBSCRIBE, reply_intent

    warnings.warn(_MOVED.format(name="is_unsubscribe"), DeprecationWarning, stacklevel=2)
    return reply_intent(text) == UNSUBSCRIBE


def __getattr__(name: str) -> Any:
    if name == "UNSUBSCRIBE_KEYWORDS":
        from carepath.runtime.unsubscribe import DEFAULT_WORDS, normalized

        warnings.warn(_MOVED.format(name=name), DeprecationWarning, stacklevel=2)
        return frozenset(normalized(w) for w in DEFAULT_WORDS)
    raise AttributeError(name)
