"""What the engine takes in: normalized events and patient records."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


def _aware(v: datetime) -> datetime:
    if v.tzinfo is None:
        raise ValueError("must carry a time zone offset (e.g. 2026-05-01T09:00:00+08:00)")
    return v.astimezone(timezone.utc)


class EventIn(BaseModel):
    """A normalized fact from the HIS, a channel callback, a survey or a device.

    ``source`` + ``source_id`` is the dedup key: the same pair is stored once.
    """

    model_config = ConfigDict(extra="forbid")

    type: str = Field(pattern=r"^[a-z_]+(\.[a-z_]+)+$")
    source: str
    source_id: str
    patient_mrn: str
    occurred_at: datetime
    payload: dict[str, Any] = {}

    _aware = field_validator("occurred_at")(classmethod(lambda cls, v: _aware(v)))


class PatientIn(BaseModel):
    """A patient record as the HIS gives it; contacts are encrypted when stored."""

    model_config = ConfigDict(extra="forbid")

    mrn: str
    name: str | None = None
    phone: str | None = None
    openid: str | None = None
    birth_date: date | None = None
    sex: str | None = None
    conditions: list[str] = []
    tags: list[str] = []
    tz: str = "Asia/Shanghai"
    language: str = "zh_CN"
    channel_prefs: list[str] = []

    @field_validator("tz")
    @classmethod
    def _zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v
