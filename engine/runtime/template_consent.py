"""Consent per message template: a patient may refuse one kind of message on one channel.

WeChat subscription messages are accepted or rejected per template. Such a
choice is stored as an ordinary consent row (``consent.changed`` events) whose
purpose is ``template:<carepath template>`` and whose channel is the connector
instance; the newest row is in force, as for every consent.
"""

from __future__ import annotations

from typing import Iterable

from sqlalchemy import Connection

from carepath.runtime.patients import consent_state

PREFIX = "template:"


def template_purpose(template: str) -> str:
    """The consent purpose covering one carepath template."""
    return PREFIX + template


def withdrawn_templates(conn: Connection, patient_ids: Iterable[int], channel: str) -> set[tuple[int, str]]:
    """``(patient, template)`` pairs whose consent is withdrawn on ``channel`` (or on every channel)."""
    state = consent_state(conn, patient_ids)
    withdrawn: set[tuple[int, str]] = set()
    for (pid, purpose, where), granted in state.items():
        if not purpose.startswith(PREFIX) or where not in (channel, "*"):
            continue
        template = purpose[len(PREFIX):]
        specific = state.get((pid, purpose, channel))
        if (specific if specific is not None else granted) is False:
            withdrawn.add((pid, template))
    return withdrawn
