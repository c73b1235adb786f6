"""How much the web hooks app takes in: per kind of route, per source address (``CAREPATH_INBOUND_*`` settings).

Every request is classed by its path:

=============  ==========================================  =======================
class          routes                                      body limit (default)
=============  ==========================================  =======================
``events``     ``POST /events``                            8 MiB, 1,000 events
``callback``   ``/hooks/...``, ``/webhooks/...``, plugins  1 MiB
``form``       ``/s/...`` (survey pages), ``/staff...``     64 KiB
``read``       ``/healthz``, ``/metrics``                   0 (no body)
=============  ==========================================  =======================

Each source address gets a request budget per class (a token bucket: ``rate``
requests a second, bursts of ``burst``) and is locked out of a class for
``lockout`` seconds after ``auth_failures`` refused authentications (401)
within that time. Limits are per worker process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KIB, MIB = 1024, 1024 * 1024
EVENTS, CALLBACK, FORM, READ = "events", "callback", "form", "read"


@dataclass(frozen=True)
class ClassLimits:
    """One class of route: its body limit and its per-source request budget (``rate`` 0: unlimited)."""

    max_bytes: int
    rate: float
    burst: int


@dataclass(frozen=True)
class InboundLimits:
    """Everything the inbound guard enforces; ``Settings.inbound_limits()`` builds it from the environment."""

    classes: dict[str, ClassLimits] = field(default_factory=lambda: {
        EVENTS: ClassLimits(8 * MIB, rate=50, burst=200),
        CALLBACK: ClassLimits(1 * MIB, rate=100, burst=500),
        FORM: ClassLimits(64 * KIB, rate=10, burst=60),
        READ: ClassLimits(0, rate=20, burst=100),
    })
    max_events: int = 1000  # events in one POST /events
    auth_failures: int = 10  # refused authentications a source may have within ``lockout`` seconds
    lockout: float = 300.0
    body_timeout: float = 30.0  # seconds a body may pause between two pieces (a slow-loris upload)
    trusted_proxies: frozenset[str] = frozenset()  # addresses whose X-Forwarded-For names the real source
    max_sources: int = 100_000  # sources remembered at once (the least recently seen are forgotten)

    def of(self, path: str) -> tuple[str, ClassLimits]:
        """The class of a request path and its limits."""
        if path == "/events" or path.startswith("/events/"):
            kind = EVENTS
        elif path.startswith(("/s/", "/staff")):
            kind = FORM
        elif path in ("/healthz", "/metrics"):
            kind = READ
        else:
            kind = CALLBACK
        return kind, self.classes[kind]
