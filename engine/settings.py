"""Process settings from ``CAREPATH_*`` environment variables.

One rule for the contact-encryption key, whatever the database (SQLite file,
``--db FILE`` or a PostgreSQL URL) and whichever command opens it:

1. ``CAREPATH_SECRET_KEY`` (base64 of 32 bytes) when set;
2. else the key file ``CAREPATH_KEY_FILE`` when set;
3. else ``$CAREPATH_HOME/secret.key`` (default ``./.carepath/secret.key``).

docs/security.md documents it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where carepath keeps its state, how it reaches its database and where its key comes from."""

    model_config = SettingsConfigDict(env_prefix="CAREPATH_", extra="ignore")

    home: Path = Field(default=Path(".carepath"), description="state folder for the embedded default")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; SQLite under home by default")
    secret_key: str | None = Field(default=None, description="base64 AES-256 key for contact data")
    key_file: Path | None = Field(default=None, description="key file used when no secret_key is set")
    key_id: str = "k1"

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'carepath.db').resolve()}"

    @property
    def key_path(self) -> Path:
        """The key file consulted when ``CAREPATH_SECRET_KEY`` is not set."""
        return (self.key_file or self.home / "secret.key").resolve()
