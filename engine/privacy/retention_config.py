"""``[retention]`` in carepath.toml: how long each kind of data is kept (issue 22, point 5).

Every age is a duration (``"365d"``, ``"26w"``); a kind without one is kept for ever. The maintenance flow
purges or de-identifies what is older (:mod:`carepath.privacy.retention`). ``audit_minimum`` is the legal
minimum the hospital is held to for its audit trail (default 180 days: PRC Cybersecurity Law art. 21 keeps
network logs at least six months); an ``audit`` age shorter than it is a configuration error naming
``retention.audit``.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from carepath.definition.durations import Duration

DEFAULT_AUDIT_MINIMUM = timedelta(days=180)


class RetentionSettings(BaseModel):
    """Ages after which data is purged or de-identified; ``None``: kept."""

    model_config = ConfigDict(extra="forbid")

    batch: int = Field(1000, ge=1, le=100_000, description="rows changed per statement (and transaction)")
    events: Duration | None = Field(None, description="events: payload de-identified (business ids, scores and "
                                                      "click targets kept for reports), by received time")
    deliveries: Duration | None = Field(None, description="provider call records and the outbox's message copies "
                                                          "of finished sends: deleted")
    conversations: Duration | None = Field(None, description="conversation messages: their texts removed, "
                                                             "the turns kept for counts")
    survey_answers: Duration | None = Field(None, description="survey answers: the answers removed, the scores "
                                                              "(NPS, satisfaction, red flags) kept for reports")
    audit_minimum: Duration = Field(DEFAULT_AUDIT_MINIMUM, description="the legal minimum for the audit trail")
    audit: Duration | None = Field(None, description="audit entries older than this are deleted; never shorter "
                                                     "than audit_minimum")

    @field_validator("events", "deliveries", "conversations", "survey_answers", "audit_minimum", "audit")
    @classmethod
    def _positive(cls, v: timedelta | None) -> timedelta | None:
        if v is not None and v <= timedelta(0):
            raise ValueError("must be a positive duration such as \"365d\"")
        return v

    @field_validator("audit")
    @classmethod
    def _not_below_legal_minimum(cls, v: timedelta | None, info: ValidationInfo) -> timedelta | None:
        minimum = info.data.get("audit_minimum", DEFAULT_AUDIT_MINIMUM)
        if v is not None and minimum is not None and v < minimum:
            raise ValueError(f"{v.days} days is shorter than the legal minimum retention.audit_minimum "
                             f"({minimum.days} days): audit entries must be kept at least that long")
        return v

    def ages(self) -> dict[str, timedelta]:
        """The kinds with an age, by name."""
        return {name: getattr(self, name) for name in ("events", "deliveries", "conversations", "survey_answers",
                                                       "audit") if getattr(self, name) is not None}
