"""How hard the fuzzers try: a modest budget in CI, more with ``CAREPATH_FUZZ_EXAMPLES`` (e.g. 5000 overnight).

Hypothesis generates structure-aware inputs (valid HL7 messages, FHIR resources, callback bodies, journeys and
templates with mutated parts), shrinks any failure to a minimal example and replays it first next time; each
crash found so far is pinned with ``@example`` next to the property that found it.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("CAREPATH_FUZZ_EXAMPLES", "40"))

FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("CAREPATH_FUZZ_EXAMPLES"),
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.filter_too_much, HealthCheck.data_too_large])
