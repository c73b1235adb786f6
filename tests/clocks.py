"""A real-time clock for tests that need seconds to pass (leases, kills) but not the night.

The default messaging policy defers non-urgent messages from 21:00 to 08:00 patient-local time.
A test whose subject is timing between workers, not the policy, would otherwise fail whenever it
runs in the evening in Shanghai (13:00–24:00 UTC): its messages are all deferred to the morning.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

UTC = timezone.utc
#: 10:00 in Asia/Shanghai, well inside the default sending window.
MORNING_UTC = time(2, 0)


class DaytimeClock:
    """The wall clock shifted to 10:00 Shanghai time when made; it then runs at real speed.

    Processes that must agree on the time (a test and the workers it forks) share ``offset``.
    """

    def __init__(self, offset: timedelta | None = None) -> None:
        if offset is None:
            real = datetime.now(UTC)
            offset = datetime.combine(real.date(), MORNING_UTC, tzinfo=UTC) - real
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset
