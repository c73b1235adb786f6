"""Engines with conversation settings, the test hospital's FAQ and staff (issue 21)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from carepath.config import CarepathConfig
from carepath.connectors.outbox import OutboxChannel, OutboxConfig
from carepath.definition.events import EventIn
from carepath.engine import Engine
from carepath.runtime.conversations.faq import faq_files, load_faq
from carepath.runtime.conversations.settings import ComplaintSettings, ConversationSettings
from carepath.teams import StaffMember, TeamConfig

HERE = Path(__file__).parent
FAQ = load_faq(faq_files(["faq"], HERE), HERE)
STAFF = {"wang-li": StaffMember(team="health_management", role="health_manager", token="token-wang-li-0000001"),
         "zhao-min": StaffMember(team="patient_service", role="head_nurse", token="token-zhao-min-000001")}
TEAMS = {"patient_service": TeamConfig(escalation=["head_nurse", "service_head", "vice_president"]),
         "nursing": TeamConfig(escalation=["nurse", "head_nurse"])}


def make_config(**conversations: Any) -> CarepathConfig:
    complaints = conversations.pop("complaints", {})
    return CarepathConfig(faq=FAQ, staff=dict(STAFF), teams=dict(TEAMS),
                          conversations=ConversationSettings(**conversations),
                          complaints=ComplaintSettings(**complaints))


@pytest.fixture
def talk_engine(database_url, settings, clock) -> Iterator:
    """``talk_engine(channels=None, **conversation_settings)``: an engine with no journeys; ``outbox`` (phone)
    by default."""
    made: list[Engine] = []

    def _make(channels: dict | None = None, **conversations: Any) -> Engine:
        channels = channels if channels is not None else {"outbox": OutboxChannel("outbox", OutboxConfig(address="phone"))}
        engine = Engine(database_url, journeys=[], channels=channels, templates={}, clock=clock, settings=settings,
                        config=make_config(**conversations), connectors={})
        made.append(engine)
        return engine

    yield _make
    for engine in made:
        engine.close()


def said(clock, text: str, *, mrn: str = "M1", channel: str | None = "outbox", n: int | str = 1,
         at=None) -> EventIn:
    """What a patient wrote, as connectors turn it into an event."""
    payload: dict[str, Any] = {"text": text}
    if channel is not None:
        payload["channel"] = channel
    return EventIn(type="message.replied", source="test", source_id=f"reply-{mrn}-{n}", patient_mrn=mrn,
                   occurred_at=at or clock.now(), payload=payload)
