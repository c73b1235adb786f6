"""Fixtures shared by the connector tests."""

from __future__ import annotations

import pytest

from carepath.definition.journey_files import load_journey_file
from carepath.journeys import journey_files
from tests.engine import helpers as h


@pytest.fixture
def engine(database_url, settings, clock):
    """An engine running the stock journeys, sending to recording ``wechat`` and ``sms`` channels."""
    stock = [load_journey_file(path) for path in journey_files()]
    return h.make_engine(database_url, settings, clock, stock, {"wechat": h.RecordingChannel("wechat"),
                                                              "sms": h.RecordingChannel("sms")})
