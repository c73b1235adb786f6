"""The journey model: what integrators declare, in Python (``carepath.definition.dsl``) or YAML."""

from __future__ import annotations

import enum
import functools
import hashlib
import json
import re
from datetime import time, timedelta
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from carepath.definition.durations import CalendarSpan, Duration

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


# ---------------------------------------------------------------- triggers


class OnEvent(_Model):
    """Run when the enrolled patient has an event of this type (after ``delay``).

    It runs once per enrollment and business identity of the event: the value
    of the payload field ``once_per`` names, by default the journey's ``key``.
    A resend of the same fact under a new message id plans nothing again.
    """

    kind: Literal["on"] = "on"
    event: str
    delay: CalendarSpan = timedelta(0)
    once_per: str | None = None


def _wall_time(v, *, chosen: bool = False):
    """``at`` as authors write it: ``HH:MM`` (or ``HH:MM:SS`` as a stored definition gives it back), or, where
    ``chosen``, ``patient.preferences.NAME``: the time the patient chose (issue 19)."""
    if isinstance(v, str):
        text = v.strip()
        if text.startswith(PREFERENCE_PREFIX):
            if not chosen:
                raise ValueError("a patient-chosen time (patient.preferences...) works on every and calendar "
                                 "triggers; write HH:MM here")
            if not re.fullmatch(r"[a-z][a-z0-9_]*", text[len(PREFERENCE_PREFIX):]):
                raise ValueError(f"at {v!r}: name a preference, e.g. patient.preferences.medication_time")
            return text
        try:
            if text.count(":") == 2:
                return time.fromisoformat(text)
            hh, mm = text.split(":")
            return time(int(hh), int(mm))
        except ValueError:
            raise ValueError(f"at must be HH:MM in the patient's time zone"
                             f"{' or patient.preferences.NAME' if chosen else ''}, got {v!r}") from None
    return v


#: ``at: patient.preferences.medication_time``: the time of day the patient chose (carepath.definition.preferences)
PREFERENCE_PREFIX = "patient.preferences."


class AnchorOffset(_Model):
    """``before``/``after`` an anchor by ``offset``, optionally at a patient-local time of day."""

    kind: Literal["before", "after"]
    anchor: str
    offset: CalendarSpan = timedelta(0)
    at: time | None = None

    @field_validator("at", mode="before")
    @classmethod
    def _hhmm(cls, v):
        return _wall_time(v)


