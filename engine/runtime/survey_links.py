"""Patient-specific survey links: a signed token naming a touchpoint, and nothing about the patient.

The token is ``<touchpoint id>.<keyed hash>``: the hash (the store's lookup
key) makes it unforgeable, the touchpoint leads to the patient, journey,
step and survey, and its send time starts the link's lifetime. It is the same
on every retry of the touchpoint, so a re-sent invitation carries the same link.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from carepath.definition.model import Survey
from carepath.plugins.contracts import SurveyProvider

if TYPE_CHECKING:
    from carepath.engine import Engine
    from carepath.store.crypto import Cipher

BUILTIN = "builtin"


class SurveyLinkError(Exception):
    """No link can be made (an unknown survey provider): the touchpoint fails with this reason."""


def survey_token(cipher: "Cipher", touchpoint_id: int) -> str:
    """The link token of a survey touchpoint."""
    return f"{touchpoint_id}.{_mac(cipher, touchpoint_id)}"


def read_token(cipher: "Cipher", token: str) -> int | None:
    """The touchpoint a token names, or ``None`` when it is malformed or forged."""
    head, _, mac = token.partition(".")
    if not head.isdigit() or len(head) > 18 or not mac:
        return None
    # signed under any key of the ring: links sent before a key rotation still open (issue 22)
    return int(head) if cipher.lookup_matches(f"survey-link:{int(head)}", mac) and len(mac) == 24 else None


def _mac(cipher: "Cipher", touchpoint_id: int) -> str:
    return cipher.lookup_hash(f"survey-link:{touchpoint_id}")[:24]


def with_survey(engine: "Engine", context: dict[str, Any], touchpoint: Any, action: Any) -> dict[str, Any]:
    """``context`` plus ``survey`` when ``action`` is a survey invitation (what its template renders with)."""
    return {**context, "survey": survey_context(engine, touchpoint, action)} if isinstance(action, Survey) else context


def survey_context(engine: "Engine", touchpoint: Any, action: Survey) -> dict[str, str]:
    """What an invitation template sees as ``survey``: its ``name`` and the patient's ``link``."""
    if action.provider == BUILTIN:
        from carepath.web.links import public_url

        return {"name": action.survey, "link": public_url(engine, f"/s/{survey_token(engine.cipher, touchpoint.id)}")}
    provider = engine.connectors.get(action.provider)
    if not isinstance(provider, SurveyProvider):
        raise SurveyLinkError(f"no survey connector named {action.provider!r}")
    return {"name": action.survey,
            "link": provider.make_link(action.survey, touchpoint.patient_id, touchpoint_id=touchpoint.id)}
