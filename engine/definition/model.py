"""The journey model: what integrators declare, in Python (``carepath.definition.dsl``) or YAML.

A journey and its steps are here; what a step's parts are lives beside it, and every name stays importable from
here: triggers (:mod:`carepath.definition.triggers`), actions (:mod:`carepath.definition.actions`), experiments
(:mod:`carepath.definition.experiments`), stages and categories (:mod:`carepath.definition.model_base`).
"""

from __future__ import annotations

import functools
import hashlib
import json
from datetime import timedelta
from typing import Literal

from pydantic import Field, model_validator

from carepath.definition.actions import Action, Checkin, Send, Survey, Tag, Task
from carepath.definition.durations import Duration
from carepath.definition.experiments import Experiment, JourneyExperiment, JourneyVariant, Variant
from carepath.definition.model_base import ENROLLED, Category, Stage, _Model
from carepath.definition.triggers import (PREFERENCE_PREFIX, AfterStep, AnchorOffset, Calendar, Every, Idle, OnEvent,
                                          Reading, Threshold, Trigger)

__all__ = ["ENROLLED", "PREFERENCE_PREFIX", "Action", "Adapt", "AfterStep", "AnchorOffset", "AnchorRule", "Calendar",
           "Category", "Checkin", "EnrollRule", "Every", "ExitRule", "Experiment", "Idle", "Journey",
           "JourneyExperiment", "JourneyVariant", "Missed", "OnEvent", "Origin", "Reading", "Send", "Stage", "Step",
           "Survey", "Tag", "Task", "Template", "Threshold", "Trigger", "Variant", "exit_reason"]


class Missed(_Model):
    """What to do with a touchpoint whose time had passed when it was planned."""

    policy: Literal["send", "skip"] = "send"
    grace: Duration = timedelta(hours=12)


class Step(_Model):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    stage: Stage
    trigger: Trigger
    action: Action
    condition: str | None = None
    category: Category = Category.clinical
    missed: Missed = Missed()
    over_cap: Literal["defer", "drop"] = "defer"
    resend_on_move: bool = True
    #: a sent message not confirmed delivered within this window falls back to the next channel
    #: of ``via`` (or, after the last, to a staff call): see ``carepath.runtime.fallback``
    confirm_within: Duration | None = None
    description: str | None = None
    #: issue 19: only on official working days (carepath.runtime.workdays): a recurring step leaves the other
    #: days out, any other step moves to the same time on the next working day
    workdays_only: bool | None = None
    #: issue 23: variants and a holdout (carepath.runtime.experiments)
    experiment: Experiment | None = None

    @model_validator(mode="before")
    @classmethod
    def _greetings_are_marketing(cls, data):
        """A calendar moment (a birthday or festival greeting) is ``marketing`` unless the step says otherwise."""
        if isinstance(data, dict) and "category" not in data:
            trigger = data.get("trigger")
            kind = trigger.get("kind") if isinstance(trigger, dict) else getattr(trigger, "kind", None)
            if kind == "calendar":
                data = {**data, "category": Category.marketing}
        return data

    def model_copy(self, *, update=None, deep: bool = False):  # noqa: ANN001, ANN201 - pydantic's signature
        """A copy; with ``update``, the cached facts below are worked out again from the copy's own fields."""
        copy = super().model_copy(update=update, deep=deep)
        if update:
            for name in ("touchpoint_action", "anchor", "on_horizon"):
                copy.__dict__.pop(name, None)
        return copy

    # cached: a frozen step's facts, read for every touchpoint the planner and the dispatcher handle
    @functools.cached_property
    def touchpoint_action(self) -> str:
        """What its touchpoints do: ``send`` for every message (a survey invitation too), ``task``, ``tag``."""
        return "send" if isinstance(self.action, Send) else self.action.kind

    @functools.cached_property
    def anchor(self) -> str | None:
        t = self.trigger
        return t.anchor if isinstance(t, (AnchorOffset, Every)) else None

    @functools.cached_property
    def on_horizon(self) -> bool:
        """Whether it is planned on the rolling horizon (a calendar moment, an open-ended or rule-based series, a
        preferred time of day, working days only) rather than all at once at enrollment (issue 19)."""
        t = self.trigger
        if isinstance(t, Calendar):
            return True
        return isinstance(t, Every) and (t.open_ended or t.rrule is not None or isinstance(t.at, str)
                                         or bool(self.workdays_only))


# ------------------------------------------------------------------ journey


class AnchorRule(_Model):
    """Which events set (or move) an anchor, and which cancel it.

    ``field`` names the event payload key with the anchor's time; without it
    the event's ``occurred_at`` is used.
    """

    set_by: list[str]
    field: str | None = None
    cancelled_by: list[str] = []


class EnrollRule(_Model):
    events: list[str] = Field(min_length=1)
    condition: str | None = None


