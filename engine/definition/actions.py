"""What a journey step does: send a message, a survey or a check-in prompt, open a staff task, tag the patient."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal, Union

from pydantic import Field, field_validator

from carepath.definition.durations import Duration
from carepath.definition.model_base import _Model
from carepath.definition.triggers import Threshold


class Send(_Model):
    """Send a message template through the first usable channel of ``via``."""

    kind: Literal["send"] = "send"
    template: str
    via: list[str] = Field(min_length=1)
    #: who receives it (issue 19): unset is the patient, or a minor's guardian; see carepath.runtime.dispatch.recipients
    to: Literal["patient", "guardian", "family", "patient+family"] | None = None


class Survey(Send):
    """Send a patient-specific survey link (a signed token, no patient data) with a message template.

    ``template`` renders the invitation; it sees ``survey.link`` and
    ``survey.name``. ``provider`` is ``builtin`` (carepath's own questionnaire
    pages) or the name of a configured survey connector (wjx, Tencent Wenjuan).
    """

    kind: Literal["survey"] = "survey"  # type: ignore[assignment]
    survey: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    template: str = "survey_invitation"
    provider: str = "builtin"
    #: issue 24: what a detractor answer (NPS 0-6) to this invitation opens: ``complaint_case``, a complaint case
    #: with its deadlines in the ``[complaints] team`` queue (:mod:`carepath.runtime.complaints`); unset: nothing
    #: beyond the journey's own steps (``[complaints] from_detractors`` opens one for every survey)
    detractor: Literal["complaint_case"] | None = None


class Checkin(Send):
    """Issue 19: a check-in prompt (打卡). The patient answers by replying (one of ``keywords``, or a number of
    ``measure`` with or without its unit: ``6.1``, ``110 mg/dL``, ``150/95`` for blood pressure), on the signed
    check-in page (the template sees ``checkin.link`` and ``checkin.name``) or by a device reading of the measure.
    Each check-in is stored (:mod:`carepath.runtime.checkins`) and told to journeys as ``checkin.recorded``."""

    kind: Literal["checkin"] = "checkin"  # type: ignore[assignment]
    checkin: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    #: a measure of carepath.definition.measures, or ``blood_pressure`` (two numbers); none: a keyword check-in
    measure: str | None = None
    keywords: list[str] = ["打卡"]
    #: issue 23: the clinical target of the measure, thresholds that all hold for a value on target
    #: (``["glucose >= 4.4 mmol/L", "glucose <= 7.0 mmol/L"]``); ``report outcomes`` counts, per arm, the
    #: patients whose latest check-in is on target. For the report only: nothing is sent or decided by it.
    target: list[Threshold] = []

    @field_validator("measure")
    @classmethod
    def _measure(cls, v: str | None) -> str | None:
        from carepath.definition.measures import BLOOD_PRESSURE, MEASURES

        if v is not None and v not in MEASURES and v != BLOOD_PRESSURE:
            raise ValueError(f"unknown measure {v!r} (known: {', '.join([*MEASURES, BLOOD_PRESSURE])})")
        return v


class Task(_Model):
    """Open a staff work item (call the patient, handle a complaint) with an SLA."""

    kind: Literal["task"] = "task"
    task: str
    team: str = "nursing"
    sla: Duration = timedelta(hours=24)
    detail: str | None = None
    priority: Literal["low", "normal", "high", "urgent"] = "normal"


class Tag(_Model):
    """Add or remove patient tags (segment updates)."""

    kind: Literal["tag"] = "tag"
    add: list[str] = []
    remove: list[str] = []


Action = Annotated[Union[Send, Survey, Checkin, Task, Tag], Field(discriminator="kind")]
