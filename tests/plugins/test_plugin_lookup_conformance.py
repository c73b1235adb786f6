"""The conformance suite's lookup checks catch channels that would lose or double a crashed message."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import pytest

from carepath.plugins.contracts import Capabilities, Channel, LookupResult, LookupStatus, Message, SendResult
from carepath.plugins.testing import ChannelConformance


class ClaimsEverything(Channel):
    """Answers 'accepted' for any key: a message cut off by a crash would never go out."""

    type_name: ClassVar[str] = "claims-everything"
    address_kind: ClassVar[str] = "none"
    capabilities: ClassVar[Capabilities] = Capabilities(lookup=True)

    def send(self, message: Message) -> SendResult:
        return SendResult.sent("p-1")

    def lookup(self, message: Message, attempted_at: datetime) -> LookupResult:
        return LookupResult(LookupStatus.ACCEPTED, provider_id="p-1")


class Undeclared(ClaimsEverything):
    """Implements lookup without declaring it: the dispatcher would never ask."""

    capabilities: ClassVar[Capabilities] = Capabilities()


class NoId(ClaimsEverything):
    def lookup(self, message: Message, attempted_at: datetime) -> LookupResult:
        return LookupResult(LookupStatus.ACCEPTED)


def suite(cls: type[Channel]) -> ChannelConformance:
    return type("Suite", (ChannelConformance,), {"channel_class": cls})()


def test_a_channel_claiming_keys_it_never_sent_fails():
    with pytest.raises(AssertionError, match="accepted for a key never sent"):
        suite(ClaimsEverything).test_lookup_of_a_message_never_sent_is_not_accepted(ClaimsEverything("c"))


def test_lookup_without_the_capability_fails():
    with pytest.raises(AssertionError, match="declare Capabilities\\(lookup=True\\)"):
        suite(Undeclared).test_lookup_capability_matches_implementation()


def test_lookup_without_a_provider_id_fails(caplog):
    with pytest.raises(AssertionError, match="must name its provider id"):
        suite(NoId).test_lookup_finds_an_accepted_message(NoId("c"), caplog)


def test_lookup_checks_skip_with_a_reason_for_channels_without_it():
    class Plain(Channel):
        type_name: ClassVar[str] = "plain"

    with pytest.raises(pytest.skip.Exception, match="capabilities.lookup is False"):
        suite(Plain).test_lookup_of_a_message_never_sent_is_not_accepted(Plain("c"))
