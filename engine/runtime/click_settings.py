"""``[clicks]`` of carepath.toml: whether links in messages are tracked, and how long a link counts clicks."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

from carepath.definition.durations import Duration


class ClickSettings(BaseModel):
    """Click tracking: links in messages go through ``/c/<token>`` on the web hooks app (opt out: ``enabled = false``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="rewrite links in messages to the signed click redirect")
    link_ttl: Duration = Field(timedelta(days=90), description="after this (from the send), a click still "
                                                               "redirects but counts nothing")
