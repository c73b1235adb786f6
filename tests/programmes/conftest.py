"""The programme tests' engine: each module says which journeys it runs (its ``journeys`` fixture)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from tests.portrait.helpers import sms_engine

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def eng(database_url, settings, clock, journeys):
    """An engine running the module's journeys, with a recording ``sms`` channel (``eng.sms``) and patient M1."""
    with sms_engine(database_url, settings, clock, journeys) as engine:
        yield engine


def local(when: datetime) -> datetime:
    """``when`` on Shanghai's wall clock."""
    return when.astimezone(SHANGHAI)


def at_local(day, hh: int, mm: int = 0) -> datetime:  # noqa: ANN001
    """The UTC instant of ``hh:mm`` in Shanghai on ``day`` (a date)."""
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=SHANGHAI).astimezone(timezone.utc)


DAY = timedelta(days=1)
