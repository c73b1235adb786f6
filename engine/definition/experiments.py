"""Issue 23: the experiments of a journey model: a step's variants and holdout, and a journey-wide experiment."""

from __future__ import annotations

from datetime import time
from typing import TYPE_CHECKING

from pydantic import Field

from carepath.definition.model_base import _Model

if TYPE_CHECKING:
    from carepath.definition.model import Step


class Variant(_Model):
    """One arm of an experiment: what it changes of the step's message (its template, its channels)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$", description="the arm's name in reports (not 'holdout')")
    weight: float = Field(1.0, gt=0, description="relative share of the patients who are not held out")
    template: str | None = Field(None, description="the template this arm sends instead of the step's")
    via: list[str] | None = Field(None, min_length=1, description="the channels this arm uses instead of the step's")
    at: time | None = Field(None, description="the local time this arm sends at, later on the same day than the "
                                              "step's own at")


class Experiment(_Model):
    """Issue 23: variants of a send step and a holdout that receives nothing. Each patient is assigned once per
    journey and experiment ``id`` by a hash of (journey, id, patient), recorded, and kept across journey versions
    (:mod:`carepath.runtime.experiments`). Holdouts only on marketing and non-clinical education steps."""

    id: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_\-]*$",
                           description="the experiment's name (default: the step id); keep it to keep assignments")
    variants: list[Variant] = Field([], description="the arms that receive the message, each with a weight")
    holdout: float = Field(0.0, ge=0, lt=1, description="share of patients held out: they receive nothing")
    education: bool = Field(False, description="the step is non-clinical education: a holdout is allowed")


class JourneyVariant(_Model):
    """One arm of a journey-wide experiment: the templates it sends instead of the steps' own, its channels."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$", description="the arm's name in reports (not 'holdout')")
    weight: float = Field(1.0, gt=0, description="relative share of the patients who are not held out")
    templates: dict[str, str] = Field({}, description="a step's template -> the template this arm sends instead")
    via: list[str] | None = Field(None, min_length=1, description="the channels this arm uses for every message")


class JourneyExperiment(_Model):
    """Issue 23: one experiment over every message of a journey (each send, survey and check-in step without an
    experiment of its own): a patient is in one arm for the whole journey, drawn and recorded like a step's.
    A holdout withholds every message, so it is allowed only where every one of them may be held out."""

    id: str = Field("journey", pattern=r"^[a-z0-9][a-z0-9_\-]*$",
                    description="the experiment's name (keep it to keep assignments)")
    variants: list[JourneyVariant] = Field([], description="the arms that receive the messages, each with a weight")
    holdout: float = Field(0.0, ge=0, lt=1, description="share of patients held out: they receive no message")
    education: bool = Field(False, description="the journey's transactional messages are non-clinical education")

    def for_step(self, step: "Step") -> Experiment:
        """The experiment as one step of the journey runs it: the arms' templates for that step's."""
        template = getattr(step.action, "template", None)
        return Experiment(id=self.id, holdout=self.holdout, education=self.education, variants=[
            Variant(name=v.name, weight=v.weight, template=v.templates.get(template or ""), via=v.via)
            for v in self.variants])
