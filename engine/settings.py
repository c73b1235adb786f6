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

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from carepath.definition.durations import Duration
from carepath.definition.events import EARLIEST, LATEST, EventLimits, check_zone
from carepath.store.personal_data import DEFAULT_PRIVATE_PATHS


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
    worker_id: str | None = Field(default=None, description="this worker's name in leases (default host-pid)")
    instance: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_\-]{0,62}$",
                                 description="this installation's name on a Prefect server: its deployments are "
                                             "carepath-<instance> (default: derived from the database)")
    lease_seconds: float = Field(default=300.0, gt=0, description="how long a claim lasts before others reclaim it")

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'carepath.db').resolve()}"

    @property
    def key_path(self) -> Path:
        """The key file consulted when ``CAREPATH_SECRET_KEY`` is not set."""
        return (self.key_file or self.home / "secret.key").resolve()
