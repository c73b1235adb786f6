"""Who may post events: one bearer token per integrating system, its name recorded on every event it sends.

``carepath.toml``::

    [events_api.his-east]
    token = {env = "HIS_EAST_EVENTS_TOKEN"}   # at least 24 characters, 10 different ones
    sources = ["his-east"]                    # optional: the event sources it may send (default: any)

    [events_api.survey-bridge]
    token = {env = "SURVEY_BRIDGE_EVENTS_TOKEN"}

The single ``CAREPATH_EVENTS_TOKEN`` of earlier releases still works: it is
the system named ``default``. A weak token (short, or made of few different
characters) stops ``carepath serve`` at start-up with a clear error. Tokens
are compared in constant time, every configured token on every request, so
the answer's timing does not tell which system (if any) came close.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Mapping

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

MIN_TOKEN_LENGTH = 24
MIN_DISTINCT = 10
DEFAULT_SYSTEM = "default"
MAKE_ONE = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


class WeakToken(RuntimeError):
    """An events API token too weak to guard patient data; ``carepath serve`` does not start with it."""


def token_problem(token: str) -> str | None:
    """Why ``token`` is too weak (never repeating it), or None."""
    if len(token) < MIN_TOKEN_LENGTH:
        return f"is {len(token)} characters long; use at least {MIN_TOKEN_LENGTH} random characters ({MAKE_ONE})"
    if len(set(token)) < MIN_DISTINCT:
        return (f"uses only {len(set(token))} different characters; use at least {MIN_DISTINCT} "
                f"(random, e.g. {MAKE_ONE})")
    return None


class EventsClient(BaseModel):
    """One ``[events_api.<system>]`` table."""

    model_config = ConfigDict(extra="forbid")

    token: SecretStr = Field(description="the system's bearer token for POST /events ({env = \"...\"})")
    sources: list[str] = Field(default_factory=list, description="event sources this system may send "
                                                                 "(empty: any)")

    @field_validator("token")
    @classmethod
    def _strong(cls, v: SecretStr) -> SecretStr:
        if problem := token_problem(v.get_secret_value()):
            raise ValueError(f"too weak: the token {problem}")
        return v


@dataclass(frozen=True)
class System:
    name: str
    digest: bytes  # SHA-256 of the token: compared, the token itself is not kept
    sources: frozenset[str]


class EventsAuth:
    """The systems allowed to post events, found by their bearer token."""

    def __init__(self, systems: list[System]) -> None:
        self.systems = systems

    @classmethod
    def build(cls, configured: Mapping[str, EventsClient], env_token: str | None,
              env_name: str = "CAREPATH_EVENTS_TOKEN") -> "EventsAuth":
        """The configured systems plus ``default`` for ``env_token``; raises :class:`WeakToken`."""
        systems = [System(name, _digest(c.token.get_secret_value()), frozenset(c.sources))
                   for name, c in configured.items()]
        if env_token:
            if problem := token_problem(env_token):
                raise WeakToken(f"{env_name} is too weak: it {problem}")
            if DEFAULT_SYSTEM in configured:
                raise WeakToken(f"[events_api.{DEFAULT_SYSTEM}] and {env_name} both name the system "
                                f"'{DEFAULT_SYSTEM}': keep one")
            systems.append(System(DEFAULT_SYSTEM, _digest(env_token), frozenset()))
        digests = [s.digest for s in systems]
        if len(set(digests)) != len(digests):
            raise WeakToken("two events API systems share one token: give each system its own, so its events "
                            "are told apart")
        return cls(systems)

    def identify(self, bearer: str) -> System | None:
        """The system whose token this is; every token is compared, in constant time."""
        given = _digest(bearer)
        found = None
        for system in self.systems:
            if hmac.compare_digest(given, system.digest):
                found = system
        return found if bearer else None


def may_send(system: System, source: str) -> bool:
    """Whether ``system`` may send events with this ``source``."""
    return not system.sources or source in system.sources


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
