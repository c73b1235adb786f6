"""The base of the journey model: its frozen pydantic base class, a step's stage and category, the built-in anchor."""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict

ENROLLED = "enrolled"  # built-in anchor: the enrollment instant


class Stage(str, enum.Enum):
    pre_visit = "pre_visit"
    in_visit = "in_visit"
    post_visit = "post_visit"


class Category(str, enum.Enum):
    """Decides quiet hours, frequency caps and which consent is needed."""

    clinical = "clinical"
    transactional = "transactional"
    marketing = "marketing"
    urgent = "urgent"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)
