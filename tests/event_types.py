"""Event types the tests' own journeys use besides the built-in catalogue (``program.joined`` ...).

The engine refuses events of a type its catalogue does not know, so the tests declare theirs the way
a plugin does (``carepath_event_types``): :func:`install` adds them to the catalogue for the session.
"""

from __future__ import annotations

from carepath.definition import catalog
from carepath.definition.catalog import EventType, Payload

TEST_TYPES = ("program.joined", "visit.completed", "visit.no_show", "vitals.alert")


def install() -> None:
    """Make :data:`TEST_TYPES` known, as if a plugin declared them (idempotent)."""
    if getattr(catalog._plugin_event_types, "with_test_types", False):
        return
    plugins = catalog._plugin_event_types

    def with_test_types() -> list[EventType]:
        return [*plugins(), *(EventType(name, "A test's own event type.", Payload, source="tests")
                              for name in TEST_TYPES)]

    with_test_types.with_test_types = True  # type: ignore[attr-defined]
    catalog._plugin_event_types = with_test_types
    catalog.reload_event_types()