class ExitRule(_Model):
    events: list[str] = []
    condition: str | None = None


class Template(_Model):
    """A message template: Jinja2 text rendered in the sandbox with strict undefined."""

    name: str
    body: str
    title: str = ""


class Origin(_Model):
    """The stock journey a hospital's copy was made from (``carepath journeys new``); ``journeys diff``
    compares the copy with it. Not part of the version."""

    journey: str
    version: str


_LATER_OPTIONS = ("team", "horizon", "pause_on", "resume_on", "experiment")
_LATER_STEP_OPTIONS = ("confirm_within", "workdays_only", "experiment")
_LATER_TRIGGER_OPTIONS = ("rrule",)  # issue 19
#: issue 19: family and guardians; issue 23: a check-in's target; issue 24: a survey's detractor cases
_LATER_ACTION_OPTIONS = ("to", "target", "detractor")
_LATER_VARIANT_OPTIONS = ("at",)  # issue 23: an arm's time of day


class Adapt(_Model):
    """Issue 24: what a hospital should adapt in a journey before running it, by topic (each optional, plain text).
    The journey's page (``carepath journeys doc``) shows them under "What to adapt", in this order."""

    timings: str | None = None
    teams: str | None = None
    slas: str | None = None
    wording: str | None = None
    segments: str | None = None
    conditions: str | None = None
    channels: str | None = None
    prices: str | None = None

    def topics(self) -> list[tuple[str, str]]:
        """``(topic, text)`` of the topics given, in the page's order."""
        return [(name, text) for name, text in ((n, getattr(self, n)) for n in type(self).model_fields)
                if text and text.strip()]


class Journey(_Model):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]*$")
    title: str = ""
    description: str = ""
    enroll: EnrollRule
    exit: ExitRule = ExitRule()
    reentry: Literal["never", "after_exit", "per_key"] = "after_exit"
    key: str | None = None
    anchors: dict[str, AnchorRule] = {}
    steps: list[Step]
    templates: dict[str, Template] = {}
    #: the staff team that calls the patient when no channel delivered (default ``nursing``)
    team: str | None = None
    #: issue 19: how far ahead open-ended steps are planned (default: the CAREPATH_PLANNING_HORIZON setting)
    horizon: Duration | None = None
    #: issue 19: events that pause the programme's planned steps (an admission), and those that resume it
    pause_on: list[str] | None = None
    resume_on: list[str] | None = None
    #: issue 24: the stock journey this one was copied from
    origin: Origin | None = None
    #: issue 23: an experiment over every message of the journey (a step's own experiment wins for that step)
    experiment: JourneyExperiment | None = None
    #: issue 24: what a hospital should adapt, by topic; shown on the journey's page, not part of its version
    adapt: Adapt | None = None

    @functools.cached_property
    def version(self) -> str:
        """Hash of the normalized definition: equal definitions share a version.

        Options added after journeys were first stored count only when set, so
        existing journeys keep their versions.
        """
        data = self.model_dump(mode="json", exclude={"title", "description", "origin", "adapt"})
        for key in _LATER_OPTIONS:
            if data.get(key) in (None, []):
                data.pop(key, None)
        for step in data["steps"]:
            for key in _LATER_STEP_OPTIONS:
                if step.get(key) is None:
                    step.pop(key, None)
            for key in _LATER_TRIGGER_OPTIONS:
                if step["trigger"].get(key, "") is None:
                    step["trigger"].pop(key)
            for key in _LATER_ACTION_OPTIONS:
                if step["action"].get(key, "") in (None, []):
                    step["action"].pop(key)
            for variant in (step.get("experiment") or {}).get("variants", ()):
                for key in _LATER_VARIANT_OPTIONS:
                    if variant.get(key, "") is None:
                        variant.pop(key)
        canonical = json.dumps(data, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def experiment_of(self, step: Step) -> Experiment | None:
        """The experiment ``step`` runs: its own, else the journey's for a message step (issue 23)."""
        if step.experiment is not None or self.experiment is None or not isinstance(step.action, Send):
            return step.experiment
        return self.experiment.for_step(step)

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    @property
    def calling_team(self) -> str:
        """The staff team that contacts the patient when no channel delivered."""
        return self.team or "nursing"

    def farewell_event(self, step: Step) -> str | None:
        """The exit event ``step`` runs on, if any: such a step (a cancellation notice) is the
        enrollment's last word and still goes out after that exit."""
        trigger = step.trigger
        return trigger.event if isinstance(trigger, OnEvent) and trigger.event in self.exit.events else None


    def to_json(self) -> dict:
        return self.model_dump(mode="json")


def exit_reason(event_type: str) -> str:
    """What an enrollment's ``exit_reason`` says when an exit event ended it."""
    return f"exit event {event_type}"
