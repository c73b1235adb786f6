"""Process settings from ``CAREPATH_*`` environment variables."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from carepath.definition.durations import Duration


class Settings(BaseSettings):
    """Where carepath keeps its state and how it reaches its database."""

    model_config = SettingsConfigDict(env_prefix="CAREPATH_", extra="ignore")

    home: Path = Field(default=Path(".carepath"), description="state folder for the embedded default")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; SQLite under home by default")
    secret_key: str | None = Field(default=None, description="base64 AES-256 key for contact data")
    key_id: str = "k1"
    held_event_max_age: Duration = Field(default=timedelta(days=7),
                                          description="how long an event waits for its patient or enrollment (7d, 12h, ...)")

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'carepath.db').resolve()}"

    @property
    def key_file(self) -> Path:
        return self.home / "secret.key"
