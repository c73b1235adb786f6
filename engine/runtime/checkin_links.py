"""Issue 19: the signed link of a check-in prompt (``/k/<token>``): a touchpoint id and a keyed hash, nothing
about the patient. The same on every retry of the prompt; a forged or altered token names no touchpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from carepath.definition.model import Checkin

if TYPE_CHECKING:
    from carepath.engine import Engine
    from carepath.store.crypto import Cipher

#: the path of the check-in page on the web hooks app
PAGE_PREFIX = "/k/"


def checkin_token(cipher: "Cipher", touchpoint_id: int) -> str:
    """The link token of a check-in prompt's touchpoint."""
    return f"{touchpoint_id}.{_mac(cipher, touchpoint_id)}"


def read_checkin_token(cipher: "Cipher", token: str) -> int | None:
    """The touchpoint a token names, or ``None`` when it is malformed or forged (compared in constant time)."""
    head, _, mac = token.partition(".")
    if not head.isdigit() or len(head) > 18 or not mac:
        return None
    # signed under any key of the ring: prompts sent before a key rotation still open (issue 22)
    return int(head) if len(mac) == 24 and cipher.lookup_matches(f"checkin-link:{int(head)}", mac) else None


def _mac(cipher: "Cipher", touchpoint_id: int) -> str:
    return cipher.lookup_hash(f"checkin-link:{touchpoint_id}")[:24]


def with_checkin(engine: "Engine", context: dict[str, Any], touchpoint: Any, action: Any) -> dict[str, Any]:
    """``context`` plus ``checkin`` (its ``name`` and the patient's ``link``) when ``action`` is a check-in prompt."""
    if not isinstance(action, Checkin):
        return context
    from carepath.web.links import public_url

    link = public_url(engine, PAGE_PREFIX + checkin_token(engine.cipher, touchpoint.id))
    return {**context, "checkin": {"name": action.checkin, "link": link}}
