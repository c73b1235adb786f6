"""The check-in and reading tests' engine: each module says which journeys it runs (its ``journeys`` fixture)."""

from __future__ import annotations

import pytest

from tests.portrait.helpers import sms_engine


@pytest.fixture
def eng(database_url, settings, clock, journeys):
    """An engine running the module's journeys, with a recording ``sms`` channel (``eng.sms``) and patient M1."""
    with sms_engine(database_url, settings, clock, journeys) as engine:
        yield engine
