"""The built-in channels pass the conformance suite (network and callback checks skip: they have neither)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

from carepath.runtime.clock import VirtualClock
from carepath.connectors.console import ConsoleChannel
from carepath.connectors.outbox import OutboxChannel
from carepath.engine import Engine
from carepath.plugins.contracts import Channel
from carepath.plugins.testing import ChannelConformance
from carepath.settings import Settings
from carepath.store.schema import OutboxMessage


class TestConsoleConformance(ChannelConformance):
    channel_class = ConsoleChannel
    valid_config = {"address": "phone"}
    invalid_configs = [{"address": "fax"}, {"address": 3}]


class TestOutboxConformance(ChannelConformance):
    channel_class = OutboxChannel
    valid_config = {"address": "phone", "simulate_retryable_rate": 0.0}
    invalid_configs = [{"simulate_retryable_rate": 2}, {"simulate_permanent_rate": -0.1}, {"address": "fax"}]

    @pytest.fixture
    def channel(self, database_url: str, settings: Settings) -> Channel:
        channel = self.make_connector()
        engine = Engine(database_url, journeys=[], templates={}, channels={"outbox": channel}, settings=settings,
                        clock=VirtualClock(datetime(2026, 5, 1, 1, 0, tzinfo=timezone.utc)))
        yield channel
        with engine.db.connect() as conn:  # the suite's sends were recorded once per idempotency key
            keys = conn.execute(select(OutboxMessage.idempotency_key, func.count()).group_by(
                OutboxMessage.idempotency_key)).all()
        assert all(n == 1 for _, n in keys)
        engine.close()


def test_network_checks_are_skipped_with_a_reason() -> None:
    """Console has no provider: its timeout check must skip, saying why."""
    suite = TestConsoleConformance()
    with pytest.raises(pytest.skip.Exception, match="capabilities.network is False"):
        suite.test_timeout_honoured(caplog=None)  # type: ignore[arg-type]
    with pytest.raises(pytest.skip.Exception, match="capabilities.callbacks is False"):
        suite.test_callback_bad_signature_rejected(monkeypatch=None)  # type: ignore[arg-type]
