"""Process settings from ``CAREPATH_*`` environment variables.

One rule for the contact-encryption key, whatever the database (SQLite file,
``--db FILE`` or a PostgreSQL URL) and whichever command opens it:

1. ``CAREPATH_SECRET_KEY`` (base64 of 32 bytes) when set;
2. else the key file ``CAREPATH_KEY_FILE`` when set;
3. else ``$CAREPATH_HOME/secret.key`` (default ``./.carepath/secret.key``).

docs/security.md documents it.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from carepath.definition.durations import Duration
from carepath.definition.events import EARLIEST, LATEST, EventLimits, check_zone
from carepath.store.personal_data import DEFAULT_PRIVATE_PATHS

if TYPE_CHECKING:
    from carepath.web.limits import InboundLimits


#: whole replies that mean "stop sending me messages" (``CAREPATH_UNSUBSCRIBE_WORDS``): the SMS opt-out
#: conventions (回R拒收, 回T/TD退订) and the words themselves
DEFAULT_UNSUBSCRIBE_WORDS = ("R", "T", "TD", "退订", "取消订阅")


class Settings(BaseSettings):
    """Where carepath keeps its state, how it reaches its database and where its key comes from."""

    model_config = SettingsConfigDict(env_prefix="CAREPATH_", extra="ignore")

    home: Path = Field(default=Path(".carepath"), description="state folder for the embedded default")
    timezone: str = Field(default="Asia/Shanghai",
                          description="the hospital's time zone: the days reports count and their default range")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; SQLite under home by default")
    secret_key: str | None = Field(default=None, description="base64 AES-256 key for contact data")
    key_file: Path | None = Field(default=None, description="key file used when no secret_key is set")
    key_id: str = "k1"
    # the key ring (carepath.store.keyring; docs/security.md "Key rotation")
    keys: dict[str, str] = Field(default_factory=dict, description="more keys: JSON {key id: base64 key}")
    key_dir: Path | None = Field(default=None, description="folder of <key id>.key files (default home/keys)")
    active_key_id: str | None = Field(default=None, description="key id new values are written with, for a new "
                                      "store (afterwards the store's, set by carepath keys rotate)")
    audit_anchor_file: Path | None = Field(default=None, description="a file the audit chain's anchors are also "
                                           "appended to (JSON lines; kept off the database host ideally)")
    planning_horizon: Duration = Field(default=timedelta(days=14), description="how far ahead open-ended steps are "
                                       "planned (a journey's horizon overrides it); the maintenance flow moves it on")
    held_event_max_age: Duration = Field(default=timedelta(days=7),
                                          description="how long an event waits for its patient or enrollment (7d, 12h, ...)")
    event_max_depth: int = Field(default=32, ge=1, le=200, description="deepest nesting an event payload may have")
    event_max_payload_bytes: int = Field(default=256 * 1024, ge=1024, description="largest event payload (UTF-8 JSON)")
    event_earliest: date = Field(default=EARLIEST, description="earliest date an event may carry")
    event_latest: date = Field(default=LATEST, description="latest date an event may carry")
    event_private_paths: list[str] = Field(
        default=list(DEFAULT_PRIVATE_PATHS),
        description="payload paths (fnmatch) stored encrypted; JSON list in CAREPATH_EVENT_PRIVATE_PATHS")
    event_scan_text: bool = Field(default=True,
                                  description="also encrypt payload text holding an ID-card or mobile number")
    unsubscribe_words: list[str] = Field(
        default=list(DEFAULT_UNSUBSCRIBE_WORDS), min_length=1,
        description="whole replies that withdraw consent, from any channel (JSON list in CAREPATH_UNSUBSCRIBE_WORDS)")
    minor_age: int = Field(default=18, ge=0, le=30,
                           description="patients younger than this (from their birth date) are minors: their "
                                       "messages go to their guardian unless a step says otherwise (issue 19)")

    _zone = field_validator("timezone")(lambda v: check_zone(v))

    def event_limits(self) -> EventLimits:
        """What an event may carry here (checked by ``Engine.ingest``)."""
        return EventLimits(max_depth=self.event_max_depth, max_payload_bytes=self.event_max_payload_bytes,
                           earliest=self.event_earliest, latest=self.event_latest)

    # ``carepath serve`` (each may also be given on its command line)
    serve_host: str = Field(default="127.0.0.1", description="address the web hooks app listens on")
    serve_port: int = Field(default=8787, ge=0, le=65535, description="port of the web hooks app (0: any free port)")
    dispatch_interval: float = Field(default=30.0, gt=0, description="seconds between runs of each journey")
    maintenance_interval: float = Field(default=60.0, gt=0, description="seconds between maintenance runs")
    dispatch_batch: int = Field(default=500, ge=1, le=5000, description="touchpoints a journey run claims at a time")
    poll_seconds: float = Field(default=2.0, gt=0, description="how often serve asks Prefect for runs to start")
    prefect_port: int = Field(default=4200, ge=0, le=65535,
                              description="port of the embedded Prefect server and UI (without PREFECT_API_URL)")
    events_token_env: str = Field(default="CAREPATH_EVENTS_TOKEN",
                                  description="environment variable holding the bearer token of POST /events")
    # what the web hooks app takes in (carepath.web.limits; docs/security.md)
    inbound_events_max_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, description="largest POST /events body")
    inbound_events_max_count: int = Field(default=1000, ge=1, description="most events in one POST /events")
    inbound_callback_max_bytes: int = Field(default=1024 * 1024, ge=1024,
                                            description="largest body of a provider callback (/hooks, /webhooks)")
    inbound_form_max_bytes: int = Field(default=64 * 1024, ge=1024, description="largest survey or staff form post")
    inbound_events_rate: float = Field(default=50, ge=0, description="POST /events requests a second per source "
                                                                     "(bursts of 4x; 0: no limit)")
    inbound_callback_rate: float = Field(default=100, ge=0, description="callback requests a second per source")
    inbound_form_rate: float = Field(default=10, ge=0, description="survey and staff page requests a second per source")
    inbound_read_rate: float = Field(default=20, ge=0, description="/healthz and /metrics requests a second per source")
    inbound_auth_failures: int = Field(default=10, ge=0, description="refused authentications (401/403) a source "
                                                                     "may have before it is locked out (0: never)")
    inbound_lockout_seconds: float = Field(default=300, gt=0, description="how long such a source is locked out")
    inbound_body_timeout: float = Field(default=30, gt=0, description="seconds a request body may pause between "
                                                                      "two pieces before it is answered 408")
    inbound_trusted_proxies: list[str] = Field(default_factory=list, description="addresses of your reverse proxies, "
                                               "whose X-Forwarded-For names the real source (JSON list)")
    worker_id: str | None = Field(default=None, description="this worker's name in leases (default host-pid)")
    instance: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_\-]{0,62}$",
                                 description="this installation's name on a Prefect server: its deployments are "
                                             "carepath-<instance> (default: derived from the database)")
    lease_seconds: float = Field(default=300.0, gt=0, description="how long a claim lasts before others reclaim it")

    def inbound_limits(self) -> "InboundLimits":
        """What the web hooks app takes in, per class of route and per source (``carepath.web.limits``)."""
        from carepath.web.limits import CALLBACK, EVENTS, FORM, READ, ClassLimits, InboundLimits

        def limits(max_bytes: int, rate: float) -> ClassLimits:
            return ClassLimits(max_bytes, rate=rate, burst=max(10, int(rate * 4)))

        return InboundLimits(classes={EVENTS: limits(self.inbound_events_max_bytes, self.inbound_events_rate),
                                      CALLBACK: limits(self.inbound_callback_max_bytes, self.inbound_callback_rate),
                                      FORM: limits(self.inbound_form_max_bytes, self.inbound_form_rate),
                                      READ: limits(0, self.inbound_read_rate)},
                             max_events=self.inbound_events_max_count, auth_failures=self.inbound_auth_failures,
                             lockout=self.inbound_lockout_seconds, body_timeout=self.inbound_body_timeout,
                             trusted_proxies=frozenset(self.inbound_trusted_proxies))

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'carepath.db').resolve()}"

    @property
    def key_path(self) -> Path:
        """The key file consulted when ``CAREPATH_SECRET_KEY`` is not set."""
        return (self.key_file or self.home / "secret.key").resolve()