class Every(_Model):
    """Repeat every ``interval`` (or by an RFC 5545 ``rrule``) from ``anchor + start``, until ``count`` or
    ``until`` after the anchor, or without an end: then until the enrollment exits, planned on a rolling
    horizon (:mod:`carepath.runtime.horizon`). ``at`` is a patient-local time of day or the time the patient
    chose (``patient.preferences.medication_time``)."""

    kind: Literal["every"] = "every"
    interval: CalendarSpan | None = None
    anchor: str = ENROLLED
    start: CalendarSpan = timedelta(0)
    at: time | str | None = None
    count: int | None = None
    until: CalendarSpan | None = None
    #: issue 19: a calendar rule, e.g. ``FREQ=MONTHLY;BYDAY=1MO`` (the first Monday of each month)
    rrule: str | None = None

    @field_validator("at", mode="before")
    @classmethod
    def _hhmm(cls, v):
        return _wall_time(v, chosen=True)

    @field_validator("rrule")
    @classmethod
    def _rule(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from carepath.definition.calendar_rules import check_rrule

        return check_rrule(v)

    @model_validator(mode="after")
    def _one_rhythm(self):
        if (self.interval is None) == (self.rrule is None):
            raise ValueError("every takes an interval or an rrule (one of them)")
        return self

    @property
    def open_ended(self) -> bool:
        """No end: runs until the enrollment exits (``count`` and ``until`` absent, no COUNT/UNTIL in the rule)."""
        if self.count is not None or self.until is not None:
            return False
        return self.rrule is None or not re.search(r"(^|;)(COUNT|UNTIL)=", self.rrule.upper())


class AfterStep(_Model):
    """``delay`` after another step reached ``outcome``, unless the patient did ``unless`` meanwhile."""

    kind: Literal["after_step"] = "after_step"
    step: str
    delay: CalendarSpan = timedelta(0)
    outcome: Literal["sent", "failed"] = "sent"
    #: ``replied``: skipped when the patient replied meanwhile; ``checked_in`` (issue 19): skipped when the
    #: patient checked in after the source step (a check-in prompt) was sent, the one nudge of a missed check-in
    unless: Literal["replied", "checked_in"] | None = None


class Idle(_Model):
    """Run once when the patient has not interacted for ``days`` (no reply, click, survey answer, check-in,
    visit...; counted from enrollment when they never did).

    It fires once per idle period and re-arms after the patient's next interaction. A
    patient who is admitted, deceased or has no consent for the step's category is
    never "reactivated"; an interaction or an admission before the message goes out
    cancels it. The maintenance flow plans these (``carepath.runtime.idle``).
    """

    kind: Literal["idle"] = "idle"
    days: int


class Calendar(_Model):
    """A calendar moment each year at a patient-local time: the patient's ``birthday`` (lunar where their record
    says so), a named festival (``moment: 中秋``; :data:`carepath.definition.calendar_rules.MOMENTS`) or a fixed
    Gregorian day (``date: "05-12"``). Planned on the rolling horizon; its steps default to ``marketing``."""

    kind: Literal["calendar"] = "calendar"
    moment: str | None = None
    date: str | None = None
    at: time | str = time(9, 0)

    _hhmm = field_validator("at", mode="before")(Every._hhmm.__func__)

    @field_validator("moment", "date")
    @classmethod
    def _day(cls, v: str | None, info: ValidationInfo) -> str | None:
        from carepath.definition.calendar_rules import check_moment, check_month_day

        if v is None:
            return v
        return check_moment(v) if info.field_name == "moment" else check_month_day(v)

    @model_validator(mode="after")
    def _one_day(self):
        if (self.moment is None) == (self.date is None):
            raise ValueError("calendar takes a moment (birthday or a festival) or a date (MM-DD), one of them")
        return self


class Threshold(_Model):
    """One threshold of a ``reading`` trigger: ``systolic_bp >= 140 mmHg`` (a measure of
    :mod:`carepath.definition.measures`, a comparison, a value and its unit, which is required)."""

    measure: str
    op: Literal[">=", ">", "<=", "<"]
    value: float
    unit: str

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data):
        if isinstance(data, str):
            found = re.fullmatch(r"\s*([a-z_0-9]+)\s*(>=|<=|>|<|≥|≤)\s*(-?\d+(?:\.\d+)?)\s*(\S+)?\s*", data)
            if found is None:
                raise ValueError(f"threshold {data!r}: write MEASURE OP VALUE UNIT, e.g. 'systolic_bp >= 140 mmHg'")
            measure, op, value, unit = found.groups()
            if unit is None:
                raise ValueError(f"threshold {data!r} has no unit: write e.g. '{data.strip()} mmHg'")
            return {"measure": measure, "op": {"≥": ">=", "≤": "<="}.get(op, op), "value": float(value), "unit": unit}
        return data

    @model_validator(mode="after")
    def _known(self):
        from carepath.definition.measures import MEASURES, unit_factor

        if self.measure not in MEASURES:
            raise ValueError(f"unknown measure {self.measure!r} (known: {', '.join(MEASURES)})")
        if unit_factor(self.measure, self.unit) is None:
            raise ValueError(f"unit {self.unit!r} is not a unit of {self.measure} "
                             f"(use {', '.join(MEASURES[self.measure].units())})")
        return self

    def text(self) -> str:
        return f"{self.measure} {self.op} {self.value:g} {self.unit}"

    def holds(self, value: float) -> bool:
        """Whether ``value`` (in the measure's own unit) crosses this threshold."""
        from carepath.definition.measures import unit_factor

        limit = round(self.value * (unit_factor(self.measure, self.unit) or 1.0), 2)
        return {">=": value >= limit, ">": value > limit, "<=": value <= limit, "<": value < limit}[self.op]


class Reading(_Model):
    """Issue 19: run when the patient's readings (``vitals.reading``) cross a threshold: a reading counts when
    ``any`` of the thresholds holds; the step runs when ``count`` readings counted ``within`` the window. It
    opens one episode: no other run until the episode is resolved (its staff task closed, or its message sent),
    and only readings after that count again (:mod:`carepath.runtime.reading_alerts`)."""

    kind: Literal["reading"] = "reading"
    any: list[Threshold] = Field(min_length=1)
    count: int = Field(1, ge=1, le=50)
    within: Duration = timedelta(days=7)


Trigger = Annotated[Union[OnEvent, AnchorOffset, Every, AfterStep, Idle, Calendar, Reading],
                    Field(discriminator="kind")]

# ----------------------------------------------------------------- actions


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


class Missed(_Model):
    """What to do with a touchpoint whose time had passed when it was planned."""

    policy: Literal["send", "skip"] = "send"
    grace: Duration = timedelta(hours=12)


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

    @property
    def touchpoint_action(self) -> str:
        """What its touchpoints do: ``send`` for every message (a survey invitation too), ``task``, ``tag``."""
        return "send" if isinstance(self.action, Send) else self.action.kind

    @property
    def anchor(self) -> str | None:
        t = self.trigger
        return t.anchor if isinstance(t, (AnchorOffset, Every)) else None


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
